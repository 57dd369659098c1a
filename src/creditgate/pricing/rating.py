"""The hot path: rating usage records into charges, and bounding a request before it runs.

Rate cards are compiled once per (card version, model, override) into integers: every meter's
price becomes a numerator over one common denominator, so that a charge is a few integer
multiply-adds, one multiplication by the rules' combined ratio and one division that rounds.
No Decimal and no Fraction on this path; :mod:`creditgate.pricing.explain` recomputes the same
charge with Fractions from the card itself, and the tests hold the two to the same answer.

Rounding happens once per charge, by :func:`~creditgate.ledger.credits.divide_round_half_up`,
after all meters and multipliers have been summed exactly.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from math import gcd
from typing import Any, Final, NamedTuple

from creditgate.clock import Clock, SystemClock, iso
from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.credits import divide_round_half_up, format_amount
from creditgate.pricing._exact import Ratio
from creditgate.pricing.explain import Explanation, explain_charge
from creditgate.pricing.meters import DEFAULT_METERS, USAGE_QUANTITY_MAX, MeterRegistry, Usage
from creditgate.pricing.rate_cards import (
    EffectiveRate,
    OrgOverride,
    Overrides,
    RateCard,
    effective_rate,
    long_context_record,
)
from creditgate.pricing.rules import (
    AppliedRule,
    PricingContext,
    SurgeRule,
    TimeWindowRule,
    VolumeTierRule,
)

# Compiled (version, model, override) entries kept; beyond this the cache starts over. Real
# catalogs have a few thousand models; the bound only matters against unbounded org churn.
COMPILED_ENTRIES_MAX: Final = 200_000
# Time-window results are cached per 15-minute bucket of UTC time. Every timezone in use today
# has an offset, and DST transitions, on 15-minute boundaries, so the local hour and weekday are
# constant within a bucket.
WINDOW_BUCKET_US: Final = 15 * 60 * 1_000_000
WINDOW_BUCKETS_MAX: Final = 20_000
NO_CONTEXT: Final = PricingContext()
_NEVER: Final = 1 << 62  # later than any instant in epoch microseconds
_EMPTY: Final[dict[str, int]] = {}


class Charge(NamedTuple):
    """The price of one usage record, with every rule that shaped it.

    A NamedTuple rather than a frozen dataclass: it is built once per rated record, and a tuple
    is several times cheaper to construct.
    """

    credits: int  # micro-credits, rounded once
    model: str
    card: str
    version: int
    at_us: int
    rules: tuple[AppliedRule, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"credits": format_amount(self.credits), "credits_micros": self.credits,
                "model": self.model, "card": self.card, "version": self.version,
                "at": iso(self.at_us), "rules": [rule.to_dict() for rule in self.rules]}


@dataclass(frozen=True, slots=True)
class UsageRecord:
    model: str
    usage: Usage
    at_us: int
    org: str | None = None
    context: PricingContext | None = None


# Builds a Charge without NamedTuple's Python-level __new__; a measurable share of a quote.
_new_charge: Final = tuple.__new__


class _Compiled:
    """One effective rate as integers. Immutable after construction except for the window cache."""

    __slots__ = (
        "card",
        "completion_max",
        "denominator",
        "numerators",
        "prompt_max",
        "records",
        "request_max",
        "static",
        "surge_rules",
        "thresholds",
        "tiers",
        "time_rules",
        "version",
        "volume_free_below",
        "volume_rules",
        "windows",
    )

    def __init__(self, rate: EffectiveRate, registry: MeterRegistry) -> None:
        price_sets = [rate.base, *(tier.prices for tier in rate.long_context)]
        micros = [{meter: price.micros_per_unit() for meter, price in prices.items()}
                  for prices in price_sets]
        denominator = 1
        for prices in micros:
            for _, price_denominator in prices.values():
                denominator = denominator * price_denominator // gcd(denominator, price_denominator)
        numerators = [{meter: numerator * (denominator // price_denominator)
                       for meter, (numerator, price_denominator) in prices.items()}
                      for prices in micros]
        self.card = rate.card
        self.version = rate.version.version
        self.denominator = denominator
        self.numerators: dict[str, int] = numerators[0]
        # Highest threshold first: the first tier the prompt exceeds is the one that applies.
        self.tiers: tuple[tuple[int, dict[str, int], AppliedRule], ...] = tuple(reversed([
            (tier.above_input_tokens, tier_numerators, long_context_record(tier))
            for tier, tier_numerators in zip(rate.long_context, numerators[1:], strict=True)]))
        self.static: Ratio = rate.discount
        self.records = rate.records
        self.time_rules = tuple(r for r in rate.rules if isinstance(r, TimeWindowRule))
        self.surge_rules = tuple(r for r in rate.rules if isinstance(r, SurgeRule))
        # Each volume rule with the meters of this model it counts: True when it counts every
        # priced meter (the record's quantity is then the sum already taken while pricing), False
        # when none, else the meters to add up.
        priced = set(numerators[0])
        self.volume_rules: tuple[tuple[VolumeTierRule, bool | tuple[str, ...]], ...] = tuple(
            (rule, True if priced <= set(rule.meters)
             else False if not priced & set(rule.meters)
             else tuple(sorted(priced & set(rule.meters))))
            for rule in rate.rules if isinstance(rule, VolumeTierRule))
        self.volume_free_below = min((r.free_below for r, _ in self.volume_rules), default=0)
        self.windows: dict[int, tuple[Ratio, tuple[AppliedRule, ...]]] = {}
        # For estimates: per price set (base, then each tier ascending), the dearest prompt meter,
        # the dearest completion meter and the request fee, as running maxima over the sets a
        # prompt of a given size might land in.
        self.thresholds = tuple(tier.above_input_tokens for tier in rate.long_context)
        prompt_meters, completion_meters = registry.prompt_meters(), registry.completion_meters()
        self.prompt_max: list[int] = []
        self.completion_max: list[int] = []
        self.request_max: list[int] = []
        for price_set in numerators:
            self.prompt_max.append(max([price_set.get(m, 0) for m in prompt_meters]
                                       + self.prompt_max[-1:]))
            self.completion_max.append(max([price_set.get(m, 0) for m in completion_meters]
                                           + self.completion_max[-1:]))
            self.request_max.append(max([price_set.get("requests", 0)] + self.request_max[-1:]))

    def window(self, at_us: int) -> tuple[Ratio, tuple[AppliedRule, ...]]:
        bucket = at_us // WINDOW_BUCKET_US
        found = self.windows.get(bucket)
        if found is None:
            start = bucket * WINDOW_BUCKET_US
            applied = tuple(rule for rule in (r.evaluate(start) for r in self.time_rules) if rule)
            numerator = denominator = 1
            for rule in applied:
                numerator *= rule.multiplier[0]
                denominator *= rule.multiplier[1]
            if len(self.windows) >= WINDOW_BUCKETS_MAX:
                self.windows.clear()
            found = self.windows[bucket] = ((numerator, denominator), applied)
        return found


class PricingEngine:
    """Quotes, estimates and explanations for one rate card and its org overrides.

    Thread safe for concurrent readers: the caches only ever gain complete entries (a race
    compiles the same entry twice, which is harmless).
    """

    def __init__(self, card: RateCard, *, overrides: Overrides | Iterable[OrgOverride] = (),
                 registry: MeterRegistry = DEFAULT_METERS, clock: Clock | None = None) -> None:
        self.card = card
        self.registry = registry
        self.overrides = (overrides if isinstance(overrides, Overrides)
                          else Overrides(overrides, registry=registry))
        self.clock = clock or SystemClock()
        self._starts = tuple(version.effective_from_us for version in card.versions)
        self._ends = tuple(_NEVER if version.effective_until_us is None
                           else version.effective_until_us for version in card.versions)
        self._compiled: dict[tuple[int, str, int], _Compiled] = {}
        self._prompt_meters = registry.prompt_meters()

    # ------------------------------------------------------------------ lookup
    def _resolve(self, model: str, at_us: int, org: str | None) -> _Compiled:
        index = bisect_right(self._starts, at_us) - 1
        if index < 0 or at_us >= self._ends[index]:
            index = self.card.version_index_at(at_us)  # raises NotFound naming the cause
        override = self.overrides.find(org, model, at_us) if org is not None else None
        key = (index, model, 0 if override is None else id(override))
        compiled = self._compiled.get(key)
        if compiled is None:
            version = self.card.versions[index]
            compiled = _Compiled(effective_rate(self.card, version, model, override), self.registry)
            if len(self._compiled) >= COMPILED_ENTRIES_MAX:
                self._compiled.clear()
            self._compiled[key] = compiled
        return compiled

    # ------------------------------------------------------------------ quote
    def quote(self, model: str, usage: Usage, at: int | None = None, *, org: str | None = None,
              context: PricingContext | None = None) -> Charge:
        """The exact credits ``usage`` of ``model`` costs at instant ``at`` (epoch µs; now if None).

        Quantities must be non-negative ints on meters the model has a price for (a zero quantity
        on an unpriced meter is fine).
        """
        at_us = self.clock.now_us() if at is None else at
        compiled = self._resolve(model, at_us, org)
        numerators = compiled.numerators
        records = compiled.records
        if compiled.tiers:
            prompt = 0
            for meter in self._prompt_meters:
                prompt += usage.get(meter, 0)
            for threshold, tier_numerators, tier_record in compiled.tiers:
                if prompt > threshold:
                    numerators = tier_numerators
                    records = (*records, tier_record)
                    break
        total = count = 0
        for meter, quantity in usage.items():
            if type(quantity) is not int or not 0 <= quantity <= USAGE_QUANTITY_MAX:
                raise _bad_quantity(meter, quantity)
            price = numerators.get(meter)
            if price is None:
                if quantity:
                    raise self._unpriced(model, meter, compiled)
                continue
            total += quantity * price
            count += quantity
        numerator, denominator = compiled.static
        if compiled.time_rules:
            window = compiled.windows.get(at_us // WINDOW_BUCKET_US) or compiled.window(at_us)
            (window_numerator, window_denominator), applied = window
            if applied:
                numerator *= window_numerator
                denominator *= window_denominator
                records = (*records, *applied)
        if context is not None and context.load is not None and compiled.surge_rules:
            for surge in compiled.surge_rules:
                rule = surge.evaluate(context.load)
                if rule is not None:
                    numerator *= rule.multiplier[0]
                    denominator *= rule.multiplier[1]
                    records = (*records, rule)
        period = context.period_usage if context is not None else None
        # Without period usage, a record smaller than every rule's first ×1 tier is unaffected;
        # checking that once spares the per-rule work on the common path.
        if compiled.volume_rules and (period or count > compiled.volume_free_below):
            period = period or _EMPTY
            for volume, counted in compiled.volume_rules:
                prior = 0
                if len(period) < len(volume.meters):
                    for meter, used in period.items():
                        if meter in volume.meter_set:
                            prior += used
                else:
                    for meter in volume.meters:
                        prior += period.get(meter, 0)
                if counted is True:
                    quantity = count
                elif counted is False:
                    quantity = 0
                else:
                    quantity = 0
                    for meter in counted:
                        quantity += usage.get(meter, 0)
                if prior + quantity <= volume.free_below:
                    continue  # still inside a first tier at ×1, by far the most common case
                rule = volume.evaluate(prior, quantity)
                if rule is not None:
                    numerator *= rule.multiplier[0]
                    denominator *= rule.multiplier[1]
                    records = (*records, rule)
        credits = divide_round_half_up(total * numerator, compiled.denominator * denominator)
        return _new_charge(Charge, (credits, model, compiled.card, compiled.version, at_us, records))

    def quote_many(self, records: Iterable[UsageRecord]) -> list[Charge]:
        return [self.quote(r.model, r.usage, r.at_us, org=r.org, context=r.context) for r in records]

    # ------------------------------------------------------------------ estimate
    def estimate_max(self, model: str, prompt_tokens: int, max_output_tokens: int,
                     at: int | None = None, *, org: str | None = None,
                     context: PricingContext | None = None) -> int:
        """An upper bound, in micro-credits, of what one request can cost; the gateway reserves it.

        The bound holds for any usage with ``input_tokens + cached_input_tokens <= prompt_tokens``,
        ``output_tokens + reasoning_tokens <= max_output_tokens`` and at most one request, quoted
        with the same ``at``, ``org`` and ``context``. Other meters (images, audio, ...) are not
        covered: price those requests with :meth:`quote` on the expected usage.
        """
        for name, value in (("prompt_tokens", prompt_tokens), ("max_output_tokens", max_output_tokens)):
            if type(value) is not int or not 0 <= value <= USAGE_QUANTITY_MAX:
                raise _bad_quantity(name, value)
        at_us = self.clock.now_us() if at is None else at
        compiled = self._resolve(model, at_us, org)
        reachable = bisect_left(compiled.thresholds, prompt_tokens)
        total = (prompt_tokens * compiled.prompt_max[reachable]
                 + max_output_tokens * compiled.completion_max[reachable]
                 + compiled.request_max[reachable])
        numerator, denominator = compiled.static
        if compiled.time_rules:
            (window_numerator, window_denominator), _ = compiled.window(at_us)
            numerator *= window_numerator
            denominator *= window_denominator
        if context is not None and context.load is not None:
            for surge in compiled.surge_rules:
                rule = surge.evaluate(context.load)
                if rule is not None:
                    numerator *= rule.multiplier[0]
                    denominator *= rule.multiplier[1]
        if compiled.volume_rules:
            period = (context.period_usage if context is not None else None) or _EMPTY
            for volume, _ in compiled.volume_rules:
                factor = volume.ratio_max(volume.basis(period),
                                          prompt_tokens + max_output_tokens + 1)
                numerator *= factor[0]
                denominator *= factor[1]
        return divide_round_half_up(total * numerator, compiled.denominator * denominator)

    # ------------------------------------------------------------------ explain
    def explain(self, model: str, usage: Usage, at: int | None = None, *, org: str | None = None,
                context: PricingContext | None = None) -> Explanation:
        """The same charge as :meth:`quote`, computed step by step with exact fractions."""
        at_us = self.clock.now_us() if at is None else at
        checked = self.registry.check_usage(usage)
        version = self.card.version_at(at_us)
        rate = effective_rate(self.card, version, model, self.overrides.find(org, model, at_us))
        return explain_charge(rate, checked, at_us, context or NO_CONTEXT, self.registry)

    def models_at(self, at: int | None = None) -> tuple[str, ...]:
        at_us = self.clock.now_us() if at is None else at
        return tuple(sorted(self.card.version_at(at_us).models))

    def _unpriced(self, model: str, meter: str, compiled: _Compiled) -> Exception:
        if meter not in self.registry:
            return InvalidInput(f"usage.{meter}: unknown meter {meter!r}", param=f"usage.{meter}")
        return NotFound(f"model {model!r} has no price for meter {meter!r} on card "
                        f"{compiled.card!r} version {compiled.version}", param=f"usage.{meter}")


def _bad_quantity(meter: str, quantity: object) -> InvalidInput:
    return InvalidInput(f"usage.{meter}: expected a whole number from 0 to {USAGE_QUANTITY_MAX}, "
                        f"got {quantity!r}", param=f"usage.{meter}")
