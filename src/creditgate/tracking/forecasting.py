"""The forecast use case: read an organization's grants, usage and the bundle catalog, and run
the pure forecast (:mod:`creditgate.tracking.forecast`). Used by the API, the CLI, the
dashboard and the alert rules.

Usage comes from the usage query (:func:`creditgate.usage.queries.run_query`: hourly rollups plus
the raw records at the edges), bucketed by hour over the window. The next billing period comes
from billing when it is installed, else it is taken as the next 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select

from creditgate.clock import iso, parse_iso
from creditgate.ledger.credits import divide_round_half_up, format_amount, parse_amount
from creditgate.tracking.forecast import (
    DAY_US,
    HOUR_US,
    WINDOW_DAYS_DEFAULT,
    BurnRate,
    GrantState,
    Offer,
    Recommendation,
    Simulation,
    burn_rate,
    daily_series,
    recommend,
    simulate,
)

PERIOD_DAYS_FALLBACK: Final = 30
SPIKE_WINDOW_US: Final = HOUR_US


@dataclass(frozen=True, slots=True)
class OrgForecast:
    org_id: str
    now_us: int
    available: int
    pending: int
    burn: BurnRate
    recent_per_hour: int  # consumption over the last hour, for spike detection
    grants: tuple[GrantState, ...]
    median: Simulation
    earliest: Simulation
    latest: Simulation
    through_us: int
    recommendation: Recommendation
    horizon_us: int

    def time_left_us(self, simulation: Simulation) -> int | None:
        """Time until ``simulation`` runs out of credits (None: funded past the horizon)."""
        if simulation.depleted_at_us is None:
            return None
        return max(0, simulation.depleted_at_us - self.now_us)

    def waste_total(self, *, within_us: int | None = None) -> tuple[int, int]:
        """Projected waste (credits, money) of grants expiring before ``now + within_us``."""
        credits = money = 0
        for grant in self.grants:
            lost = self.median.waste.get(grant.id, 0)
            if lost and (within_us is None or (grant.expires_at_us or 0) <= self.now_us + within_us):
                credits += lost
                money += grant.money_of(lost)
        return credits, money

    def to_dict(self) -> dict[str, Any]:
        offer = self.recommendation.offer
        return {
            "org_id": self.org_id, "as_of": iso(self.now_us),
            "available": format_amount(self.available), "pending": format_amount(self.pending),
            "burn_rate": {"per_day": format_amount(self.burn.per_day),
                          "low_per_day": format_amount(self.burn.low_per_day),
                          "high_per_day": format_amount(self.burn.high_per_day),
                          "days_observed": self.burn.days_observed, "method": "median of daily usage",
                          "last_hour": format_amount(self.recent_per_hour)},
            "depletion": {"expected": iso(self.median.depleted_at_us),
                          "earliest": iso(self.earliest.depleted_at_us),
                          "latest": iso(self.latest.depleted_at_us),
                          "days_left": days_text(self.time_left_us(self.median)),
                          "horizon": iso(self.horizon_us)},
            "grants": [{"id": grant.id, "kind": grant.kind, "free": format_amount(grant.free),
                        "expires_at": iso(grant.expires_at_us),
                        "projected_waste": format_amount(self.median.waste.get(grant.id, 0)),
                        "projected_waste_money": format_amount(
                            grant.money_of(self.median.waste.get(grant.id, 0))),
                        "currency": grant.currency} for grant in self.grants],
            "projected_waste": format_amount(self.waste_total()[0]),
            "recommendation": {
                "through": iso(self.through_us), "reason": self.recommendation.reason,
                "bundle": None if offer is None else {"id": offer.id, "name": offer.name,
                                                      "quantity": self.recommendation.quantity,
                                                      "price": format_amount(self.recommendation.price),
                                                      "currency": offer.currency,
                                                      "projected_waste": format_amount(
                                                          self.recommendation.projected_waste)}},
        }


def days_text(span_us: int | None) -> str | None:
    """A duration in days with one decimal, e.g. "12.5" (None stays None)."""
    if span_us is None:
        return None
    tenths = divide_round_half_up(span_us * 10, DAY_US)
    return f"{tenths // 10}.{tenths % 10}"


def org_forecast(services: Any, org_id: str, *, window_days: int = WINDOW_DAYS_DEFAULT,
                 horizon_days: int = 365) -> OrgForecast:
    now = services.clock.now_us()
    org = services.ledger.get_org(org_id)
    balance = services.ledger.balance(org_id)
    grants = tuple(GrantState(id=g.id, free=g.free, amount=g.amount, priority=g.priority,
                              created_at_us=g.created_at_us, effective_at_us=g.effective_at_us,
                              expires_at_us=g.expires_at_us, cost_basis=g.cost_basis,
                              currency=g.currency, kind=g.kind)
                   for g in balance.grants
                   if g.status == "active" and g.free > 0
                   and (g.expires_at_us is None or g.expires_at_us > now))
    hourly = _hourly_usage(services, org_id, now, window_days)
    burn = burn_rate(daily_series(hourly, now_us=now, window_days=window_days,
                                  since_us=org.created_at_us))
    horizon = now + horizon_days * DAY_US
    through = _next_period_end(services, org_id, now)
    return OrgForecast(
        org_id=org_id, now_us=now, available=balance.available, pending=balance.pending, burn=burn,
        recent_per_hour=_recent_usage(services, org_id, now), grants=grants,
        median=simulate(grants, burn.per_day, now_us=now, horizon_us=horizon),
        earliest=simulate(grants, burn.high_per_day, now_us=now, horizon_us=horizon),
        latest=simulate(grants, burn.low_per_day, now_us=now, horizon_us=horizon),
        through_us=through, horizon_us=horizon,
        recommendation=recommend(grants, burn, load_offers(services), now_us=now, through_us=through))


def _hourly_usage(services: Any, org_id: str, now_us: int, window_days: int) -> list[tuple[int, int]]:
    from creditgate.usage.queries import UsageQuery, run_query

    end = now_us + 1
    query = UsageQuery(org_id=org_id, start_us=end - window_days * DAY_US, end_us=end, bucket="hour")
    return [(parse_iso(row["bucket_start"]), parse_amount(row["credits"]))
            for row in run_query(services.database, query)]


def _recent_usage(services: Any, org_id: str, now_us: int) -> int:
    from creditgate.storage.tables_api import usage_records

    with services.database.read() as connection:
        total = connection.execute(select(func.coalesce(func.sum(usage_records.c.credits), 0)).where(
            (usage_records.c.org_id == org_id) & (usage_records.c.at_us > now_us - SPIKE_WINDOW_US)
            & (usage_records.c.at_us <= now_us))).scalar_one()
    return int(total)


def _next_period_end(services: Any, org_id: str, now_us: int) -> int:
    """The end of the billing period after the current one (or 30 days from now)."""
    billing = services.extras.get("billing")
    if billing is not None:
        try:
            from creditgate.billing.periods import period_at

            cycle = billing.cycle(org_id)
            current = billing.current_period(org_id)
            if current is not None:
                return int(period_at(cycle.spec, current.index + 1).end_us)
        except (ImportError, AttributeError):
            pass
    return now_us + PERIOD_DAYS_FALLBACK * DAY_US


def load_offers(services: Any) -> list[Offer]:
    """Active bundles of the catalog as offers (none when the catalog is not installed)."""
    try:
        from creditgate.api import catalog
    except ImportError:
        return []
    offers = []
    for item in catalog.list_bundles(services):
        offers.append(Offer(id=item["id"], name=item["name"], price=parse_amount(item["price"]),
                            currency=item["currency"], credits=parse_amount(item["credits"]),
                            bonus_credits=parse_amount(item["bonus_credits"]),
                            validity_days=item["validity_days"], priority=item["priority"]))
    return offers
