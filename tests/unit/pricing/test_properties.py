"""Property tests: the compiled hot path agrees with the Fraction reference, rating is exact,
additive within the documented bound, and estimates bound quotes.

The documented bound: every charge rounds once, half up, by at most half a micro-credit, so
splitting one usage record into ``n`` charges changes the total by at most ``n // 2``
micro-credits (at most 1 for a split in two), as long as the parts are priced by the same prices
and multipliers (no long-context threshold or volume tier crossed by the split).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditgate.ledger.credits import MICROS_PER_UNIT, divide_round_half_up
from creditgate.pricing import (
    LoadSnapshot,
    LongContextTier,
    ModelRate,
    OrgOverride,
    PricingContext,
    PricingEngine,
    RateCard,
    RateCardVersion,
    Step,
    SurgeRule,
    TimeWindowRule,
    UnitPrice,
    VolumeTier,
    VolumeTierRule,
)

METERS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "requests",
          "images")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Pacific/Chatham")
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
YEAR_US = 366 * 86_400 * 1_000_000
SETTINGS = settings(max_examples=75, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

decimals = st.builds(lambda digits, places: Decimal(digits).scaleb(-places),
                     st.integers(0, 10**9), st.integers(0, 9))
multipliers = st.builds(lambda digits, places: Decimal(digits).scaleb(-places),
                        st.integers(1, 400), st.integers(0, 2))
prices = st.builds(UnitPrice, decimals, st.sampled_from((1, 3, 7, 1_000, 1_000_000)))
quantities = st.integers(0, 10**9)


@st.composite
def model_rates(draw: st.DrawFn, name: str) -> ModelRate:
    priced = draw(st.lists(st.sampled_from(METERS), min_size=1, max_size=len(METERS), unique=True))
    base = {meter: draw(prices) for meter in priced}
    tiers = []
    for threshold in draw(st.lists(st.sampled_from((1_000, 128_000, 200_000)), unique=True,
                                   max_size=2)):
        subset = draw(st.lists(st.sampled_from(priced), unique=True, max_size=len(priced)))
        tiers.append(LongContextTier(threshold, {meter: draw(prices) for meter in subset}))
    return ModelRate(name, base, tuple(tiers))


@st.composite
def rules(draw: st.DrawFn, models: list[str]) -> tuple:  # type: ignore[type-arg]
    chosen: list = []  # type: ignore[type-arg]
    scope = frozenset(draw(st.lists(st.sampled_from(models), unique=True, max_size=1)))
    if draw(st.booleans()):
        start, end = draw(st.integers(0, 23)), draw(st.integers(1, 24))
        if start != end:
            chosen.append(TimeWindowRule(
                "window", draw(st.sampled_from(ZONES)),
                frozenset(draw(st.lists(st.integers(0, 6), min_size=1, unique=True))),
                start, end, draw(multipliers), scope))
    if draw(st.booleans()):
        utilisation = tuple(Step(at_least, draw(multipliers)) for at_least in
                            sorted(draw(st.lists(st.integers(0, 100), unique=True, max_size=3))))
        queue = tuple(Step(at_least, draw(multipliers)) for at_least in
                      sorted(draw(st.lists(st.integers(0, 500), unique=True, max_size=2))))
        if utilisation or queue:
            chosen.append(SurgeRule("surge", utilisation, queue, draw(multipliers), scope))
    if draw(st.booleans()):
        boundaries = sorted(draw(st.lists(st.integers(1, 10**9), unique=True, max_size=3)))
        tiers = tuple(VolumeTier(above, draw(multipliers)) for above in [0, *boundaries])
        meters = tuple(draw(st.lists(st.sampled_from(METERS), min_size=1, unique=True)))
        chosen.append(VolumeTierRule("volume", draw(st.sampled_from(("graduated", "volume"))),
                                     meters, tiers, scope))
    return tuple(chosen)


@st.composite
def engines(draw: st.DrawFn, *, dynamic: bool = True) -> PricingEngine:
    names = ["a", "b"]
    versions = []
    start = START_US
    for number in (1, 2):
        models = {name: draw(model_rates(name)) for name in names}
        version_rules = draw(rules(names)) if dynamic else ()
        versions.append(RateCardVersion(number, start, models, version_rules))
        start += draw(st.integers(1, YEAR_US // 2))
    overrides = []
    if draw(st.booleans()):
        percent = Decimal(draw(st.integers(0, 10_000))).scaleb(-2)
        overrides.append(OrgOverride("org", "discount", None, {}, None, percent))
    if draw(st.booleans()):
        meter = draw(st.sampled_from(METERS))
        overrides.append(OrgOverride("org", "contract", "a", {meter: draw(prices)}))
    return PricingEngine(RateCard.create("card", versions), overrides=overrides)


def usages(meters: tuple[str, ...] = METERS) -> st.SearchStrategy[dict[str, int]]:
    return st.dictionaries(st.sampled_from(meters), quantities, min_size=1, max_size=len(meters))


contexts = st.one_of(st.none(), st.builds(
    PricingContext,
    st.one_of(st.none(), st.builds(LoadSnapshot, st.integers(0, 120), st.integers(0, 600))),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(METERS), st.integers(0, 2 * 10**9)))))
instants = st.integers(START_US, START_US + YEAR_US)


def priced_usage(engine: PricingEngine, model: str, at: int, usage: dict[str, int]) -> dict:  # type: ignore[type-arg]
    """Keep only meters the model prices at ``at``, so the quote does not refuse the usage."""
    rate = engine.card.version_at(at).models[model]
    return {meter: quantity for meter, quantity in usage.items() if meter in rate.prices}


@SETTINGS
@given(engines(), st.sampled_from(("a", "b")), usages(), instants, contexts,
       st.sampled_from((None, "org", "other")))
def test_compiled_quote_equals_the_fraction_reference(
        engine: PricingEngine, model: str, usage: dict[str, int], at: int,
        context: PricingContext | None, org: str | None) -> None:
    usage = priced_usage(engine, model, at, usage)
    charge = engine.quote(model, usage, at, org=org, context=context)
    explanation = engine.explain(model, usage, at, org=org, context=context)
    assert charge.credits == explanation.credits
    assert charge.rules == explanation.rules
    assert charge.version == explanation.version
    # And the reference itself is the exact value rounded once, half up.
    exact_micros = explanation.exact * MICROS_PER_UNIT
    assert charge.credits == divide_round_half_up(exact_micros.numerator,
                                                  exact_micros.denominator)
    assert abs(Fraction(charge.credits, MICROS_PER_UNIT) - explanation.exact) <= \
        Fraction(1, 2 * MICROS_PER_UNIT)


@SETTINGS
@given(engines(dynamic=False), usages(), instants)
def test_without_rules_a_charge_is_the_sum_of_meter_prices_rounded_once(
        engine: PricingEngine, usage: dict[str, int], at: int) -> None:
    usage = priced_usage(engine, "b", at, usage)
    rate = engine.card.version_at(at).models["b"]
    prompt = usage.get("input_tokens", 0) + usage.get("cached_input_tokens", 0)
    prices_used = dict(rate.prices)
    for tier in rate.long_context:  # ascending: the highest threshold passed wins
        if prompt > tier.above_input_tokens:
            prices_used = {**rate.prices, **tier.prices}
    exact = sum((quantity * Fraction(prices_used[meter].amount) * MICROS_PER_UNIT
                 / prices_used[meter].per for meter, quantity in usage.items()), Fraction(0))
    expected = (2 * exact.numerator + exact.denominator) // (2 * exact.denominator)
    assert engine.quote("b", usage, at).credits == expected


@SETTINGS
@given(engines(), st.sampled_from(("a", "b")), usages(), usages(), instants, contexts,
       st.sampled_from((None, "org")))
def test_rating_is_additive_within_one_micro_credit(
        engine: PricingEngine, model: str, first: dict[str, int], second: dict[str, int],
        at: int, context: PricingContext | None, org: str | None) -> None:
    first = priced_usage(engine, model, at, first)
    second = priced_usage(engine, model, at, second)
    both = {m: first.get(m, 0) + second.get(m, 0) for m in {*first, *second}}
    version = engine.card.version_at(at)
    # The bound is for parts priced alike: same long-context tier, no volume tier to cross.
    if version.models[model].long_context or any(isinstance(r, VolumeTierRule)
                                                 for r in version.rules):
        return
    whole = engine.quote(model, both, at, org=org, context=context).credits
    parts = (engine.quote(model, first, at, org=org, context=context).credits
             + engine.quote(model, second, at, org=org, context=context).credits)
    assert abs(whole - parts) <= 1


@SETTINGS
@given(engines(dynamic=False), st.lists(usages(("output_tokens", "requests", "images")),
                                        min_size=1, max_size=8), instants)
def test_splitting_into_n_charges_moves_the_total_by_at_most_n_halves(
        engine: PricingEngine, parts: list[dict[str, int]], at: int) -> None:
    parts = [priced_usage(engine, "a", at, part) for part in parts]
    whole = {m: sum(part.get(m, 0) for part in parts) for part in parts for m in part}
    total = engine.quote("a", whole, at).credits
    split = sum(engine.quote("a", part, at).credits for part in parts)
    assert abs(total - split) <= len(parts) // 2


@SETTINGS
@given(engines(), st.sampled_from(("a", "b")), instants, contexts,
       st.sampled_from((None, "org")), st.integers(0, 400_000), st.integers(0, 100_000),
       st.data())
def test_estimate_max_bounds_every_quote_within_its_limits(
        engine: PricingEngine, model: str, at: int, context: PricingContext | None,
        org: str | None, prompt_tokens: int, max_output_tokens: int, data: st.DataObject) -> None:
    rate = engine.card.version_at(at).models[model]
    cached = data.draw(st.integers(0, prompt_tokens))
    reasoning = data.draw(st.integers(0, max_output_tokens))
    usage = {"input_tokens": prompt_tokens - cached, "cached_input_tokens": cached,
             "output_tokens": max_output_tokens - reasoning, "reasoning_tokens": reasoning,
             "requests": data.draw(st.integers(0, 1))}
    usage = {meter: quantity for meter, quantity in usage.items() if meter in rate.prices}
    bound = engine.estimate_max(model, prompt_tokens, max_output_tokens, at, org=org,
                                context=context)
    assert engine.quote(model, usage, at, org=org, context=context).credits <= bound
