"""Out-of-range times on the command line: one ``error:`` line naming the option, a non-zero exit,
nothing written, and the organization still readable afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.e2e.cli.test_ledger_cli import CLI_PARALLEL, cli, journal_rows, ok

FAR_FUTURE = "9999-12-31T23:59:59-12:00"  # year 10000 in UTC
FAR_PAST = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
LAST = "8999-12-31T23:59:59.999999Z"
NOW = "2026-01-01T00:00:00Z"

REFUSED = {
    "grant expiry far future": (["grants", "create", "acme", "--credits", "5", "--expires-at", FAR_FUTURE],
                                "expires_at"),
    "grant expiry far past": (["grants", "create", "acme", "--credits", "5", "--expires-at", FAR_PAST],
                              "expires_at"),
    "grant start far past": (["grants", "create", "acme", "--credits", "5", "--effective-at", FAR_PAST],
                             "effective_at"),
    "close far period start": (["billing", "close", "--org", "acme", "--period-start", FAR_FUTURE],
                               "period_start"),
    "late usage far time": (["billing", "late-usage", "acme", "--at", FAR_FUTURE], "at"),
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("cli-time") / "creditgate.db"
    url = f"sqlite:///{path}"
    ok(url, "db", "upgrade")
    ok(url, "orgs", "create", "acme", now=NOW)
    ok(url, "grants", "create", "acme", "--credits", "10", now=NOW)
    return url, path


def test_out_of_range_times_exit_non_zero_with_one_line_and_write_nothing(db: tuple[str, Path]) -> None:
    url, path = db
    before = journal_rows(path)
    balance_before = ok(url, "balance", "acme", "--json", now=NOW).out

    def check(case: str) -> str | None:
        args, field = REFUSED[case]
        run = cli(url, *args, now=NOW)
        lines = run.err.strip().splitlines()
        if (run.code == 0 or len(lines) != 1 or not lines[0].startswith(f"error: {field}: ")
                or LAST not in lines[0] or run.out):
            return f"{case}: exit {run.code}, stdout {run.out!r}, stderr {run.err!r}"
        return None

    with ThreadPoolExecutor(max_workers=CLI_PARALLEL) as pool:
        failures = [failure for failure in pool.map(check, REFUSED) if failure]
    assert not failures, "\n".join(failures)
    assert journal_rows(path) == before
    assert ok(url, "balance", "acme", "--json", now=NOW).out == balance_before
    ok(url, "grants", "list", "acme", now=NOW)


def test_an_out_of_range_injected_time_is_refused(tmp_path: Path) -> None:
    run = cli(f"sqlite:///{tmp_path / 'x.db'}", "orgs", "create", "gamma", now=FAR_FUTURE)
    lines = run.err.strip().splitlines()
    assert run.code != 0 and len(lines) == 1 and lines[0].startswith("error: CREDITGATE_NOW: ")


def test_the_last_accepted_time_is_stored_and_listed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'last.db'}"
    ok(url, "orgs", "create", "delta", now=NOW)
    ok(url, "grants", "create", "delta", "--credits", "5", "--expires-at", LAST, now=NOW)
    assert LAST in ok(url, "grants", "list", "delta", "--json", now=NOW).out
    ok(url, "balance", "delta", now=NOW)
