"""A purchase retried after its grants were made but before its row was written (a crash in
between) is finished, not refused: its grants replay, and the credits arrive once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from creditgate.api import catalog
from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock
from creditgate.ledger.credits import parse_amount as C
from creditgate.ledger.verify import verify
from creditgate.pricing.bundles import Bundle


def test_a_purchase_retried_after_a_crash_between_its_grants_and_its_row_completes(database_url: str) -> None:
    clock = ManualClock()
    services = bootstrap(database_url, clock=clock)
    try:
        org = services.ledger.create_org("acme")
        bundle = catalog.create_bundle(services, Bundle(name="starter", price=C("4"), currency="USD",
                                                        credits=C("50"), bonus_credits=C("5"), validity_days=30))

        def crash_before_the_row(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO API_PURCHASES"):
                raise RuntimeError("the process died here")

        event.listen(services.database.engine, "before_cursor_execute", crash_before_the_row)
        with pytest.raises(RuntimeError, match="died"):
            catalog.purchase(services, org.id, bundle["id"], "pay-1")
        event.remove(services.database.engine, "before_cursor_execute", crash_before_the_row)
        assert services.ledger.balance(org.id).available == C("55")  # the grants stood

        clock.advance(seconds=90)  # the client retries a little later
        created, purchase = catalog.purchase(services, org.id, bundle["id"], "pay-1")
        assert created and purchase["payment_reference"] == "pay-1"
        assert services.ledger.balance(org.id).available == C("55")  # not twice
        again = catalog.purchase(services, org.id, bundle["id"], "pay-1")
        assert again == (False, purchase)
        assert verify(services.database).ok
    finally:
        services.close()


def test_two_duplicate_purchases_at_once_book_the_credits_once(database_url: str) -> None:
    """With a real clock each duplicate prices its grants at its own time; the one that finds
    the other's grants booked takes their time, and both answer the same purchase."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from creditgate.clock import SystemClock

    services = bootstrap(database_url, clock=SystemClock())
    try:
        org = services.ledger.create_org("acme")
        bundle = catalog.create_bundle(services, Bundle(name="starter", price=C("4"), currency="USD",
                                                        credits=C("50"), bonus_credits=0, validity_days=30))
        for round_ in range(5):
            barrier = threading.Barrier(2)

            def buy(reference: str = f"pay-{round_}", barrier: threading.Barrier = barrier) -> Any:
                barrier.wait()
                return catalog.purchase(services, org.id, bundle["id"], reference)

            with ThreadPoolExecutor(2) as pool:
                first, second = [future.result() for future in [pool.submit(buy), pool.submit(buy)]]
            assert first[1] == second[1]
        assert services.ledger.balance(org.id).available == 5 * C("50")
        assert verify(services.database).ok
    finally:
        services.close()
