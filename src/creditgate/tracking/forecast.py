"""Forecasts, pure: burn rate, depletion date with a range, projected waste, recommended purchase.

- **Burn rate** is the median of daily consumption over a window of days (default 14), so one
  spike day moves it little; the range uses the 25th and 75th percentiles of the same days.
- **Depletion** walks the grants forward in the ledger's burn-down order (priority, expiry,
  creation) at a constant burn rate: the credits a grant still holds at its expiry are its
  **projected waste**, and the instant when nothing live is left is the **depletion date**. The
  high burn rate gives the earliest date, the low one the latest.
- **Recommended purchase**: the cheapest bundle (then the least projected waste) whose credits,
  added now, keep the organization funded through the end of the next billing period; none
  when the current credits already last.

All amounts are int micro-credits (money: micro-units of a currency); times are epoch µs. The
only rounding is :func:`divide_round_half_up` (and ceilings/floors of time, which are not money).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from creditgate.ledger.credits import divide_round_half_up

DAY_US: Final = 86_400_000_000
HOUR_US: Final = 3_600_000_000
WINDOW_DAYS_DEFAULT: Final = 14
WINDOW_DAYS_MAX: Final = 90
LOW_PERCENTILE: Final = 25
HIGH_PERCENTILE: Final = 75
HORIZON_DAYS_MAX: Final = 3_650
SIMULATION_STEPS_MAX: Final = 100_000
BUNDLE_QUANTITY_MAX: Final = 20


@dataclass(frozen=True, slots=True)
class BurnRate:
    """Micro-credits per day: the median, and the low and high ends of the range."""

    per_day: int
    low_per_day: int
    high_per_day: int
    days_observed: int

    @property
    def per_hour(self) -> int:
        return divide_round_half_up(self.per_day, 24)


@dataclass(frozen=True, slots=True)
class GrantState:
    """What the forecast needs of a live grant (``free``: remaining minus held)."""

    id: str
    free: int
    amount: int
    priority: int
    created_at_us: int
    effective_at_us: int
    expires_at_us: int | None
    cost_basis: int = 0
    currency: str = "USD"
    kind: str = "purchase"

    def order_key(self) -> tuple[int, int, int, int, str]:
        never = 1 if self.expires_at_us is None else 0
        return (self.priority, never, self.expires_at_us or 0, self.created_at_us, self.id)

    def money_of(self, credits: int) -> int:
        """The cost basis of ``credits`` of this grant, pro rata."""
        if self.amount <= 0 or self.cost_basis == 0:
            return 0
        return divide_round_half_up(credits * self.cost_basis, self.amount)


@dataclass(frozen=True, slots=True)
class Simulation:
    depleted_at_us: int | None  # None: still funded at the horizon
    waste: dict[str, int] = field(default_factory=dict)  # grant id -> credits left at its expiry


@dataclass(frozen=True, slots=True)
class Offer:
    """A bundle that can be bought: price in micro-units of ``currency``, credits in micro-credits."""

    id: str
    name: str
    price: int
    currency: str
    credits: int
    bonus_credits: int = 0
    validity_days: int | None = None
    priority: int = 100


@dataclass(frozen=True, slots=True)
class Recommendation:
    offer: Offer | None
    quantity: int
    reason: str
    price: int = 0
    projected_waste: int = 0


# ------------------------------------------------------------------------------ burn rate
def percentile(values: Sequence[int], percent: int) -> int:
    """Linear-interpolated percentile of integers, rounded half up (0 for no values)."""
    assert 0 <= percent <= 100
    if not values:
        return 0
    ordered = sorted(values)
    numerator = percent * (len(ordered) - 1)
    low, rest = divmod(numerator, 100)
    if rest == 0:
        return ordered[low]
    step = ordered[low + 1] - ordered[low]
    return ordered[low] + divide_round_half_up(step * rest, 100)


def burn_rate(daily: Sequence[int]) -> BurnRate:
    """Burn rate from consumption per day (any order of days; only the values count)."""
    return BurnRate(per_day=percentile(daily, 50), low_per_day=percentile(daily, LOW_PERCENTILE),
                    high_per_day=percentile(daily, HIGH_PERCENTILE), days_observed=len(daily))


def daily_series(hourly: Iterable[tuple[int, int]], *, now_us: int, window_days: int,
                 since_us: int) -> list[int]:
    """Sum ``(hour_start_us, credits)`` into ``window_days`` days of 24 hours ending with the
    current hour; days that started before ``since_us`` (the organization did not exist yet, or
    has no usage yet) are left out, except the most recent day, which always counts."""
    assert 1 <= window_days <= WINDOW_DAYS_MAX
    end = now_us - now_us % HOUR_US + HOUR_US
    days = [0] * window_days
    for hour_us, credits in hourly:
        index = (end - 1 - hour_us) // DAY_US
        if 0 <= index < window_days:
            days[index] += credits
    kept = [value for index, value in enumerate(days)
            if index == 0 or end - (index + 1) * DAY_US >= since_us - since_us % HOUR_US]
    return kept


# ------------------------------------------------------------------------------ simulation
def simulate(grants: Sequence[GrantState], per_day: int, *, now_us: int, horizon_us: int) -> Simulation:
    """Consume ``per_day`` micro-credits a day from ``grants`` in burn-down order until
    ``horizon_us``: when funds run out, and what each grant still holds at its expiry."""
    assert horizon_us >= now_us and per_day >= 0
    remaining = {grant.id: max(0, grant.free) for grant in grants}
    order = sorted(grants, key=GrantState.order_key)
    waste: dict[str, int] = {}
    moment = now_us
    for _ in range(SIMULATION_STEPS_MAX):
        _expire(order, remaining, waste, moment)
        if moment >= horizon_us:
            break
        live = [g for g in order if remaining[g.id] > 0 and g.effective_at_us <= moment]
        upcoming = [g.effective_at_us for g in order if remaining[g.id] > 0 and g.effective_at_us > moment]
        if not live and not upcoming:
            return Simulation(moment, waste)
        boundaries = [g.expires_at_us for g in live if g.expires_at_us is not None] + upcoming
        next_change = min([horizon_us, *(b for b in boundaries if b > moment)])
        if not live or per_day == 0:
            moment = next_change
            continue
        grant = live[0]
        exhaust_us = -(-remaining[grant.id] * DAY_US // per_day)
        if moment + exhaust_us <= next_change:
            remaining[grant.id] = 0
            moment += exhaust_us
        else:
            used = (next_change - moment) * per_day // DAY_US
            remaining[grant.id] -= min(used, remaining[grant.id])
            moment = next_change
    return Simulation(None, waste)


def _expire(order: Sequence[GrantState], remaining: dict[str, int], waste: dict[str, int],
            moment: int) -> None:
    for grant in order:
        if grant.expires_at_us is not None and grant.expires_at_us <= moment and grant.id not in waste:
            waste[grant.id] = remaining[grant.id]
            remaining[grant.id] = 0


# ------------------------------------------------------------------------------ recommendation
def offer_grants(offer: Offer, quantity: int, now_us: int) -> list[GrantState]:
    """The grants buying ``quantity`` of ``offer`` now would add (paid, then bonus)."""
    expires = None if offer.validity_days is None else now_us + offer.validity_days * DAY_US
    paid = GrantState(id=f"offer:{offer.id}:paid", free=offer.credits * quantity,
                      amount=offer.credits * quantity, priority=offer.priority, created_at_us=now_us,
                      effective_at_us=now_us, expires_at_us=expires, cost_basis=offer.price * quantity,
                      currency=offer.currency)
    if not offer.bonus_credits:
        return [paid]
    bonus = replace(paid, id=f"offer:{offer.id}:bonus", free=offer.bonus_credits * quantity,
                    amount=offer.bonus_credits * quantity, cost_basis=0, kind="promotional")
    return [paid, bonus]


def recommend(grants: Sequence[GrantState], burn: BurnRate, offers: Sequence[Offer], *, now_us: int,
              through_us: int) -> Recommendation:
    """The cheapest offer (then least projected waste) that funds usage through ``through_us``."""
    base = simulate(grants, burn.per_day, now_us=now_us, horizon_us=through_us)
    if base.depleted_at_us is None:
        return Recommendation(None, 0, "the current credits last through the next period")
    best: tuple[int, int, str, Offer, int] | None = None
    for offer in offers:
        for quantity in range(1, BUNDLE_QUANTITY_MAX + 1):
            added = offer_grants(offer, quantity, now_us)
            expiries = [g.expires_at_us for g in added if g.expires_at_us is not None]
            horizon = max([through_us, *expiries])
            run = simulate([*grants, *added], burn.per_day, now_us=now_us, horizon_us=horizon)
            if run.depleted_at_us is not None and run.depleted_at_us < through_us:
                continue
            waste = sum(run.waste.get(g.id, 0) for g in added)
            candidate = (offer.price * quantity, waste, offer.name, offer, quantity)
            if best is None or candidate[:3] < best[:3]:
                best = candidate
            break
    if best is None:
        return Recommendation(None, 0, f"no bundle (up to {BUNDLE_QUANTITY_MAX} of one) covers "
                                       "the forecast usage through the next period")
    price, waste, _, offer, quantity = best
    return Recommendation(offer, quantity, "the cheapest bundle that covers the forecast usage "
                          "through the next period", price=price, projected_waste=waste)
