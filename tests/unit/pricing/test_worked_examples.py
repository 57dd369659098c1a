"""Worked pricing examples with real published prices, as readable cases.

Amounts are micro-credits (1 credit = 1_000_000). At 1 USD = 100 credits a list price of
$2.50 per 1M tokens is 250 credits per 1M tokens.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.unit.pricing.conftest import at

from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.credits import parse_amount
from creditgate.pricing import (
    ConversionRate,
    LoadSnapshot,
    ModelRate,
    OrgOverride,
    PricingContext,
    PricingEngine,
    RateCard,
    RateCardVersion,
    Step,
    SurgeRule,
    UnitPrice,
    VolumeTier,
    VolumeTierRule,
)
from creditgate.pricing.samples import sample_engine


def credits(text: str) -> int:
    return parse_amount(text)


@pytest.fixture(scope="module")
def sample() -> PricingEngine:
    return sample_engine()


# ----------------------------------------------------------------------- published list prices
def test_gpt_4o_at_2_50_and_10_dollars_per_million(sample: PricingEngine) -> None:
    # 1,000 prompt tokens at $2.50/1M plus 200 completion tokens at $10/1M is $0.0045.
    charge = sample.quote("gpt-4o", {"input_tokens": 1_000, "output_tokens": 200},
                          at("2025-08-04T16:00:00Z"))
    assert charge.credits == credits("0.45")
    assert (charge.card, charge.version, charge.rules) == ("public", 2, ())


def test_claude_sonnet_at_3_and_15_dollars_with_cache_reads(sample: PricingEngine) -> None:
    # 10,000 fresh input ($3/1M), 8,000 cached ($0.30/1M), 1,000 output ($15/1M):
    # $0.03 + $0.0024 + $0.015 = $0.0474.
    usage = {"input_tokens": 10_000, "cached_input_tokens": 8_000, "output_tokens": 1_000}
    assert sample.quote("claude-sonnet-4", usage, at("2025-08-04T16:00:00Z")).credits == \
        credits("4.74")


def test_gemini_long_context_tier_prices_the_whole_request_above_128k(
        test_engine: PricingEngine) -> None:
    when = at("2025-07-01T12:00:00Z")
    short = test_engine.quote("gemini-1.5-pro", {"input_tokens": 100_000, "output_tokens": 1_000},
                              when)
    long = test_engine.quote("gemini-1.5-pro", {"input_tokens": 200_000, "output_tokens": 1_000},
                             when)
    # $1.25/$5 per 1M up to 128k prompt tokens; $2.50/$10 per 1M for the whole request above.
    assert short.credits == credits("13")  # 12.5 + 0.5
    assert long.credits == credits("51")  # 50 + 1
    assert [rule.kind for rule in long.rules] == ["long_context"]
    # "Above 128k" is strict: exactly 128,000 prompt tokens is still the base price.
    boundary = test_engine.quote("gemini-1.5-pro", {"input_tokens": 128_000}, when)
    assert boundary.credits == credits("16")


def test_cached_tokens_count_toward_the_long_context_threshold(test_engine: PricingEngine) -> None:
    usage = {"input_tokens": 150_000, "cached_input_tokens": 60_000, "output_tokens": 1_000}
    charge = test_engine.quote("claude-sonnet-4", usage, at("2025-07-01T12:00:00Z"))
    # 210,000 prompt tokens > 200,000: $6 + $0.60 + $22.50 per 1M.
    assert charge.credits == credits("90") + credits("3.6") + credits("2.25")


# ----------------------------------------------------------------------- versions and rounding
def test_usage_is_priced_by_the_version_in_force_at_its_timestamp(
        test_engine: PricingEngine) -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 100_000}
    assert test_engine.quote("gpt-4o", usage, at("2025-03-01T00:00:00Z")).credits == credits("350")
    assert test_engine.quote("gpt-4o", usage, at("2025-07-01T00:00:00Z")).credits == credits("280")
    # The boundary instant belongs to the new version, the microsecond before to the old one.
    boundary = at("2025-06-01T00:00:00Z")
    assert test_engine.quote("gpt-4o", usage, boundary).version == 2
    assert test_engine.quote("gpt-4o", usage, boundary - 1).version == 1
    with pytest.raises(NotFound, match="no version in force"):
        test_engine.quote("gpt-4o", usage, at("2024-12-31T23:59:59Z"))


def test_rounding_is_half_up_once_per_charge(sample: PricingEngine) -> None:
    noon_new_york = at("2025-08-04T16:00:00Z")
    # gpt-4o-mini cached input is $0.075/1M: one token costs 7.5 micro-credits.
    one = sample.quote("gpt-4o-mini", {"cached_input_tokens": 1}, noon_new_york)
    two = sample.quote("gpt-4o-mini", {"cached_input_tokens": 2}, noon_new_york)
    assert one.credits == 8  # 7.5 rounds half up
    assert two.credits == 15  # exact: one rounding for the whole charge, not per token
    # Splitting a charge can move the total by at most one micro-credit.
    assert one.credits * 2 - two.credits == 1
    explanation = sample.explain("gpt-4o-mini", {"cached_input_tokens": 1}, noon_new_york)
    assert str(explanation.exact) == "3/400000"  # 0.0000075 credits
    assert explanation.credits == 8
    assert explanation.to_dict()["rounding"]["delta_credits"] == "0.0000005"


def test_prices_with_non_terminating_per_unit_value_are_exact() -> None:
    # One credit per 3 units: 10 units cost 3.333333... credits, rounded once to 3.333333.
    card = RateCard.create("thirds", [RateCardVersion(1, 0, {
        "m": ModelRate("m", {"requests": UnitPrice(Decimal(1), 3)})})])
    engine = PricingEngine(card)
    assert engine.quote("m", {"requests": 10}, 0).credits == 3_333_333
    assert engine.quote("m", {"requests": 5}, 0).credits == 1_666_667
    assert engine.quote("m", {"requests": 3_000_000}, 0).credits == credits("1000000")


# ----------------------------------------------------------------------- org overrides
def test_org_percentage_discount_and_contract_price(test_engine: PricingEngine) -> None:
    when = at("2025-07-01T12:00:00Z")
    usage = {"input_tokens": 1_000_000, "output_tokens": 100_000}
    assert test_engine.quote("gpt-4o", usage, when).credits == credits("280")
    discounted = test_engine.quote("gpt-4o", usage, when, org="acme")
    assert discounted.credits == credits("238")  # 280 x 0.85
    assert [(r.kind, r.name) for r in discounted.rules] == [("discount", "acme-discount")]
    contract = test_engine.quote("gpt-4o", usage, when, org="globex")
    assert contract.credits == credits("230")  # 150 (contract input) + 80 (list output)
    assert contract.rules[0].kind == "contract_price"
    # The contract names gpt-4o only; other models keep the list price.
    assert test_engine.quote("claude-sonnet-4", usage, when, org="globex").credits == \
        test_engine.quote("claude-sonnet-4", usage, when).credits


def test_contract_prices_are_flat_across_long_context_tiers(test_engine: PricingEngine) -> None:
    contract = OrgOverride("initech", "initech-gemini", "gemini-1.5-pro",
                           {"input_tokens": UnitPrice(Decimal(100), 1_000_000)})
    engine = PricingEngine(test_engine.card, overrides=[contract])
    usage = {"input_tokens": 200_000, "output_tokens": 1_000}
    charge = engine.quote("gemini-1.5-pro", usage, at("2025-07-01T12:00:00Z"), org="initech")
    # The contract's 100/1M input price holds above 128k; output takes the tier's 1000/1M.
    assert charge.credits == credits("20") + credits("1")
    assert [rule.kind for rule in charge.rules] == ["contract_price", "long_context"]


# ----------------------------------------------------------------------- dynamic rules
LOCAL = {"compute_ms": 10_000, "requests": 1}  # 5 + 0.01 credits at list price


@pytest.mark.parametrize(("when", "expected", "why"), [
    ("2025-07-07T21:30:00Z", "2.505", "Monday 23:30 in Berlin (CEST): off-peak"),
    ("2025-07-07T19:30:00Z", "5.01", "Monday 21:30 in Berlin: peak"),
    ("2025-07-07T20:30:00Z", "2.505", "Monday 22:30 CEST: off-peak in summer"),
    ("2025-12-01T20:30:00Z", "5.01", "the same UTC time is 21:30 CET in winter: peak"),
    ("2025-12-01T21:30:00Z", "2.505", "Monday 22:30 CET: off-peak"),
    ("2025-07-12T21:30:00Z", "5.01", "Saturday: the window is Monday to Friday"),
    ("2025-07-08T03:59:59Z", "2.505", "Tuesday 05:59 in Berlin: still off-peak"),
    ("2025-07-08T04:00:00Z", "5.01", "Tuesday 06:00 in Berlin: the window has ended"),
])
def test_time_window_in_a_named_timezone(test_engine: PricingEngine, when: str, expected: str,
                                         why: str) -> None:
    assert test_engine.quote("local-gpu", LOCAL, at(when)).credits == credits(expected), why


@pytest.mark.parametrize(("utilisation", "queue", "expected", "multiplier"), [
    (50, 0, "5.01", None),
    (85, 0, "6.2625", "5/4"),
    (97, 0, "7.515", "3/2"),  # the 95% step says x2, the cap holds it at x1.5
    (50, 150, "7.515", "3/2"),
    (85, 150, "7.515", "3/2"),  # the larger of the two steps
])
def test_load_based_surge_with_cap(test_engine: PricingEngine, utilisation: int, queue: int,
                                   expected: str, multiplier: str | None) -> None:
    context = PricingContext(load=LoadSnapshot(utilisation, queue))
    charge = test_engine.quote("local-gpu", LOCAL, at("2025-07-07T12:00:00Z"), context=context)
    assert charge.credits == credits(expected)
    surges = [rule for rule in charge.rules if rule.kind == "surge"]
    if multiplier is None:
        assert not surges
    else:
        assert "/".join(map(str, surges[0].multiplier)) == multiplier


def test_a_load_step_below_one_is_a_quiet_hours_discount() -> None:
    rule = SurgeRule("load", (Step(0, Decimal("0.8")), Step(50, Decimal(1)),
                              Step(90, Decimal("1.5"))), (), Decimal(2))
    assert rule.evaluate(LoadSnapshot(10, 0)).multiplier == (4, 5)  # type: ignore[union-attr]
    assert rule.evaluate(LoadSnapshot(60, 0)) is None  # x1 is not recorded
    assert rule.evaluate(LoadSnapshot(95, 0)).multiplier == (3, 2)  # type: ignore[union-attr]


def test_graduated_volume_tier_splits_a_charge_across_the_boundary(
        test_engine: PricingEngine) -> None:
    # 9,900,000 tokens used this period; 200,000 more: 100,000 at x1 and 100,000 at x0.9.
    context = PricingContext(period_usage={"input_tokens": 9_600_000, "output_tokens": 300_000})
    charge = test_engine.quote("gpt-4o", {"input_tokens": 200_000}, at("2025-07-01T12:00:00Z"),
                               context=context)
    assert charge.credits == credits("38")  # 40 credits x 0.95
    assert charge.rules[0].kind == "volume_tier"
    assert charge.rules[0].multiplier == (19, 20)
    beyond = PricingContext(period_usage={"input_tokens": 50_000_000})
    assert test_engine.quote("gpt-4o", {"input_tokens": 200_000}, at("2025-07-01T12:00:00Z"),
                             context=beyond).credits == credits("36")


def test_volume_based_tier_prices_the_whole_charge_by_the_period_total() -> None:
    rule = VolumeTierRule("volume", "volume", ("requests",), (
        VolumeTier(0, Decimal(1)), VolumeTier(100, Decimal("0.8")), VolumeTier(1000, Decimal("0.5"))))
    card = RateCard.create("v", [RateCardVersion(1, 0, {
        "api": ModelRate("api", {"requests": UnitPrice(Decimal(1), 1)})}, rules=(rule,))])
    engine = PricingEngine(card)

    def price(prior: int, requests: int) -> int:
        context = PricingContext(period_usage={"requests": prior})
        return engine.quote("api", {"requests": requests}, 0, context=context).credits

    assert price(0, 100) == credits("100")  # 100 requests: still the first tier
    assert price(0, 101) == credits("80.8")  # the 101st request moves the whole charge to x0.8
    assert price(950, 100) == credits("50")  # the period total 1,050 is in the x0.5 tier


# ----------------------------------------------------------------------- estimates and money
def test_estimate_max_bounds_the_request_before_it_runs(test_engine: PricingEngine) -> None:
    when = at("2025-07-01T12:00:00Z")
    # Every prompt token at the dearer of fresh and cached input, every output token at output.
    assert test_engine.estimate_max("gpt-4o", 1_000, 200, when) == credits("0.36")
    # A 250k prompt may land in the long-context tier, so the bound uses the tier's prices.
    assert test_engine.estimate_max("claude-sonnet-4", 250_000, 1_000, when) == \
        credits("150") + credits("2.25")
    actual = test_engine.quote("claude-sonnet-4", {"input_tokens": 240_000,
                                                   "cached_input_tokens": 10_000,
                                                   "output_tokens": 1_000}, when)
    assert actual.credits <= test_engine.estimate_max("claude-sonnet-4", 250_000, 1_000, when)


def test_money_converts_to_credits_at_a_configured_rate() -> None:
    rate = ConversionRate("USD", Decimal(100))
    assert rate.money_to_credits(parse_amount("12.345678")) == credits("1234.5678")
    assert rate.credits_to_money(credits("1234.5678")) == parse_amount("12.345678")
    euro = ConversionRate("EUR", Decimal("108.5"))
    assert euro.money_to_credits(parse_amount("0.000001")) == 109  # 108.5 micro, half up


def test_unpriced_and_unknown_meters_and_bad_quantities_are_rejected(
        test_engine: PricingEngine) -> None:
    when = at("2025-07-01T12:00:00Z")
    with pytest.raises(NotFound, match="no price for meter 'images'"):
        test_engine.quote("gpt-4o", {"images": 1}, when)
    with pytest.raises(InvalidInput, match="unknown meter 'furlongs'"):
        test_engine.quote("gpt-4o", {"furlongs": 1}, when)
    with pytest.raises(InvalidInput, match="whole number"):
        test_engine.quote("gpt-4o", {"input_tokens": -1}, when)
    with pytest.raises(InvalidInput, match="whole number"):
        test_engine.quote("gpt-4o", {"input_tokens": 1.5}, when)  # type: ignore[dict-item]
    with pytest.raises(NotFound, match="no price on card"):
        test_engine.quote("gpt-5-imaginary", {"input_tokens": 1}, when)
    # A zero quantity on a meter the model does not price is harmless.
    assert test_engine.quote("gpt-4o", {"input_tokens": 1_000, "images": 0}, when).credits == \
        credits("0.2")
