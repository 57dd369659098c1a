"""Alert rules on real storage (SQLite and PostgreSQL): once per crossing, hysteresis, no
duplicates when evaluators race; and the forecast use case on synthetic usage with known answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from creditgate.bootstrap import Services, bootstrap
from creditgate.clock import ManualClock, iso
from creditgate.ledger.credits import parse_amount
from creditgate.tracking.forecast import DAY_US, HOUR_US
from creditgate.tracking.service import Tracking
from creditgate.usage.records import UsageRow, record_usage

C = parse_amount


@pytest.fixture
def services(database_url: str, clock: ManualClock) -> Iterator[Services]:
    built = bootstrap(database_url, clock=clock)
    yield built
    built.close()


def test_available_below_fires_once_per_crossing_with_hysteresis(services: Services, clock: ManualClock) -> None:
    ledger = services.ledger
    org = ledger.create_org("alerting")
    ledger.grant(org.id, C("100"))
    tracking = Tracking(services)
    tracking.rules.create(org.id, "available_below", {"credits": "50"}, hysteresis_percent=10)
    ledger.debit(org.id, C("51"))  # 49 left: below 50
    tracking.step()
    tracking.step()
    ledger.debit(org.id, C("1"))  # still below: no storm
    clock.advance(seconds=120)
    tracking.step()
    assert [a["transition"] for a in tracking.rules.alerts(org.id)] == ["fired"]
    ledger.grant(org.id, C("4"))  # 52: above 50 but inside the 10% band: stays firing
    clock.advance(seconds=120)
    tracking.step()
    assert tracking.rules.list_rules(org.id)[0]["state"] == "firing"
    ledger.grant(org.id, C("5"))  # 57 >= 55: resolved
    clock.advance(seconds=120)
    tracking.step()
    ledger.debit(org.id, C("10"))  # 47: a new crossing fires again
    clock.advance(seconds=120)
    tracking.step()
    assert [a["transition"] for a in reversed(tracking.rules.alerts(org.id))] == ["fired", "resolved", "fired"]
    tracking.close()


def test_racing_evaluators_record_a_crossing_exactly_once(services: Services, clock: ManualClock) -> None:
    ledger = services.ledger
    org = ledger.create_org("racing")
    ledger.grant(org.id, C("100"))
    evaluators = [Tracking(services) for _ in range(6)]
    evaluators[0].rules.create(org.id, "available_below", {"credits": "90"})
    evaluators[0].webhooks.create_endpoint(org.id, "http://127.0.0.1:9/unused")
    ledger.debit(org.id, C("20"))
    barrier = threading.Barrier(len(evaluators))
    errors: list[BaseException] = []

    def run(tracking: Tracking) -> None:
        try:
            barrier.wait()
            tracking.evaluator.tick()
        except Exception as error:  # noqa: BLE001 - any failure is reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(tracking,)) for tracking in evaluators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [a["transition"] for a in evaluators[0].rules.alerts(org.id)] == ["fired"]
    types = sorted(d["event_type"] for d in evaluators[0].webhooks.list_deliveries(org.id))
    assert types == ["alert.fired", "balance.low"]
    for tracking in evaluators:
        tracking.close()


def test_forecast_of_synthetic_usage(services: Services, clock: ManualClock) -> None:
    """10 credits a day for 14 days, with one 500-credit spike day; 100 purchased credits and 30
    promotional ones expiring in 2 days: the median ignores the spike, 10 of the promotional
    credits go unused, depletion is 2 + 10 days away, and a 40-credit bundle is the cheapest
    that covers the next period (6 × small at 4 beats 1 × large at 30)."""
    ledger = services.ledger
    org = ledger.create_org("forecasted")
    clock.advance(days=20)
    now = clock.now_us()
    rows = [UsageRow(org_id=org.id, model="m", meters={}, credits=C("500" if day == 3 else "10"),
                     at_us=now - day * DAY_US - HOUR_US) for day in range(14)]
    record_usage(services.database, rows)
    promo = ledger.grant(org.id, C("30"), kind="promotional", priority=10, expires_at_us=now + 2 * DAY_US)
    ledger.grant(org.id, C("100"), cost_basis=C("10"))
    from creditgate.api import catalog
    from creditgate.pricing.bundles import Bundle

    catalog.create_bundle(services, Bundle(name="small", price=C("4"), currency="USD", credits=C("50"),
                                           bonus_credits=0, validity_days=None))
    catalog.create_bundle(services, Bundle(name="large", price=C("30"), currency="USD", credits=C("1000"),
                                           bonus_credits=0, validity_days=None))
    result = Tracking(services).forecast(org.id).to_dict()
    assert result["burn_rate"]["per_day"] == "10"
    assert result["burn_rate"]["days_observed"] == 14
    waste = {grant["id"]: grant["projected_waste"] for grant in result["grants"]}
    assert waste[promo["grant_id"]] == "10"
    assert result["depletion"]["expected"] == iso(now + 12 * DAY_US)
    assert result["depletion"]["days_left"] == "12.0"
    through = result["recommendation"]["through"]
    assert through is not None
    bundle = result["recommendation"]["bundle"]
    # Funded until day 12; the next period ends 39 days from now: 27 days × 10 = 270 short.
    assert through == "2026-03-01T00:00:00Z"
    assert bundle is not None and (bundle["name"], bundle["quantity"], bundle["price"]) == ("small", 6, "24")
