"""Dynamic pricing rules and the record each one leaves on a charge.

Every rule turns into an exact multiplier (an integer ratio) on the charge's base price. A rule
that changes the price is recorded on the charge as an :class:`AppliedRule`, so that any charge
can be explained after the fact. Rules are pure: the caller supplies the usage timestamp, the
deployment's load and the organization's usage so far in the period.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from math import gcd
from typing import ClassVar, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from creditgate.clock import MICROS_PER_SECOND
from creditgate.errors import InvalidInput
from creditgate.pricing._exact import ONE, Ratio, decimal_ratio, format_decimal, format_ratio, ratio

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
VOLUME_MODES: Final = ("graduated", "volume")
# Rules per card version. Each one costs a little on every charge; a card with more is a mistake.
RULES_PER_VERSION_MAX: Final = 64
STEPS_PER_RULE_MAX: Final = 32


@dataclass(frozen=True, slots=True)
class AppliedRule:
    """What one rule (or override, or tier) did to one charge."""

    kind: str
    name: str
    multiplier: Ratio
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "multiplier": format_ratio(self.multiplier),
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """A deployment's load when the request was admitted."""

    utilisation_percent: int = 0
    queue_depth: int = 0

    def __post_init__(self) -> None:
        for name in ("utilisation_percent", "queue_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name}: must be a non-negative whole number", param=name)


@dataclass(frozen=True, slots=True)
class PricingContext:
    """Facts outside the usage record that dynamic rules depend on."""

    load: LoadSnapshot | None = None
    # The organization's usage so far in the current billing period, by meter, before this record.
    period_usage: Mapping[str, int] | None = None


def _multiplier(value: Decimal, *, field: str) -> Ratio:
    if value <= 0:
        raise InvalidInput(f"{field}: a multiplier must be greater than zero", param=field)
    return decimal_ratio(value)


def _times(value: Ratio) -> str:
    return f"×{format_ratio(value)}"


