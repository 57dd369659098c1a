"""Auto top-up (no runaway loop, no double top-up under concurrency), invoices, trials,
recurring allowances and training jobs."""

from __future__ import annotations

import threading

import pytest

from creditgate.billing.service import Billing
from creditgate.billing.topup import PaymentResult
from creditgate.clock import ManualClock
from creditgate.errors import Conflict, InvalidInput
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database
from tests.integration.billing.helpers import credits


@pytest.fixture
def billing(database: Database, ledger: Ledger, clock: ManualClock) -> Billing:
    return Billing(database, ledger, clock)


def test_top_up_waits_for_payment_and_never_runs_away(billing: Billing, ledger: Ledger, clock: ManualClock) -> None:
    org = ledger.create_org("topup")
    ledger.grant(org.id, credits("100"))
    billing.topups.set_rule(org.id, threshold=credits("50"), credits=credits("200"), price=credits("20"),
                            cooldown_s=3600, max_per_period=2)
    assert billing.topups.check(org.id) is None  # above the threshold
    ledger.debit(org.id, credits("60"))
    invoice = billing.topups.check(org.id)
    assert invoice is not None and invoice["status"] == "open"
    assert ledger.balance(org.id).available == credits("40")  # not usable before payment
    # A loop calling check again and again opens nothing more while the invoice is open.
    for _ in range(20):
        clock.advance(seconds=7200)
        assert billing.topups.check(org.id) is None
    paid = billing.topups.confirm_payment(org.id, invoice["id"])
    assert paid["status"] == "paid" and ledger.balance(org.id).available == credits("240")
    assert billing.topups.confirm_payment(org.id, invoice["id"])["grant_id"] == paid["grant_id"]
    assert ledger.balance(org.id).available == credits("240")  # confirmed twice, granted once
    # Drain, top up again: the second top-up of the period is the last one (max_per_period=2).
    ledger.debit(org.id, credits("230"))
    second = billing.topups.check(org.id)
    assert second is not None
    billing.topups.confirm_payment(org.id, second["id"])
    ledger.debit(org.id, credits("205"))
    for _ in range(10):
        clock.advance(seconds=3601)
        assert billing.topups.check(org.id) is None
    keys = sorted(item["idempotency_key"] for item in billing.topups.list_invoices(org.id))
    assert len(keys) == 2 and keys[0].endswith(":1") and keys[1].endswith(":2")


def test_no_double_top_up_under_concurrency(billing: Billing, ledger: Ledger) -> None:
    org = ledger.create_org("race")
    billing.topups.set_rule(org.id, threshold=credits("10"), credits=credits("100"), price=credits("10"),
                            cooldown_s=0, max_per_period=50)
    barrier = threading.Barrier(8)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        results.append(billing.topups.check(org.id))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for result in results if result is not None) == 1
    assert len(billing.topups.list_invoices(org.id)) == 1


def test_a_provider_that_charges_at_once_grants_at_once(database: Database, ledger: Ledger,
                                                         clock: ManualClock) -> None:
    class CardOnFile:
        name = "card"

        def charge(self, invoice: dict[str, object]) -> PaymentResult:
            return PaymentResult("paid", provider_ref=f"ch_{invoice['id']}")

    billing = Billing(database, ledger, clock, payment_provider=CardOnFile())
    org = ledger.create_org("card")
    billing.topups.set_rule(org.id, threshold=credits("1"), credits=credits("5"), price=credits("1"))
    invoice = billing.topups.check(org.id)
    assert invoice is not None and invoice["status"] == "paid" and invoice["provider_ref"].startswith("ch_")
    assert ledger.balance(org.id).available == credits("5")


def test_trial_is_granted_once_with_short_expiry_and_limited_scope(billing: Billing, ledger: Ledger,
                                                                   clock: ManualClock) -> None:
    org = ledger.create_org("trial")
    assert billing.trials.grant_if_configured(org.id) is None  # not configured
    billing.trials.configure(credits("5"), 7, scope="inference", allow=["m-small"])
    grant_id = billing.trials.grant_if_configured(org.id)
    assert grant_id is not None
    grant = ledger.get_grant(org.id, grant_id)
    assert grant.kind == "trial" and grant.scope == "inference" and grant.allow == frozenset({"m-small"})
    assert grant.expires_at_us == clock.now_us() + 7 * 86_400_000_000
    assert billing.trials.grant_if_configured(org.id) is None
    with pytest.raises(Conflict):
        billing.trials.grant(org.id)
    assert len([g for g in ledger.list_grants(org.id) if g.kind == "trial"]) == 1
    with pytest.raises(InvalidInput):
        billing.trials.configure(credits("5"), 0)


