"""Budgets per project and key, checked inside the same reservation as the credits."""

from __future__ import annotations

import threading

import pytest

from creditgate.clock import ManualClock
from creditgate.errors import InsufficientCredits, InvalidInput
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify

C = parse_amount


def test_hard_budget_refuses_what_would_pass_its_cap(ledger: Ledger) -> None:
    org = ledger.create_org("acme")
    ledger.grant(org.id, C("100"))
    ledger.set_budget(org.id, "project:prj_search", C("10"), mode="hard")
    first = ledger.reserve(org.id, C("6"), budget_subjects=["project:prj_search"])
    with pytest.raises(InsufficientCredits) as refused:
        ledger.reserve(org.id, C("5"), budget_subjects=["project:prj_search"])
    assert refused.value.details["limit_source"] == "budget:project:prj_search"
    assert refused.value.details["available"] == "4" and refused.value.details["required"] == "5"
    # Other projects, and the organization as a whole, are not limited by this budget.
    ledger.reserve(org.id, C("50"), budget_subjects=["project:prj_other"])
    # Posting less than held gives the rest back to the budget.
    ledger.post(org.id, first["hold_id"], C("2"))
    [budget] = ledger.list_budgets(org.id)
    assert (budget.spent, budget.held) == (C("2"), 0)
    ledger.reserve(org.id, C("8"), budget_subjects=["project:prj_search"])
    assert verify(ledger.database).ok


def test_soft_budget_only_counts_and_debits_count_too(ledger: Ledger) -> None:
    org = ledger.create_org("acme")
    ledger.grant(org.id, C("100"))
    ledger.set_budget(org.id, "key:key_1", C("1"), mode="soft")
    ledger.debit(org.id, C("3"), budget_subjects=["key:key_1"])
    [budget] = ledger.list_budgets(org.id)
    assert budget.spent == C("3") and budget.mode == "soft"
    ledger.set_budget(org.id, "key:key_1", C("1"), mode="hard")
    with pytest.raises(InsufficientCredits):
        ledger.debit(org.id, C("1"), budget_subjects=["key:key_1"])


def test_a_new_period_starts_with_nothing_spent(ledger: Ledger, clock: ManualClock) -> None:
    org = ledger.create_org("acme")
    ledger.grant(org.id, C("100"))
    ledger.set_budget(org.id, "project:prj_a", C("5"), period="day")
    ledger.debit(org.id, C("5"), budget_subjects=["project:prj_a"])
    with pytest.raises(InsufficientCredits):
        ledger.debit(org.id, C("1"), budget_subjects=["project:prj_a"])
    clock.advance(days=1)
    ledger.debit(org.id, C("5"), budget_subjects=["project:prj_a"])
    assert ledger.list_budgets(org.id)[0].spent == C("5")


def test_bad_budget_input_is_refused(ledger: Ledger) -> None:
    org = ledger.create_org("acme")
    for subject, mode, period in [("team:x", "hard", "month"), ("project:p", "loud", "month"),
                                  ("project:p", "hard", "year")]:
        with pytest.raises(InvalidInput):
            ledger.set_budget(org.id, subject, C("1"), mode=mode, period=period)
    assert ledger.list_budgets(org.id) == []


def test_concurrent_reservations_never_overshoot_a_budget(ledger: Ledger) -> None:
    org = ledger.create_org("acme")
    ledger.grant(org.id, C("1000"))
    ledger.set_budget(org.id, "project:prj_hot", C("20"))
    accepted: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            try:
                hold = ledger.reserve(org.id, C("1"), budget_subjects=["project:prj_hot"])
            except InsufficientCredits:
                continue
            with lock:
                accepted.append(hold["hold_id"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 20
    [budget] = ledger.list_budgets(org.id)
    assert budget.held == C("20")
    assert verify(ledger.database).ok


def test_soft_budget_alert_fires_once_when_the_budget_is_mostly_used(database_url: str, clock: ManualClock) -> None:
    from creditgate.bootstrap import bootstrap
    from creditgate.tracking.service import Tracking

    services = bootstrap(database_url, clock=clock)
    ledger = services.ledger
    org = ledger.create_org("soft")
    ledger.grant(org.id, C("100"))
    ledger.set_budget(org.id, "project:prj_docs", C("10"), mode="soft")
    tracking = Tracking(services)
    tracking.rules.create(org.id, "budget_used", {"subject": "project:prj_docs", "percent": 80})
    ledger.debit(org.id, C("7"), budget_subjects=["project:prj_docs"])
    tracking.step()
    assert tracking.rules.alerts(org.id) == []
    ledger.debit(org.id, C("2"), budget_subjects=["project:prj_docs"])  # 90%: fires
    clock.advance(seconds=120)
    tracking.step()
    ledger.debit(org.id, C("5"), budget_subjects=["project:prj_docs"])  # soft: allowed past the cap
    clock.advance(seconds=120)
    tracking.step()
    assert [a["transition"] for a in tracking.rules.alerts(org.id)] == ["fired"]
    tracking.close()
    services.close()
