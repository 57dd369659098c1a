"""The same request retried at once through two writers (two processes' ledgers on one database):
one applies it, the other replays its result; neither gets a database error."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from creditgate.clock import ManualClock
from creditgate.ledger.credits import parse_amount as c
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade

ROUNDS = 30


def test_two_writers_racing_with_one_idempotency_key_apply_it_once(database_url: str) -> None:
    databases = [Database(database_url), Database(database_url)]
    upgrade(databases[0])
    clock = ManualClock()
    ledgers = [Ledger(database, clock) for database in databases]
    try:
        org = ledgers[0].create_org("acme")
        ledgers[0].grant(org.id, c("1000"))
        barrier = threading.Barrier(2)

        def debit(ledger: Ledger, key: str) -> dict[str, Any]:
            barrier.wait()
            return ledger.debit(org.id, c("1"), ref="retry", idempotency_key=key)  # type: ignore[no-any-return]

        outcomes = []
        with ThreadPoolExecutor(2) as pool:
            for round_ in range(ROUNDS):
                key = f"request-{round_}"
                pair = [pool.submit(debit, ledger, key) for ledger in ledgers]
                outcomes.append([future.result() for future in pair])  # raises a database error, if any
        for first, second in outcomes:
            assert sorted([bool(first.get("replayed")), bool(second.get("replayed"))]) == [False, True]
        assert ledgers[0].balance(org.id).available == c("1000") - ROUNDS * c("1")
        assert verify(databases[0]).ok
    finally:
        for ledger, database in zip(ledgers, databases, strict=True):
            ledger.close()
            database.dispose()
