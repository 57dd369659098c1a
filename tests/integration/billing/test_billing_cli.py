"""The billing and statement CLIs: bad input exits non-zero with one line and writes nothing;
a statement file verifies offline and one changed figure makes it fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import func, select
from typer.testing import CliRunner

from creditgate.bootstrap import bootstrap
from creditgate.cli.main import app
from creditgate.clock import ManualClock
from creditgate.errors import CreditgateError
from creditgate.storage.tables_billing import billing_allowances, training_jobs
from tests.integration.billing.helpers import credits


def run_cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess (slow to start: used once, for the one-line error)."""
    return subprocess.run([sys.executable, "-m", "creditgate.cli.main", *args, "--db", db],
                          capture_output=True, text=True, timeout=60, check=False)


def invoke(*args: str, db: str | None = None) -> Result:
    """The same Typer app in-process; operating errors surface as ``result.exception``, which the
    root's ``run()`` turns into one line and exit 1."""
    return CliRunner().invoke(app, [*args, *(["--db", db] if db else [])])


def refused(result: Result, words: str) -> bool:
    return (result.exit_code != 0 and isinstance(result.exception, CreditgateError)
            and words in result.exception.message)


@pytest.fixture
def org_db(sqlite_url: str) -> tuple[str, str]:
    services = bootstrap(sqlite_url)
    org = services.ledger.create_org("cli-org")
    services.ledger.grant(org.id, credits("50"), scope="inference")
    services.close()
    return sqlite_url, org.id


def count(db: str, table) -> int:  # type: ignore[no-untyped-def]
    services = bootstrap(db)
    with services.database.read() as connection:
        found = connection.execute(select(func.count()).select_from(table)).scalar_one()
    services.close()
    return int(found)


def test_bad_input_exits_non_zero_and_writes_nothing(org_db: tuple[str, str]) -> None:
    db, org = org_db
    bad = run_cli("billing", "allowance", "add", org, "plan", "--credits", "10",
                  "--rollover", '{"policy": "capped", "cap_percent": "150"}', db=db)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "100" in bad.stderr
    assert count(db, billing_allowances) == 0
    future = invoke("billing", "close", "--org", org, "--period-start", "2099-01-01T00:00:00Z", db=db)
    assert refused(future, "no billing period") or refused(future, "not ended")
    training = invoke("billing", "training", "start", org, "--model", "m", "--dataset", "d",
                      "--credits-per-gpu-hour", "1", db=db)
    assert refused(training, "inference-only")
    assert count(db, training_jobs) == 0
    assert refused(invoke("billing", "cycle", "set", org, "--timezone", "Mars/Olympus", db=db), "timezone")
    assert refused(invoke("billing", "topup", "set", org, "--threshold", "1", "--credits", "0",
                          "--price", "1", db=db), "credits")


def test_statement_show_and_verify_offline(tmp_path: Path, sqlite_url: str) -> None:
    clock = ManualClock()
    services = bootstrap(sqlite_url, clock=clock)
    billing = services.extras["billing"]
    org = services.ledger.create_org("statements")
    billing.set_cycle(org.id, kind="days", length_days=3, timezone="UTC")
    services.ledger.grant(org.id, credits("10"))
    services.ledger.debit(org.id, credits("2.5"))
    clock.advance(days=3)
    statement_id = billing.close_org(org.id)[0].statement_id
    services.close()
    listed = invoke("statement", "list", org.id, db=sqlite_url)
    assert listed.exit_code == 0 and statement_id in listed.output
    path = tmp_path / "statement.json"
    shown = invoke("statement", "show", org.id, statement_id, "-o", str(path), db=sqlite_url)
    assert shown.exit_code == 0
    ok = invoke("statement", "verify", str(path))
    assert ok.exit_code == 0 and "valid" in ok.output
    document = json.loads(path.read_text())
    document["statement"]["usage"]["total"] = "2.4"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    bad = invoke("statement", "verify", str(tampered))
    assert bad.exit_code != 0 and "NOT valid" in bad.output
    for fmt, marker in (("csv", "closing balance"), ("html", "<table>")):
        rendered = invoke("statement", "show", org.id, statement_id, "--format", fmt, db=sqlite_url)
        assert rendered.exit_code == 0 and marker in rendered.output
