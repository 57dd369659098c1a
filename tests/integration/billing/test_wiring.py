"""Billing wired into the rest: late usage in ingestion, trials on new orgs, scheduled top-ups."""

from __future__ import annotations

import httpx
import pytest

from creditgate.api.app import create_app
from creditgate.billing.scheduler import BillingScheduler
from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock, iso
from creditgate.ledger.credits import parse_amount
from tests.support.servers import serve

ADMIN = "admin-key-for-billing-wiring-0123456789"
DAY_US = 86_400_000_000


@pytest.fixture
def stack(database_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CREDITGATE_ADMIN_KEY", ADMIN)
    services = bootstrap(database_url, clock=clock)
    services.extras["pricing"] = __import__("creditgate.pricing.samples", fromlist=["x"]).sample_engine(clock)
    with serve(create_app(services)) as url, \
            httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}) as client:
        yield services, client
    services.close()


def _event(org_id: str, event_id: str, at_us: int) -> dict[str, object]:
    return {"specversion": "1.0", "type": "creditgate.usage", "source": "test", "id": event_id,
            "subject": org_id, "time": iso(at_us),
            "data": {"model": "gpt-4o-mini", "meters": {"input_tokens": 1000}}}


def test_usage_in_a_closed_period_follows_the_late_policy(stack, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    services, client = stack
    billing = services.extras["billing"]
    org = services.ledger.create_org("late-org")
    services.ledger.grant(org.id, parse_amount("100"))
    billing.set_cycle(org.id, kind="days", length_days=1, late_grace_s=3600, late_after_grace="reject")
    first_period_time = clock.now_us() + 1000
    clock.advance(days=1, seconds=60)
    billing.close_due()
    # Within the one-hour grace window: booked now, in the current period.
    answer = client.post("/api/v1/events", json=[_event(org.id, "in-grace", first_period_time)])
    assert answer.json()["results"][0]["status"] == "accepted", answer.text
    clock.advance(seconds=2 * 3600)
    answer = client.post("/api/v1/events", json=[_event(org.id, "after-grace", first_period_time),
                                                 _event(org.id, "current", clock.now_us())])
    late, current = answer.json()["results"]
    assert late["status"] == "rejected" and late["reason"] == "late_rejected"
    assert "time:" in late["message"]
    assert current["status"] == "accepted"


def test_new_orgs_get_the_configured_trial_once(stack) -> None:  # type: ignore[no-untyped-def]
    services, client = stack
    services.extras["billing"].trials.configure(parse_amount("5"), 7)
    created = client.post("/api/v1/orgs", json={"name": "trial-org"})
    assert created.status_code == 201
    org_id = created.json()["id"]
    grants = services.ledger.list_grants(org_id)
    assert [(g.kind, g.amount) for g in grants] == [("trial", parse_amount("5"))]
    assert services.extras["billing"].on_org_created(org_id) is None  # never twice
    assert len(services.ledger.list_grants(org_id)) == 1


def test_scheduler_opens_a_top_up_when_the_balance_falls(stack) -> None:  # type: ignore[no-untyped-def]
    services, _ = stack
    billing = services.extras["billing"]
    org = services.ledger.create_org("topup-org")
    services.ledger.grant(org.id, parse_amount("10"))
    billing.topups.set_rule(org.id, threshold=parse_amount("5"), credits=parse_amount("50"),
                            price=parse_amount("5"))
    scheduler = BillingScheduler(billing)
    scheduler.run_once()
    assert billing.topups.list_invoices(org.id) == []
    services.ledger.debit(org.id, parse_amount("6"))
    scheduler.run_once()
    scheduler.run_once()  # no second invoice while the first is open
    invoices = billing.topups.list_invoices(org.id)
    assert len(invoices) == 1 and invoices[0]["status"] == "open"
