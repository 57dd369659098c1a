"""A load worker for the multi-process tests: random ledger operations against one organization.

Run as ``python -m tests.integration.load.worker URL ORG SEED OPS THREADS`` or through
multiprocessing. Time is a shared injected clock (a multiprocessing value) that workers advance,
so holds really time out without anybody sleeping.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from creditgate.errors import CreditgateError
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database


class SharedClock:
    """An injected clock whose time lives in shared memory, so every process sees one time."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def now_us(self) -> int:
        return int(self.value.value)

    def advance(self, micros: int) -> None:
        with self.value.get_lock():
            self.value.value += micros


def run_worker(url: str, org_id: str, seed: int, operations: int, threads: int, shared_time: Any) -> dict[str, int]:
    clock = SharedClock(shared_time)
    ledger = Ledger(Database(url), clock)
    totals = {"posted": 0, "debited": 0, "refused": 0, "ops": 0}
    lock = threading.Lock()

    def thread_main(thread_seed: int) -> None:
        rng = random.Random(thread_seed)
        pending: list[str] = []
        for _ in range(operations):
            choice = rng.random()
            try:
                if choice < 0.4 or not pending:
                    hold = ledger.reserve(org_id, rng.randint(1, 50) * 1_000_000, ttl_s=rng.choice([1, 2, 30]))
                    pending.append(hold["hold_id"])
                elif choice < 0.65:
                    hold_id = pending.pop(rng.randrange(len(pending)))
                    held = ledger.get_hold(org_id, hold_id).amount
                    result = ledger.post(org_id, hold_id, rng.randint(0, held))
                    with lock:
                        totals["posted"] += result["posted"]
                elif choice < 0.75:
                    ledger.void(org_id, pending.pop(rng.randrange(len(pending))))
                elif choice < 0.9:
                    result = ledger.debit(org_id, rng.randint(1, 20) * 1_000_000)
                    with lock:
                        totals["debited"] += result["debited"]
                else:
                    # Let some holds time out: move the shared clock on by up to 1.5 s.
                    clock.advance(rng.randint(1, 1_500_000))
            except CreditgateError:
                with lock:
                    totals["refused"] += 1
            with lock:
                totals["ops"] += 1

    workers = [threading.Thread(target=thread_main, args=(seed * 1000 + index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ledger.close()
    ledger.database.dispose()
    return totals
