"""No overspend under real concurrency: 8 processes x 4 threads against one organization."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from sqlalchemy import text

from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade
from tests.integration.load.worker import SharedClock, run_worker

PROCESSES = 8
THREADS = 4
OPERATIONS_PER_THREAD = 60
GRANTED = 2_000 * 1_000_000  # far less than the workers try to spend
START_US = 1_767_225_600_000_000

SPENT_SQL = """
SELECT
  (SELECT COALESCE(SUM(amount), 0) FROM grants) AS granted,
  (SELECT COALESCE(SUM(posted), 0) FROM holds WHERE status = 'posted') AS posted,
  (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE status = 'pending') AS pending,
  (SELECT COALESCE(SUM(amount - remaining), 0) FROM grants) AS consumed
"""


def _watch(url: str, stop: threading.Event, samples: list[tuple[int, int, int, int]]) -> None:
    database = Database(url)
    while not stop.is_set():
        with database.read() as connection:
            samples.append(tuple(connection.execute(text(SPENT_SQL)).one()))  # type: ignore[arg-type]
    database.dispose()


def _report(outbox, url, org_id, seed, shared_time):  # type: ignore[no-untyped-def]
    outbox.put(run_worker(url, org_id, seed, OPERATIONS_PER_THREAD, THREADS, shared_time))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_many_processes_never_overspend(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    database = Database(url)
    upgrade(database)
    context = multiprocessing.get_context("spawn")
    shared_time = context.Value("q", START_US)
    setup = Ledger(database, SharedClock(shared_time))
    org = setup.create_org("hot")
    setup.grant(org.id, GRANTED // 2, kind="purchase", priority=10)
    setup.grant(org.id, GRANTED // 2, kind="promotional", priority=5, expires_at_us=START_US + 10**12)

    stop = threading.Event()
    samples: list[tuple[int, int, int, int]] = []
    watcher = threading.Thread(target=_watch, args=(url, stop, samples))
    watcher.start()
    outbox = context.Queue()
    processes = [context.Process(target=_report, args=(outbox, url, org.id, seed, shared_time))
                 for seed in range(PROCESSES)]
    for process in processes:
        process.start()
    results = [outbox.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    stop.set()
    watcher.join()

    assert sum(r["ops"] for r in results) == PROCESSES * THREADS * OPERATIONS_PER_THREAD
    assert sum(r["refused"] for r in results) > 0, "the load must run into the limit to prove anything"
    assert samples, "the watcher must have sampled during the run"
    for granted, posted, pending, consumed in samples:
        # Debits do not appear in the holds table, so check both views of spending.
        assert posted + pending <= granted
        assert consumed + pending <= granted
    # Holds still pending time out once the clock passes their ttl; nothing is left behind.
    SharedClock(shared_time).advance(60_000_000)
    setup.expire_due(org.id)
    balance = setup.balance(org.id)
    acknowledged = sum(r["posted"] + r["debited"] for r in results)
    with database.read() as connection:
        granted, posted, pending, consumed = connection.execute(text(SPENT_SQL)).one()
    assert pending == 0 and balance.pending == 0
    assert consumed == acknowledged, "every acknowledged charge is booked, and nothing else"
    assert balance.available == GRANTED - acknowledged
    report = verify(database)
    assert report.ok, report.problems[:3]
    setup.close()
    database.dispose()
