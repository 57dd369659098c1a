"""The ``creditgate`` command on inputs it used to accept silently or answer with a traceback:
an unknown hold status, a journal cursor past BIGINT, and a row damaged outside creditgate. Each
exits non-zero with one line on stderr and nothing on stdout."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.e2e.cli.test_ledger_cli import CLI_PARALLEL, Run, cli, ok


def one_line(run: Run) -> str:
    lines = run.err.strip().splitlines()
    assert run.code != 0 and len(lines) == 1 and not run.out, (
        f"exit {run.code}, stdout {run.out!r}, stderr {run.err!r}")
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli-bad') / 'creditgate.db'}"
    ok(url, "orgs", "create", "acme")
    ok(url, "grants", "create", "acme", "--credits", "10")
    ok(url, "holds", "reserve", "acme", "--credits", "1")
    return url


REFUSED = {
    "unknown hold status": (["holds", "list", "acme", "--status", "bogus"], "--status"),
    "journal cursor past BIGINT": (["journal", "acme", "--after", "99999999999999999999"], "after_seq"),
    "journal cursor just past BIGINT": (["journal", "acme", "--after", str(2**63)], "after_seq"),
    "negative journal cursor": (["journal", "acme", "--after=-1"], "after_seq"),
}


def test_bad_options_exit_non_zero_with_one_line(db: str) -> None:
    def check(case: str) -> str | None:
        args, fragment = REFUSED[case]
        run = cli(db, *args)
        lines = run.err.strip().splitlines()
        if run.code == 0 or len(lines) != 1 or fragment not in lines[0] or run.out:
            return f"{case}: exit {run.code}, stdout {run.out!r}, stderr {run.err!r}"
        return None

    with ThreadPoolExecutor(max_workers=CLI_PARALLEL) as pool:
        failures = [failure for failure in pool.map(check, REFUSED) if failure]
    assert not failures, "\n".join(failures)


def test_good_options_still_answer(db: str) -> None:
    assert "pending" in ok(db, "holds", "list", "acme", "--status", "pending").out
    assert ok(db, "holds", "list", "acme", "--status", "posted").out == ""
    assert ok(db, "journal", "acme", "--after", str(2**63 - 1)).out == ""


def test_a_damaged_row_is_named_by_verify_and_by_other_commands(tmp_path: Path) -> None:
    path = tmp_path / "creditgate.db"
    url = f"sqlite:///{path}"
    org = ok(url, "orgs", "create", "acme").out.strip()
    grant = ok(url, "grants", "create", "acme", "--credits", "10", "--allow", "m1").out.strip()
    assert ok(url, "verify").out.startswith("ok: ")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE grants SET allow = 'garbage' WHERE id = ?", (grant,))
    line = one_line(cli(url, "verify"))
    assert line.startswith(f"FAILED: org {org} grant {grant}: column allow is damaged"), line
    for command in (["grants", "list", "acme"], ["balance", "acme"]):
        line = one_line(cli(url, *command))
        assert line.startswith(f"error: grant {grant}: column allow is damaged"), (command, line)