@dataclass(frozen=True, slots=True)
class TimeWindowRule:
    """A multiplier for usage whose local time falls in ``[start_hour, end_hour)`` on ``weekdays``.

    ``end_hour`` may be smaller than ``start_hour`` for windows across midnight (22-6); the weekday
    tested is the local weekday of the usage itself.
    """

    kind: ClassVar[str] = "time_window"
    name: str
    timezone: str
    weekdays: frozenset[int]
    start_hour: int
    end_hour: int
    multiplier: Decimal
    models: frozenset[str] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _applied: AppliedRule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = f"rules.{self.name}"
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"{prefix}.timezone: unknown timezone {self.timezone!r}",
                               param=f"{prefix}.timezone") from None
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise InvalidInput(f"{prefix}.weekdays: give one or more of {', '.join(WEEKDAYS)}",
                               param=f"{prefix}.weekdays")
        if not (0 <= self.start_hour <= 23 and 1 <= self.end_hour <= 24
                and self.start_hour != self.end_hour):
            raise InvalidInput(f"{prefix}.hours: start 0-23 and end 1-24, not equal",
                               param=f"{prefix}.hours")
        factor = _multiplier(self.multiplier, field=f"{prefix}.multiplier")
        days = ("every day" if len(self.weekdays) == 7
                else ",".join(WEEKDAYS[day] for day in sorted(self.weekdays)))
        detail = (f"{days} {self.start_hour:02d}:00-{self.end_hour:02d}:00 {self.timezone} "
                  f"{_times(factor)}")
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_applied", AppliedRule(self.kind, self.name, factor, detail))

    @property
    def ratio(self) -> Ratio:
        return self._applied.multiplier

    def matches_local(self, weekday: int, hour: int) -> bool:
        if weekday not in self.weekdays:
            return False
        if self.start_hour < self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour

    def evaluate(self, at_us: int) -> AppliedRule | None:
        local = datetime.fromtimestamp(at_us // MICROS_PER_SECOND, tz=self._zone)
        return self._applied if self.matches_local(local.weekday(), local.hour) else None


@dataclass(frozen=True, slots=True)
class Step:
    """A threshold (inclusive) and the multiplier that holds from there on."""

    at_least: int
    multiplier: Decimal


def _check_steps(steps: tuple[Step, ...], *, field: str) -> tuple[int, ...]:
    if len(steps) > STEPS_PER_RULE_MAX:
        raise InvalidInput(f"{field}: at most {STEPS_PER_RULE_MAX} steps", param=field)
    thresholds = tuple(step.at_least for step in steps)
    for index, step in enumerate(steps):
        _multiplier(step.multiplier, field=f"{field}[{index}].multiplier")
        if step.at_least < 0:
            raise InvalidInput(f"{field}[{index}].at_least: must not be negative", param=field)
    if any(later <= earlier for earlier, later in itertools.pairwise(thresholds)):
        raise InvalidInput(f"{field}: thresholds must be strictly increasing", param=field)
    return thresholds


@dataclass(frozen=True, slots=True)
class SurgeRule:
    """A surge multiplier when utilisation or queue depth passes thresholds, never above ``cap``.

    Of the utilisation step and the queue-depth step reached, the larger multiplier wins; the
    result is then capped.
    """

    kind: ClassVar[str] = "surge"
    name: str
    utilisation_steps: tuple[Step, ...]
    queue_depth_steps: tuple[Step, ...]
    cap: Decimal
    models: frozenset[str] = frozenset()
    _utilisation_at: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _queue_at: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # _outcomes[u + 1][q + 1]: the result when utilisation step u and queue step q are reached
    # (-1: none reached).
    _outcomes: tuple[tuple[AppliedRule | None, ...], ...] = field(init=False, repr=False,
                                                                   compare=False)

    def __post_init__(self) -> None:
        prefix = f"rules.{self.name}"
        if not self.utilisation_steps and not self.queue_depth_steps:
            raise InvalidInput(f"{prefix}: a surge rule needs utilisation or queue_depth steps",
                               param=prefix)
        cap = _multiplier(self.cap, field=f"{prefix}.cap")
        object.__setattr__(self, "_utilisation_at",
                           _check_steps(self.utilisation_steps, field=f"{prefix}.utilisation"))
        object.__setattr__(self, "_queue_at",
                           _check_steps(self.queue_depth_steps, field=f"{prefix}.queue_depth"))
        # Precompute the outcome of every pair of steps, so that a charge costs two bisections
        # and two tuple lookups.
        outcomes = tuple(tuple(self._outcome(u_index, q_index, cap)
                               for q_index in range(-1, len(self.queue_depth_steps)))
                         for u_index in range(-1, len(self.utilisation_steps)))
        object.__setattr__(self, "_outcomes", outcomes)

    def _outcome(self, u_index: int, q_index: int, cap: Ratio) -> AppliedRule | None:
        parts: list[str] = []
        reached: list[Ratio] = []
        if u_index >= 0:
            step = self.utilisation_steps[u_index]
            reached.append(decimal_ratio(step.multiplier))
            parts.append(f"utilisation ≥ {step.at_least}% ×{format_decimal(step.multiplier)}")
        if q_index >= 0:
            step = self.queue_depth_steps[q_index]
            reached.append(decimal_ratio(step.multiplier))
            parts.append(f"queue depth ≥ {step.at_least} ×{format_decimal(step.multiplier)}")
        if not reached:
            return None
        best = largest(reached)
        if greater(best, cap):
            best = cap
            parts.append(f"capped at {_times(cap)}")
        if best == ONE:
            return None
        return AppliedRule(self.kind, self.name, best, "; ".join(parts))

    def evaluate(self, load: LoadSnapshot) -> AppliedRule | None:
        # bisect_right gives the number of steps reached, which is the row/column index.
        return self._outcomes[bisect_right(self._utilisation_at, load.utilisation_percent)][
            bisect_right(self._queue_at, load.queue_depth)]

    def ratio_max(self) -> Ratio:
        # The "no step reached" outcome is ×1, so that is always possible too.
        return largest((ONE, *(rule.multiplier for row in self._outcomes for rule in row
                               if rule is not None)))


def greater(left: Ratio, right: Ratio) -> bool:
    """Exact comparison of two ratios (cross-multiplied, no floats)."""
    return left[0] * right[1] > right[0] * left[1]


def largest(values: Iterable[Ratio], *, default: Ratio = ONE) -> Ratio:
    best: Ratio | None = None
    for value in values:
        if best is None or greater(value, best):
            best = value
    return default if best is None else best


@dataclass(frozen=True, slots=True)
class VolumeTier:
    """Units beyond the first ``above`` of the period cost ``multiplier`` times the list price."""

    above: int
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class VolumeTierRule:
    """Volume discounts over an organization's usage of ``meters`` in the current period.

    ``graduated``: each unit is priced by the tier it falls in, so a charge that crosses a tier
    boundary is split. ``volume``: the whole charge is priced by the tier that the period total
    (including this charge) falls in. Earlier charges of the period are never re-rated.
    """

    kind: ClassVar[str] = "volume_tier"
    name: str
    mode: Literal["graduated", "volume"]
    meters: tuple[str, ...]
    tiers: tuple[VolumeTier, ...]
    models: frozenset[str] = frozenset()
    _above: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _ratios: tuple[Ratio, ...] = field(init=False, repr=False, compare=False)
    _common: int = field(init=False, repr=False, compare=False)
    _records: tuple[AppliedRule | None, ...] = field(init=False, repr=False, compare=False)
    free_below: int = field(init=False, repr=False, compare=False)
    meter_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = f"rules.{self.name}"
        if self.mode not in VOLUME_MODES:
            raise InvalidInput(f"{prefix}.mode: must be graduated or volume", param=f"{prefix}.mode")
        if not self.meters:
            raise InvalidInput(f"{prefix}.meters: name the meters whose usage counts",
                               param=f"{prefix}.meters")
        if not self.tiers or self.tiers[0].above != 0:
            raise InvalidInput(f"{prefix}.tiers: the first tier must start above 0",
                               param=f"{prefix}.tiers")
        if len(self.tiers) > STEPS_PER_RULE_MAX:
            raise InvalidInput(f"{prefix}.tiers: at most {STEPS_PER_RULE_MAX} tiers",
                               param=f"{prefix}.tiers")
        above = tuple(tier.above for tier in self.tiers)
        if any(later <= earlier for earlier, later in itertools.pairwise(above)):
            raise InvalidInput(f"{prefix}.tiers: 'above' must be strictly increasing",
                               param=f"{prefix}.tiers")
        ratios = tuple(_multiplier(tier.multiplier, field=f"{prefix}.tiers[{index}].multiplier")
                       for index, tier in enumerate(self.tiers))
        common = 1
        for _, denominator in ratios:
            common = common * denominator // gcd(common, denominator)
        object.__setattr__(self, "meter_set", frozenset(self.meters))
        object.__setattr__(self, "_above", above)
        object.__setattr__(self, "_ratios", ratios)
        object.__setattr__(self, "_common", common)
        # The record for a charge that falls wholly inside one tier is the same every time.
        object.__setattr__(self, "_records", tuple(
            None if factor == ONE else AppliedRule(
                self.kind, self.name, factor,
                f"{self.mode}: tier above {tier.above} {self._unit_name()} {_times(factor)}")
            for tier, factor in zip(self.tiers, ratios, strict=True)))
        # Below this many units in the period nothing changes: the first tier at ×1 (the usual
        # case for most organizations) is settled with one comparison.
        first_end = above[1] if len(above) > 1 else None
        object.__setattr__(self, "free_below",
                           (first_end if first_end is not None else 1 << 62)
                           if ratios[0] == ONE else -1)

    def _unit_name(self) -> str:
        return "units" if len(self.meters) != 1 else self.meters[0]

    def basis(self, usage: Mapping[str, int]) -> int:
        total = 0
        for meter in self.meters:
            total += usage.get(meter, 0)
        return total

    def _tier_of(self, total: int) -> int:
        """The tier of the ``total``-th unit (1-based): the last one whose ``above`` is below it."""
        return max(0, bisect_right(self._above, total - 1) - 1) if total > 0 else 0

    def evaluate(self, prior: int, quantity: int) -> AppliedRule | None:
        """The multiplier for ``quantity`` units after ``prior`` units already used this period."""
        if prior + quantity <= self.free_below:
            return None
        if self.mode == "volume" or quantity == 0:
            total = prior + quantity  # the tier of the total-th unit, as in _tier_of
            return self._records[bisect_right(self._above, total - 1) - 1 if total > 0 else 0]
        # The tiers of units prior + 1 and prior + quantity (see _tier_of), inlined: this runs
        # once per rated record of an organization past its first tier.
        first = bisect_right(self._above, prior) - 1
        last = bisect_right(self._above, prior + quantity - 1) - 1
        if first == last:
            return self._records[first]
        numerator = 0
        parts = []
        for index in range(first, last + 1):
            low = max(prior, self._above[index])
            high = prior + quantity if index == last else min(prior + quantity,
                                                                self._above[index + 1])
            tier_numerator, tier_denominator = self._ratios[index]
            numerator += (high - low) * tier_numerator * (self._common // tier_denominator)
            parts.append(f"{high - low} {self._unit_name()} {_times(self._ratios[index])}")
        factor = ratio(numerator, quantity * self._common)
        return AppliedRule(self.kind, self.name, factor,
                           f"graduated: {', '.join(parts)} = {_times(factor)}")

    def ratio_max(self, prior: int, quantity_max: int) -> Ratio:
        """The largest multiplier any charge of up to ``quantity_max`` units could get."""
        if prior + quantity_max <= self.free_below:
            return ONE
        first, last = self._tier_of(prior), self._tier_of(prior + quantity_max)
        return largest(self._ratios[first:last + 1])


Rule = TimeWindowRule | SurgeRule | VolumeTierRule


def rule_applies_to(rule: Rule, model: str) -> bool:
    return not rule.models or model in rule.models