def test_allowance_grants_each_period_once(billing: Billing, ledger: Ledger, clock: ManualClock) -> None:
    org = ledger.create_org("allowance")
    billing.set_cycle(org.id, kind="days", length_days=5, timezone="UTC")
    billing.allowances.create(org.id, "plan", credits("10"), scope="training",
                              rollover={"policy": "capped", "cap_amount": "2"})
    with pytest.raises(InvalidInput):  # a cap above 100% is refused and nothing is written
        billing.allowances.create(org.id, "bad", credits("10"), rollover={"policy": "capped", "cap_percent": "101"})
    assert [a.name for a in billing.allowances.list(org.id)] == ["plan"]
    for _ in range(3):
        clock.advance(days=5)
        billing.close_org(org.id)
        billing.close_org(org.id)
    recurring = [g for g in ledger.list_grants(org.id) if g.kind == "recurring"]
    rolled = [g for g in ledger.list_grants(org.id) if g.kind == "rollover"]
    assert len(recurring) == 4 and all(g.scope == "training" for g in recurring)
    assert len(rolled) == 3 and all(g.amount == credits("2") for g in rolled)
    assert ledger.balance(org.id, scope="training").available == credits("12")


def test_training_job_books_what_it_can_and_is_told_to_stop(billing: Billing, ledger: Ledger,
                                                            database: Database) -> None:
    org = ledger.create_org("trainer")
    ledger.grant(org.id, credits("1000"), scope="inference")
    with pytest.raises(InvalidInput):  # an inference-only organization cannot start training
        billing.training.start(org.id, model="llama", dataset_ref="s3://d", credits_per_gpu_hour=credits("10"))
    assert billing.training.list(org.id) == []
    ledger.grant(org.id, credits("25"), scope="training")
    ledger.grant(org.id, credits("5"), scope="any", priority=500)
    job = billing.training.start(org.id, model="llama", dataset_ref="s3://d", credits_per_gpu_hour=credits("10"))
    step = billing.training.report(org.id, job["id"], credits("1.5"))
    assert not step["stop"] and step["credits_booked"] == "15"
    assert billing.training.report(org.id, job["id"], credits("1.5"))["booked_now"] == "0"  # a retry
    step = billing.training.report(org.id, job["id"], credits("4"))  # 25 more, only 15 left
    assert step["stop"] and step["booked_now"] == "15" and step["unbooked_now"] == "10"
    assert ledger.balance(org.id, scope="training").available == 0
    assert ledger.balance(org.id, scope="inference").available == credits("1000")  # never touched
    assert verify(database).ok


def test_training_overage_uses_the_overdraft(billing: Billing, ledger: Ledger) -> None:
    org = ledger.create_org("overdraft-trainer", overdraft_limit=credits("4"))
    ledger.grant(org.id, credits("10"), scope="training")
    job = billing.training.start(org.id, model="m", dataset_ref="d", credits_per_gpu_hour=credits("1"))
    step = billing.training.report(org.id, job["id"], credits("20"))
    assert step["stop"] and step["credits_booked"] == "14" and step["credits_unbooked"] == "6"
    assert ledger.balance(org.id, scope="training").debt == credits("4")


def test_trial_is_never_granted_twice_under_concurrency(billing: Billing, ledger: Ledger) -> None:
    org = ledger.create_org("trial-race")
    billing.trials.configure(credits("5"), 3)
    barrier = threading.Barrier(6)
    granted: list[str | None] = []

    def worker() -> None:
        barrier.wait()
        try:
            granted.append(billing.trials.grant_if_configured(org.id))
        except Conflict:
            granted.append(None)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([g for g in granted if g]) == 1
    assert len([g for g in ledger.list_grants(org.id) if g.kind == "trial"]) == 1


def test_billing_demo_expires_one_grant_and_rolls_another_under_its_cap(billing: Billing,
                                                                        clock: ManualClock) -> None:
    from creditgate.billing.demo import run_billing_demo

    result = run_billing_demo(billing, clock)
    assert result["rolled"] == [{"grant_id": result["rolled_grant"], "amount": "50"}]
    first = result["statements"][0]["statement"]
    assert any(item["grant_id"] == result["expired_grant"] for item in first["breakage"]["items"])
    assert all(item["ok"] for item in result["verified"]) and result["reconcile_problems"] == []
