"""The real ``creditgate`` console script, run as a subprocess against a SQLite file.

Each invocation is a fresh process (about a second of imports), so the tests share one database
per module and run independent invocations concurrently.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

CLI_TIMEOUT_S = 60
CLI_PARALLEL = 4
CREDITGATE = Path(sys.executable).with_name("creditgate")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


def cli(db: str, *args: str, now: str | None = None) -> Run:
    """Run the CLI; ``now`` (ISO 8601) is the instant its injected clock reads."""
    command = [str(CREDITGATE)] if CREDITGATE.exists() else [sys.executable, "-m", "creditgate.cli.main"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("CREDITGATE_DATABASE_URL", None)
    env.pop("CREDITGATE_NOW", None)
    if now is not None:
        env["CREDITGATE_NOW"] = now
    done = subprocess.run([*command, *args, "--db", db], capture_output=True, text=True, env=env,
                          timeout=CLI_TIMEOUT_S, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def ok(db: str, *args: str, now: str | None = None) -> Run:
    run = cli(db, *args, now=now)
    assert run.code == 0, f"{args}: exit {run.code}\n{run.err}"
    return run


def journal_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT org_id, seq, hash FROM journal_transactions ORDER BY org_id, seq").fetchall()


@dataclass(frozen=True)
class World:
    db: str
    path: Path
    org: str
    grant: str
    hold: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    path = tmp_path_factory.mktemp("cli") / "creditgate.db"
    db = f"sqlite:///{path}"
    ok(db, "db", "upgrade")
    org = ok(db, "orgs", "create", "acme", "--overdraft", "5").out.strip()
    assert org.startswith("org_")
    grant = ok(db, "grants", "create", "acme", "--credits", "100", "--cost-basis", "10",
               "--expires-at", "2099-01-01T00:00:00Z", "--idempotency-key", "g-1").out.strip()
    hold = ok(db, "holds", "reserve", "acme", "--credits", "10", "--ttl", "600").out.strip()
    return World(db, path, org, grant, hold)


def test_orgs_create_and_list(world: World) -> None:
    listed = ok(world.db, "orgs", "list", "--json").json()
    assert listed == [{"id": world.org, "name": "acme", "overdraft_limit": "5"}]
    text = ok(world.db, "orgs", "list").out
    assert world.org in text and "acme" in text


def test_grants_create_is_idempotent_list_and_void(world: World) -> None:
    again = ok(world.db, "grants", "create", "acme", "--credits", "100", "--cost-basis", "10",
               "--expires-at", "2099-01-01T00:00:00Z", "--idempotency-key", "g-1", "--json").json()
    assert again["grant_id"] == world.grant  # type: ignore[index]
    extra = ok(world.db, "grants", "create", world.org, "--credits", "2.5", "--kind", "promotional",
               "--json").json()["grant_id"]  # type: ignore[index]
    grants = {g["id"]: g for g in ok(world.db, "grants", "list", "acme", "--json").json()}  # type: ignore[union-attr]
    assert grants[world.grant]["expires_at"] == "2099-01-01T00:00:00Z"
    assert (grants[extra]["amount"], grants[extra]["kind"]) == ("2.5", "promotional")
    voided = ok(world.db, "grants", "void", "acme", extra, "--json").json()
    assert voided["lost"] == 2_500_000  # type: ignore[index]
    assert "forfeited" not in ok(world.db, "grants", "list", "acme").err
    grants = {g["id"]: g for g in ok(world.db, "grants", "list", "acme", "--json").json()}  # type: ignore[union-attr]
    assert grants[extra]["status"] == "voided"


def test_balance_text_and_json(world: World) -> None:
    body = ok(world.db, "balance", "acme", "--json").json()
    assert body["org_id"] == world.org  # type: ignore[index]
    assert float(body["available"]) >= 0  # type: ignore[index]
    assert {"available", "pending", "debt", "grants"} <= set(body)  # type: ignore[arg-type]
    expiring = [g for g in body["grants"] if g["id"] == world.grant]  # type: ignore[index]
    assert expiring and expiring[0]["expires_at"] == "2099-01-01T00:00:00Z"
    text = ok(world.db, "balance", "acme").out
    assert "available" in text and "pending" in text and world.grant in text and "2099-01-01" in text


def test_holds_debit_journal_and_verify(world: World) -> None:
    first = ok(world.db, "holds", "reserve", "acme", "--credits", "4", "--json").json()
    second = ok(world.db, "holds", "reserve", "acme", "--credits", "3", "--model", "llama-3-8b").out.strip()
    before = ok(world.db, "balance", "acme", "--json").json()
    posted = ok(world.db, "holds", "post", "acme", first["hold_id"], "--actual", "2.5", "--json").json()  # type: ignore[index]
    assert (posted["posted"], posted["released"]) == (2_500_000, 1_500_000)  # type: ignore[index]
    assert "released 3" in ok(world.db, "holds", "void", "acme", second).out
    assert "debited 1.25" in ok(world.db, "debit", "acme", "--credits", "1.25").out
    after = ok(world.db, "balance", "acme", "--json").json()
    spent = 2_500_000 + 1_250_000
    assert to_micros(after["available"]) == to_micros(before["available"]) + 4_000_000 + 3_000_000 - spent  # type: ignore[index]
    rows = ok(world.db, "journal", "acme", "--json", "--limit", "1000").json()
    kinds = [row["kind"] for row in rows]  # type: ignore[union-attr]
    assert kinds[-4:] == ["hold_reserve", "hold_post", "hold_void", "debit"]
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))  # type: ignore[union-attr]
    for earlier, later in pairwise(rows):  # type: ignore[arg-type]
        assert later["prev_hash"] == earlier["hash"]
    held = ok(world.db, "holds", "list", "acme", "--json").json()
    assert {h["status"] for h in held} >= {"posted", "voided", "pending"}  # type: ignore[union-attr]
    verified = ok(world.db, "verify")
    assert verified.out.startswith("ok: ")
    assert ok(world.db, "verify", "--json").json()["ok"] is True  # type: ignore[index]


def to_micros(text: str) -> int:
    whole, _, fraction = text.partition(".")
    return int(whole) * 1_000_000 + int(fraction.ljust(6, "0") or 0) * (-1 if text.startswith("-") else 1)


BAD_INPUTS = {
    "unknown org": (["balance", "nobody"], "nobody"),
    "unknown org on a write": (["debit", "nobody", "--credits", "1"], "nobody"),
    "negative amount": (["debit", "acme", "--credits=-5"], "negative"),
    "negative grant": (["grants", "create", "acme", "--credits=-1"], "negative"),
    "amount with too many decimals": (["debit", "acme", "--credits", "0.0000001"], "decimals"),
    "amount that is not a number": (["holds", "reserve", "acme", "--credits", "NaN"], "decimal number"),
    "malformed date": (["grants", "create", "acme", "--credits", "1", "--expires-at", "next tuesday"], "expires_at"),
    "date without a timezone": (["grants", "create", "acme", "--credits", "1", "--expires-at", "2030-01-01T00:00"],
                                "timezone"),
    "unknown hold": (["holds", "post", "acme", "hld_nope", "--actual", "1"], "hld_nope"),
    "post more than held": (["holds", "post", "acme", "{hold}", "--actual", "11"], "actual"),
    "insufficient credits": (["holds", "reserve", "acme", "--credits", "100000"], "insufficient credits"),
    "bad scope": (["debit", "acme", "--credits", "1", "--scope", "everything"], "scope"),
    "unknown option": (["debit", "acme", "--credits", "1", "--frobnicate"], "--frobnicate"),
    "huge amount": (["debit", "acme", "--credits", "9" * 5000], "maximum"),
}


def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(world: World) -> None:
    """Every case in BAD_INPUTS; they run concurrently (none may write), failures listed together."""
    before = journal_rows(world.path)

    def check(case: str) -> str | None:
        args, fragment = BAD_INPUTS[case]
        run = cli(world.db, *[arg.replace("{hold}", world.hold) for arg in args])
        lines = run.err.strip().splitlines()
        if run.code == 0 or len(lines) != 1 or fragment.lower() not in lines[0].lower() or run.out:
            return f"{case}: exit {run.code}, stdout {run.out!r}, stderr {run.err!r}"
        return None

    with ThreadPoolExecutor(max_workers=CLI_PARALLEL) as pool:
        failures = [failure for failure in pool.map(check, BAD_INPUTS) if failure]
    assert not failures, "\n".join(failures)
    assert journal_rows(world.path) == before


def test_an_expired_hold_cannot_be_posted(tmp_path: Path) -> None:
    # The CLI's clock is injected (CREDITGATE_NOW): the hold expires without anyone waiting.
    db = f"sqlite:///{tmp_path / 'expiry.db'}"
    start, later = "2026-03-01T12:00:00Z", "2026-03-01T12:00:02Z"
    ok(db, "orgs", "create", "beta", now=start)
    ok(db, "grants", "create", "beta", "--credits", "10", now=start)
    hold = ok(db, "holds", "reserve", "beta", "--credits", "4", "--ttl", "1", now=start).out.strip()
    assert "expired 0" in ok(db, "expire", now=start).out  # still within its ttl
    assert "expired 1" in ok(db, "expire", now=later).out
    before = journal_rows(tmp_path / "expiry.db")
    run = cli(db, "holds", "post", "beta", hold, "--actual", "1", now=later)
    assert run.code == 1 and len(run.err.strip().splitlines()) == 1
    assert "already expired" in run.err and hold in run.err
    assert journal_rows(tmp_path / "expiry.db") == before
    assert ok(db, "balance", "beta", "--json", now=later).json()["available"] == "10"  # type: ignore[index]


def test_a_malformed_injected_time_is_refused(tmp_path: Path) -> None:
    run = cli(f"sqlite:///{tmp_path / 'x.db'}", "orgs", "create", "gamma", now="yesterday")
    assert run.code != 0 and len(run.err.strip().splitlines()) == 1 and "CREDITGATE_NOW" in run.err


def test_verify_fails_on_a_tampered_file_and_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "tamper.db"
    db = f"sqlite:///{path}"
    ok(db, "orgs", "create", "gamma")
    ok(db, "grants", "create", "gamma", "--credits", "10")
    ok(db, "debit", "gamma", "--credits", "1")
    ok(db, "debit", "gamma", "--credits", "2")
    assert ok(db, "verify").code == 0
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE journal_transactions SET result = replace(result, '2000000', '1000000') "
                           "WHERE seq = 3")
    run = cli(db, "verify")
    assert run.code == 1
    assert "journal entry 3" in run.err and run.err.strip().startswith("FAILED:")
    assert len(run.err.strip().splitlines()) == 1
    report = cli(db, "verify", "--json")
    assert report.code == 1 and json.loads(report.out)["ok"] is False


def test_concurrent_cli_processes_share_the_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    ok(db, "orgs", "create", "delta")
    ok(db, "grants", "create", "delta", "--credits", "5")
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda _: cli(db, "debit", "delta", "--credits", "2"), range(4)))
    assert sorted(run.code for run in runs) == [0, 0, 1, 1]
    assert all("insufficient credits" in run.err for run in runs if run.code)
    assert ok(db, "balance", "delta", "--json").json()["available"] == "1"  # type: ignore[index]
    assert ok(db, "verify").code == 0
