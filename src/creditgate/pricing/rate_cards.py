"""Rate cards: credits per N units, per model (or deployment) and meter, in dated versions.

A card keeps its whole history. Each version is in force from ``effective_from`` until the next
version starts (or until its own ``effective_until``); usage is priced by the version in force at
the usage's timestamp. Versions that overlap or leave a gap are rejected, so every instant from
the first version on has exactly one price (or, after a closed last version, none).

Organizations may have overrides on top of the public card: contract prices for some meters and
a percentage discount. The most specific override wins: one naming the model, else one for all
models of the organization.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from creditgate.clock import iso
from creditgate.errors import InvalidInput, NotFound
from creditgate.pricing._exact import ONE, Ratio, format_decimal, ratio
from creditgate.pricing.meters import DEFAULT_METERS, MeterRegistry
from creditgate.pricing.rules import AppliedRule, Rule, VolumeTierRule, rule_applies_to
from creditgate.pricing.unit_price import UnitPrice

VERSIONS_PER_CARD_MAX: Final = 10_000
MODELS_PER_VERSION_MAX: Final = 50_000
LONG_CONTEXT_TIERS_MAX: Final = 8
OVERRIDES_MAX: Final = 100_000
_FOREVER: Final = 1 << 62  # beyond any instant in epoch microseconds


def _frozen(mapping: Mapping[str, UnitPrice]) -> Mapping[str, UnitPrice]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class LongContextTier:
    """Prices that replace the base prices when the prompt is longer than ``above_input_tokens``.

    As the big providers charge it, the whole request (prompt and output) is priced at the tier
    once the prompt passes the threshold. Meters the tier does not name keep their base price.
    """

    above_input_tokens: int
    prices: Mapping[str, UnitPrice]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", _frozen(self.prices))


@dataclass(frozen=True, slots=True)
class ModelRate:
    model: str
    prices: Mapping[str, UnitPrice]
    long_context: tuple[LongContextTier, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", _frozen(self.prices))
        object.__setattr__(self, "long_context",
                           tuple(sorted(self.long_context, key=lambda t: t.above_input_tokens)))

    def check(self, registry: MeterRegistry, *, field: str) -> None:
        if not self.prices:
            raise InvalidInput(f"{field}.prices: a model needs at least one priced meter",
                               param=f"{field}.prices")
        for meter in self.prices:
            registry.get(meter, field=f"{field}.prices.{meter}")
        check_long_context(self.long_context, self.prices, registry, field=field)


def check_long_context(tiers: tuple[LongContextTier, ...], base: Mapping[str, UnitPrice],
                       registry: MeterRegistry, *, field: str) -> None:
    if len(tiers) > LONG_CONTEXT_TIERS_MAX:
        raise InvalidInput(f"{field}.long_context: at most {LONG_CONTEXT_TIERS_MAX} tiers",
                           param=f"{field}.long_context")
    thresholds = [tier.above_input_tokens for tier in tiers]
    if len(set(thresholds)) != len(thresholds) or any(value <= 0 for value in thresholds):
        raise InvalidInput(f"{field}.long_context: thresholds must be positive and distinct",
                           param=f"{field}.long_context")
    for tier in tiers:
        tier_field = f"{field}.long_context.above_{tier.above_input_tokens}"
        for meter in tier.prices:
            registry.get(meter, field=f"{tier_field}.{meter}")
            if meter not in base:
                raise InvalidInput(f"{tier_field}.{meter}: the meter has no base price",
                                   param=f"{tier_field}.{meter}")


@dataclass(frozen=True, slots=True)
class RateCardVersion:
    version: int
    effective_from_us: int
    models: Mapping[str, ModelRate]
    rules: tuple[Rule, ...] = ()
    # None: in force until the next version starts (or for ever, for the last one).
    effective_until_us: int | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))

    def check(self, registry: MeterRegistry, *, field: str) -> None:
        if len(self.models) > MODELS_PER_VERSION_MAX:
            raise InvalidInput(f"{field}.models: at most {MODELS_PER_VERSION_MAX} models",
                               param=f"{field}.models")
        if self.effective_until_us is not None and self.effective_until_us <= self.effective_from_us:
            raise InvalidInput(f"{field}.effective_until: must be after effective_from",
                               param=f"{field}.effective_until")
        for name, rate in self.models.items():
            assert rate.model == name, (rate.model, name)
            rate.check(registry, field=f"{field}.models.{name}")
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise InvalidInput(f"{field}.rules: rule names must be unique", param=f"{field}.rules")
        for rule in self.rules:
            rule_field = f"{field}.rules.{rule.name}"
            for model in sorted(rule.models - set(self.models)):
                raise InvalidInput(f"{rule_field}.models: {model!r} is not on this version",
                                   param=f"{rule_field}.models")
            if isinstance(rule, VolumeTierRule):
                for meter in rule.meters:
                    registry.get(meter, field=f"{rule_field}.meters")

    def rate(self, model: str, *, card: str) -> ModelRate:
        rate = self.models.get(model)
        if rate is None:
            raise NotFound(f"model {model!r} has no price on card {card!r} version {self.version}",
                           param="model")
        return rate


def validate_versions(versions: Iterable[RateCardVersion], *, card: str = "card",
                      registry: MeterRegistry = DEFAULT_METERS) -> tuple[RateCardVersion, ...]:
    """Check a card's versions and return them in order; overlaps and gaps are rejected.

    A version without ``effective_until`` runs until the next one starts. One with it must end
    exactly where the next begins: earlier is a gap, later an overlap.
    """
    ordered = tuple(sorted(versions, key=lambda v: (v.effective_from_us, v.version)))
    if not ordered:
        raise InvalidInput(f"{card}.versions: a card needs at least one version",
                           param=f"{card}.versions")
    if len(ordered) > VERSIONS_PER_CARD_MAX:
        raise InvalidInput(f"{card}.versions: at most {VERSIONS_PER_CARD_MAX} versions",
                           param=f"{card}.versions")
    for version in ordered:
        version.check(registry, field=f"{card}.versions[{version.version}]")
    for earlier, later in itertools.pairwise(ordered):
        pair = f"{card}: versions {earlier.version} and {later.version}"
        if later.version <= earlier.version:
            raise InvalidInput(f"{pair}: version numbers must increase with effective_from",
                               param=f"{card}.versions")
        if later.effective_from_us == earlier.effective_from_us:
            raise InvalidInput(f"{pair} overlap: both start at {iso(later.effective_from_us)}",
                               param=f"{card}.versions")
        until = earlier.effective_until_us
        if until is not None and until > later.effective_from_us:
            raise InvalidInput(f"{pair} overlap: {earlier.version} runs until {iso(until)}, after "
                               f"{later.version} starts at {iso(later.effective_from_us)}",
                               param=f"{card}.versions")
        if until is not None and until < later.effective_from_us:
            raise InvalidInput(f"{pair} leave a gap from {iso(until)} to "
                               f"{iso(later.effective_from_us)}", param=f"{card}.versions")
    return ordered


@dataclass(frozen=True, slots=True)
class RateCard:
    name: str
    versions: tuple[RateCardVersion, ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(v.effective_from_us for v in self.versions))

    @classmethod
    def create(cls, name: str, versions: Iterable[RateCardVersion], *,
               registry: MeterRegistry = DEFAULT_METERS) -> RateCard:
        return cls(name, validate_versions(versions, card=name, registry=registry))

    def with_version(self, version: RateCardVersion, *,
                     registry: MeterRegistry = DEFAULT_METERS) -> RateCard:
        """A copy with ``version`` appended; history is kept, so it must start after the latest."""
        latest = self.versions[-1]
        if version.effective_from_us <= latest.effective_from_us:
            raise InvalidInput(f"{self.name}: a new version must start after version "
                               f"{latest.version} ({iso(latest.effective_from_us)})",
                               param="effective_from")
        return RateCard.create(self.name, (*self.versions, version), registry=registry)

    def version_index_at(self, at_us: int) -> int:
        index = bisect_right(self._starts, at_us) - 1
        if index < 0:
            raise NotFound(f"card {self.name!r} has no version in force at {iso(at_us)} (the first "
                           f"starts at {iso(self._starts[0])})", param="at")
        until = self.versions[index].effective_until_us
        if until is not None and at_us >= until:
            raise NotFound(f"card {self.name!r} has no version in force at {iso(at_us)} (version "
                           f"{self.versions[index].version} ended at {iso(until)})", param="at")
        return index

    def version_at(self, at_us: int) -> RateCardVersion:
        return self.versions[self.version_index_at(at_us)]


# ------------------------------------------------------------------------------- overrides
@dataclass(frozen=True, slots=True)
class OrgOverride:
    """An organization's contract prices and/or percentage discount on top of the public card.

    Contract prices replace the card's base prices of the meters they name. They are flat unless
    the override gives its own long-context tiers; the card's tiers still apply to other meters.
    """

    org: str
    name: str
    model: str | None = None
    prices: Mapping[str, UnitPrice] = field(default_factory=dict)
    long_context: tuple[LongContextTier, ...] | None = None
    discount_percent: Decimal | None = None
    effective_from_us: int | None = None
    effective_until_us: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", _frozen(self.prices))
        if self.long_context is not None:
            object.__setattr__(self, "long_context",
                               tuple(sorted(self.long_context, key=lambda t: t.above_input_tokens)))

    def active_at(self, at_us: int) -> bool:
        return ((self.effective_from_us is None or self.effective_from_us <= at_us)
                and (self.effective_until_us is None or at_us < self.effective_until_us))

    def discount(self) -> Ratio:
        if self.discount_percent is None:
            return ONE
        numerator, denominator = (self.discount_percent.as_integer_ratio())
        # (100 - d) / 100 with d = numerator / denominator, kept exact.
        return ratio(100 * denominator - numerator, 100 * denominator)

    def check(self, registry: MeterRegistry, *, field: str) -> None:
        if not self.prices and self.discount_percent is None:
            raise InvalidInput(f"{field}: give contract prices, a discount_percent, or both",
                               param=field)
        for meter in self.prices:
            registry.get(meter, field=f"{field}.prices.{meter}")
        if self.long_context is not None:
            check_long_context(self.long_context, self.prices, registry, field=field)
        if self.discount_percent is not None and not 0 <= self.discount_percent <= 100:
            raise InvalidInput(f"{field}.discount_percent: must be from 0 to 100",
                               param=f"{field}.discount_percent")
        if (self.effective_from_us is not None and self.effective_until_us is not None
                and self.effective_until_us <= self.effective_from_us):
            raise InvalidInput(f"{field}.effective_until: must be after effective_from",
                               param=f"{field}.effective_until")


class Overrides:
    """Validated overrides indexed by (org, model); model None means all models of the org."""

    __slots__ = ("_by_key", "_candidates", "items", "orgs")

    def __init__(self, overrides: Iterable[OrgOverride] = (), *,
                 registry: MeterRegistry = DEFAULT_METERS) -> None:
        self.items = tuple(overrides)
        if len(self.items) > OVERRIDES_MAX:
            raise InvalidInput(f"overrides: at most {OVERRIDES_MAX}", param="overrides")
        by_key: dict[tuple[str, str | None], list[OrgOverride]] = {}
        for index, override in enumerate(self.items):
            override.check(registry, field=f"overrides[{index}]")
            by_key.setdefault((override.org, override.model), []).append(override)
        for (org, model), group in by_key.items():
            group.sort(key=lambda o: o.effective_from_us if o.effective_from_us is not None else -1)
            for earlier, later in itertools.pairwise(group):
                end = earlier.effective_until_us
                if end is None or later.effective_from_us is None or end > later.effective_from_us:
                    raise InvalidInput(f"overrides: {earlier.name!r} and {later.name!r} for org "
                                       f"{org!r} and {model or 'all models'} overlap in time",
                                       param="overrides")
        self._by_key = {key: tuple(group) for key, group in by_key.items()}
        self.orgs = frozenset(org for org, _ in self._by_key)
        # (org, model) -> the overrides that may apply with their windows, most specific first.
        # Filled lazily: lookups happen once per rated record.
        self._candidates: dict[tuple[str, str], tuple[tuple[int, int, OrgOverride], ...]] = {}

    def find(self, org: str | None, model: str, at_us: int) -> OrgOverride | None:
        if org is None or org not in self.orgs:
            return None
        key = (org, model)
        candidates = self._candidates.get(key)
        if candidates is None:
            if len(self._candidates) >= OVERRIDES_MAX:
                self._candidates.clear()
            candidates = self._candidates[key] = tuple(
                (-_FOREVER if o.effective_from_us is None else o.effective_from_us,
                 _FOREVER if o.effective_until_us is None else o.effective_until_us, o)
                for o in (*self._by_key.get((org, model), ()), *self._by_key.get((org, None), ())))
        for start, end, override in candidates:
            if start <= at_us < end:
                return override
        return None


# ------------------------------------------------------------------------- effective prices
@dataclass(frozen=True, slots=True)
class EffectiveRate:
    """The prices and rules that apply to one model for one org under one card version."""

    card: str
    version: RateCardVersion
    model: str
    base: Mapping[str, UnitPrice]
    # Each tier's prices are complete (base prices overlaid with the tier's), thresholds ascending.
    long_context: tuple[LongContextTier, ...]
    discount: Ratio
    records: tuple[AppliedRule, ...]
    rules: tuple[Rule, ...]

    def prices_for_prompt(self, prompt_tokens: int) -> tuple[Mapping[str, UnitPrice],
                                                             LongContextTier | None]:
        """The highest tier whose threshold the prompt exceeds, or the base prices."""
        for tier in reversed(self.long_context):
            if prompt_tokens > tier.above_input_tokens:
                return tier.prices, tier
        return self.base, None


def long_context_record(tier: LongContextTier) -> AppliedRule:
    """What a charge records when its prompt passed a long-context threshold."""
    threshold = tier.above_input_tokens
    return AppliedRule("long_context", f"above_{threshold}", ONE,
                       f"prompt over {threshold} input tokens: long-context prices")


def effective_rate(card: RateCard, version: RateCardVersion, model: str,
                   override: OrgOverride | None) -> EffectiveRate:
    rate = version.rate(model, card=card.name)
    base = dict(rate.prices)
    tiers = rate.long_context
    records: list[AppliedRule] = []
    discount = ONE
    if override is not None:
        if override.prices:
            contract = set(override.prices)
            base.update(override.prices)
            if override.long_context is not None:
                tiers = override.long_context
            else:
                # Contract prices are flat: the card's tiers no longer touch those meters.
                tiers = tuple(replace(tier, prices={meter: price for meter, price
                                                    in tier.prices.items() if meter not in contract})
                              for tier in tiers)
            meters = ", ".join(sorted(contract))
            records.append(AppliedRule("contract_price", override.name, ONE,
                                       f"org {override.org} contract prices for {meters}"))
        if override.discount_percent is not None:
            discount = override.discount()
            records.append(AppliedRule("discount", override.name, discount,
                                       f"org {override.org} "
                                       f"{format_decimal(override.discount_percent)}% discount"))
    full_tiers = tuple(LongContextTier(tier.above_input_tokens, {**base, **tier.prices})
                       for tier in tiers)
    rules = tuple(rule for rule in version.rules if rule_applies_to(rule, model))
    return EffectiveRate(card.name, version, model, _frozen(base), full_tiers, discount,
                         tuple(records), rules)
