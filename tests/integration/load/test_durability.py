"""A process killed with SIGKILL mid-load loses nothing it acknowledged; verify passes after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from creditgate.clock import ManualClock
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade

ACKNOWLEDGED_BEFORE_KILL = 300
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_loses_nothing_acknowledged(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    database = Database(url)
    upgrade(database)
    ledger = Ledger(database, ManualClock())
    org = ledger.create_org("durable")
    ledger.grant(org.id, 10**9 * 1_000_000)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.load.durability_worker", url, org.id, "8"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acknowledged: list[str] = []
    assert worker.stdout is not None
    while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
        line = worker.stdout.readline()
        assert line, "the worker died before it was killed"
        acknowledged.append(line.strip())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL

    # A fresh process view of the database after the crash.
    database.dispose()
    reopened = Database(url)
    with reopened.read() as connection:
        keys = {row[0] for row in connection.execute(text(
            "SELECT idempotency_key FROM journal_transactions WHERE idempotency_key IS NOT NULL"))}
    for key in acknowledged:
        for step in ("reserve", "post", "debit"):
            assert f"{key}-{step}" in keys, f"acknowledged {key}-{step} was lost"
    report = verify(reopened)
    assert report.ok, report.problems[:3]
    ledger.close()
    reopened.dispose()
