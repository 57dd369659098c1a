"""Writes acknowledged operations forever; prints each idempotency key once its commit returned."""

from __future__ import annotations

import sys
import threading

from creditgate.clock import ManualClock
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database


def main(url: str, org_id: str, threads: int) -> None:
    ledger = Ledger(Database(url), ManualClock())
    print_lock = threading.Lock()

    def loop(thread: int) -> None:
        index = 0
        while True:
            key = f"t{thread}-{index}"
            hold = ledger.reserve(org_id, 2_000_000, idempotency_key=f"{key}-reserve")
            ledger.post(org_id, hold["hold_id"], 1_000_000, idempotency_key=f"{key}-post")
            ledger.debit(org_id, 500_000, idempotency_key=f"{key}-debit")
            with print_lock:
                sys.stdout.write(f"{key}\n")
                sys.stdout.flush()
            index += 1

    for thread in range(threads):
        threading.Thread(target=loop, args=(thread,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
