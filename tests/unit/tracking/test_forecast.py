"""The pure forecast against synthetic usage whose answers are known by hand."""

from __future__ import annotations

from creditgate.ledger.credits import parse_amount
from creditgate.tracking.forecast import (
    DAY_US,
    HOUR_US,
    BurnRate,
    GrantState,
    Offer,
    burn_rate,
    daily_series,
    percentile,
    recommend,
    simulate,
)

NOW = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, an hour boundary
C = parse_amount


def grant(grant_id: str, free: str, *, expires_days: int | None = None, priority: int = 100,
          cost: str = "0", created: int = 0) -> GrantState:
    return GrantState(id=grant_id, free=C(free), amount=C(free), priority=priority,
                      created_at_us=NOW - DAY_US + created, effective_at_us=NOW - DAY_US,
                      expires_at_us=None if expires_days is None else NOW + expires_days * DAY_US,
                      cost_basis=C(cost))


def test_percentiles_interpolate_and_round_half_up() -> None:
    assert percentile([], 50) == 0
    assert percentile([5], 50) == 5
    assert percentile([1, 2], 50) == 2  # 1.5 rounds half up
    assert percentile([10, 20, 30, 40], 25) == 18  # 17.5 -> 18
    assert percentile([40, 10, 30, 20], 75) == 33  # 32.5 -> 33


def test_burn_rate_ignores_a_spike_day() -> None:
    daily = [C("10")] * 13 + [C("1000")]
    burn = burn_rate(daily)
    assert burn.per_day == C("10")
    assert burn.low_per_day == C("10") and burn.high_per_day == C("10")
    assert burn.days_observed == 14


def test_daily_series_sums_hours_into_days_ending_now() -> None:
    now = NOW + 30 * 60 * 1_000_000  # half past midnight
    # The current hour (00:00) belongs to day 0; 23:00 yesterday too; 00:00 yesterday is day 1.
    hourly = [(NOW, C("1")), (NOW - HOUR_US, C("2")), (NOW - 24 * HOUR_US, C("4")),
              (NOW - 3 * DAY_US, C("8"))]
    days = daily_series(hourly, now_us=now, window_days=5, since_us=NOW - 10 * DAY_US)
    assert days == [C("3"), C("4"), 0, C("8"), 0]
    # An organization two days old counts only the days since it existed.
    young = daily_series(hourly, now_us=now, window_days=5, since_us=NOW - 2 * DAY_US + HOUR_US)
    assert young == [C("3"), C("4")]


def test_depletion_of_one_grant_at_a_constant_rate() -> None:
    run = simulate([grant("g1", "100")], C("10"), now_us=NOW, horizon_us=NOW + 365 * DAY_US)
    assert run.depleted_at_us == NOW + 10 * DAY_US
    assert run.waste == {}


def test_expiring_grant_burns_first_and_wastes_what_is_left() -> None:
    # 50 promotional credits expiring in 3 days burn first (priority 10): 30 are used, 20 wasted;
    # then 100 purchased credits last 10 more days.
    promo = grant("promo", "50", expires_days=3, priority=10)
    paid = grant("paid", "100", cost="1")
    run = simulate([paid, promo], C("10"), now_us=NOW, horizon_us=NOW + 365 * DAY_US)
    assert run.waste == {"promo": C("20")}
    assert run.depleted_at_us == NOW + 13 * DAY_US


def test_no_burn_means_no_depletion_but_full_waste_at_expiry() -> None:
    run = simulate([grant("g", "5", expires_days=2)], 0, now_us=NOW, horizon_us=NOW + 30 * DAY_US)
    assert run.waste == {"g": C("5")}
    assert run.depleted_at_us == NOW + 2 * DAY_US  # nothing live is left after the expiry


def test_money_of_waste_is_pro_rata_of_the_cost_basis() -> None:
    paid = GrantState(id="g", free=C("40"), amount=C("100"), priority=1, created_at_us=NOW,
                      effective_at_us=NOW, expires_at_us=None, cost_basis=C("9"))
    assert paid.money_of(C("20")) == C("1.8")


def test_recommends_the_cheapest_covering_bundle_with_least_waste() -> None:
    burn = BurnRate(per_day=C("10"), low_per_day=C("8"), high_per_day=C("12"), days_observed=14)
    grants = [grant("g", "50")]  # lasts 5 days; the next period ends in 30 days: 250 short
    offers = [
        Offer("b-small", "small", price=C("20"), currency="USD", credits=C("100")),  # 3 needed: 60
        Offer("b-big", "big", price=C("50"), currency="USD", credits=C("1000")),
        Offer("b-mid", "mid", price=C("40"), currency="USD", credits=C("300"), validity_days=60),
        Offer("b-mid-short", "mid short", price=C("40"), currency="USD", credits=C("300"),
              validity_days=31),  # as cheap as mid, but expires with 40 unused
    ]
    choice = recommend(grants, burn, offers, now_us=NOW, through_us=NOW + 30 * DAY_US)
    assert choice.offer is not None and choice.offer.name == "mid"
    assert choice.quantity == 1 and choice.price == C("40") and choice.projected_waste == 0
    enough = recommend([grant("g", "500")], burn, offers, now_us=NOW, through_us=NOW + 30 * DAY_US)
    assert enough.offer is None and "last" in enough.reason


def test_recommends_several_of_a_small_bundle_when_that_is_cheapest() -> None:
    burn = BurnRate(per_day=C("10"), low_per_day=C("10"), high_per_day=C("10"), days_observed=14)
    offers = [Offer("s", "small", price=C("10"), currency="USD", credits=C("100")),
              Offer("b", "big", price=C("50"), currency="USD", credits=C("1000"))]
    choice = recommend([], burn, offers, now_us=NOW, through_us=NOW + 30 * DAY_US)
    assert choice.offer is not None and choice.offer.name == "small" and choice.quantity == 3
    assert choice.price == C("30")
