"""Alert rules: what each kind measures, when it crosses (with hysteresis), and firing it once.

A rule is ``ok`` or ``firing``. An ``ok`` rule fires when its reading is in alarm; a ``firing``
rule resolves only when the reading is clear of the threshold by ``hysteresis_percent`` — a
balance hovering around the threshold fires once, not on every wobble. A state change is one
conditional UPDATE (``WHERE id = ? AND generation = ?``) in the same transaction as the alert
row and its events: when several evaluators see the same crossing, exactly one UPDATE matches,
so the crossing is recorded once, and none is lost because the losers re-read the new state.

Kinds (amounts are decimal strings):

- ``available_below`` ``{"credits": "100"}``: the available balance is below the credits.
- ``depletion_within`` ``{"days": 7}``: the forecast runs out within that many days.
- ``expiring_waste`` ``{"days": 7, "credits": "0"}``: grants expiring within the days will leave
  more than ``credits`` unused at the current burn rate (the projected waste, credits and money).
- ``spend_spike`` ``{"factor": "3"}``: the last hour's usage is above factor × the hourly baseline
  (the robust daily burn rate / 24).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import insert, select, update

from creditgate.clock import iso
from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.credits import AmountError, divide_round_half_up, format_amount, parse_amount
from creditgate.storage.tables_tracking import tracking_alert_rules, tracking_alerts
from creditgate.tracking.events import record_event
from creditgate.tracking.forecast import DAY_US

RULE_KINDS: Final = ("available_below", "budget_used", "depletion_within", "expiring_waste", "spend_spike")
FORECAST_KINDS: Final = frozenset({"depletion_within", "expiring_waste", "spend_spike"})
RULES_PER_ORG_MAX: Final = 50
DAYS_MAX: Final = 365
HYSTERESIS_PERCENT_DEFAULT: Final = 10
ALERT_LIST_MAX: Final = 500
MICROS: Final = 1_000_000
PARAM_NAMES: Final = {"available_below": ("credits",), "budget_used": ("subject", "percent"),
                      "depletion_within": ("days",), "expiring_waste": ("days", "credits"),
                      "spend_spike": ("factor",)}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    org_id: str
    kind: str
    params: dict[str, Any]
    hysteresis_percent: int
    state: str
    generation: int


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement of a rule: in alarm, clear (past the hysteresis), or neither."""

    alarm: bool
    clear: bool
    value: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Observation:
    """What rules read: the balance, and (for forecast kinds) the forecast."""

    available: int
    forecast: Any = None  # creditgate.tracking.forecasting.OrgForecast
    budgets: tuple[Any, ...] = ()  # creditgate.ledger.records.Budget, current period


# ------------------------------------------------------------------------------ pure
def check_params(kind: str, params: Any) -> dict[str, Any]:
    if kind not in RULE_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(RULE_KINDS)}", param="kind")
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object", param="params")
    # Refused rather than dropped: a misspelt key would otherwise leave a rule on its default.
    for key in params:
        if key not in PARAM_NAMES[kind]:
            raise InvalidInput(f"params.{key}: unknown for a {kind} rule (it takes "
                               f"{', '.join(PARAM_NAMES[kind])})", param=f"params.{key}")
    try:
        if kind == "available_below":
            return {"credits": format_amount(parse_amount(params.get("credits", ""), field="credits"))}
        if kind == "budget_used":
            subject, percent = params.get("subject"), params.get("percent")
            if not isinstance(subject, str) or not subject.startswith(("project:", "key:")):
                raise InvalidInput("params.subject must be project:<id> or key:<id>", param="params.subject")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
                raise InvalidInput("params.percent must be a whole number from 1 to 100", param="params.percent")
            return {"subject": subject, "percent": percent}
        if kind == "spend_spike":
            factor = parse_amount(params.get("factor", "3"), field="factor", allow_zero=False)
            return {"factor": format_amount(factor)}
    except AmountError as error:
        raise InvalidInput(str(error), param="params") from None
    days = params.get("days")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= DAYS_MAX:
        raise InvalidInput(f"params.days must be a whole number from 1 to {DAYS_MAX}", param="params.days")
    if kind == "depletion_within":
        return {"days": days}
    try:
        return {"days": days, "credits": format_amount(parse_amount(params.get("credits", "0")))}
    except AmountError as error:
        raise InvalidInput(str(error), param="params.credits") from None


def read(rule: Rule, observation: Observation) -> Reading:
    """Measure ``rule`` against ``observation``. Pure."""
    margin = rule.hysteresis_percent
    if rule.kind == "available_below":
        limit = parse_amount(rule.params["credits"])
        value = observation.available
        return Reading(value < limit, value * 100 >= limit * (100 + margin), format_amount(value),
                       f"available {format_amount(value)} is below {rule.params['credits']} credits",
                       {"available": format_amount(value), "threshold": rule.params["credits"]})
    if rule.kind == "budget_used":
        budget = next((b for b in observation.budgets if b.subject == rule.params["subject"]), None)
        used, cap = (budget.spent + budget.held, budget.cap) if budget is not None else (0, 0)
        percent = rule.params["percent"]
        alarm = cap > 0 and used * 100 >= cap * percent
        clear = cap == 0 or used * 100 < cap * max(percent - margin, 0)
        shown = format_amount(divide_round_half_up(used * 100 * MICROS, cap)) if cap else "0"
        return Reading(alarm, clear, shown,
                       f"budget of {rule.params['subject']} is {shown}% used (alert at {percent}%)",
                       {"subject": rule.params["subject"], "used": format_amount(used),
                        "cap": format_amount(cap), "percent": percent})
    forecast = observation.forecast
    assert forecast is not None, "forecast rules need a forecast"
    if rule.kind == "depletion_within":
        limit_us = rule.params["days"] * DAY_US
        left = forecast.time_left_us(forecast.median)
        alarm = left is not None and left < limit_us
        clear = left is None or left * 100 >= limit_us * (100 + margin)
        from creditgate.tracking.forecasting import days_text

        return Reading(alarm, clear, days_text(left) or "never",
                       f"credits are projected to run out in {days_text(left)} days "
                       f"(alert at {rule.params['days']})",
                       {"days_left": days_text(left), "depletion": iso(forecast.median.depleted_at_us),
                        "earliest": iso(forecast.earliest.depleted_at_us), "days": rule.params["days"]})
    if rule.kind == "expiring_waste":
        limit = parse_amount(rule.params["credits"])
        waste, money = forecast.waste_total(within_us=rule.params["days"] * DAY_US)
        return Reading(waste > limit, waste * 100 <= limit * (100 - margin), format_amount(waste),
                       f"{format_amount(waste)} credits expiring within {rule.params['days']} days "
                       "will go unused at the current burn rate",
                       {"projected_waste": format_amount(waste), "projected_waste_money": format_amount(money),
                        "days": rule.params["days"]})
    factor = parse_amount(rule.params["factor"])
    baseline = forecast.burn.per_hour
    recent = forecast.recent_per_hour
    alarm = baseline > 0 and recent * MICROS > factor * baseline
    clear = recent * MICROS * 100 <= factor * baseline * (100 - margin)
    ratio = format_amount(divide_round_half_up(recent * MICROS, baseline)) if baseline else "-"
    return Reading(alarm, clear, ratio,
                   f"usage in the last hour ({format_amount(recent)}) is {ratio} times the hourly baseline",
                   {"last_hour": format_amount(recent), "baseline_per_hour": format_amount(baseline),
                    "factor": rule.params["factor"]})


def decide(rule: Rule, reading: Reading) -> str | None:
    """The transition to make: "fired", "resolved" or None."""
    if rule.state == "ok" and reading.alarm:
        return "fired"
    if rule.state == "firing" and reading.clear and not reading.alarm:
        return "resolved"
    return None


# ------------------------------------------------------------------------------ storage
class AlertRules:
    def __init__(self, database: Any, clock: Any) -> None:
        self.database = database
        self.clock = clock

    def create(self, org_id: str, kind: str, params: Any, *,
               hysteresis_percent: int = HYSTERESIS_PERCENT_DEFAULT) -> dict[str, Any]:
        checked = check_params(kind, params)
        if isinstance(hysteresis_percent, bool) or not isinstance(hysteresis_percent, int) \
                or not 0 <= hysteresis_percent <= 100:
            raise InvalidInput("hysteresis_percent must be from 0 to 100", param="hysteresis_percent")
        rule_id = new_id("alr")
        with self.database.write() as connection:
            count = len(connection.execute(select(tracking_alert_rules.c.id).where(
                tracking_alert_rules.c.org_id == org_id)).all())
            if count >= RULES_PER_ORG_MAX:
                raise InvalidInput(f"an organization has at most {RULES_PER_ORG_MAX} alert rules", param="kind")
            connection.execute(insert(tracking_alert_rules).values(
                id=rule_id, org_id=org_id, kind=kind, params=orjson.dumps(checked).decode(),
                hysteresis_percent=hysteresis_percent, state="ok", generation=0, enabled=1,
                created_at_us=self.clock.now_us()))
        return self.get(org_id, rule_id)

    def get(self, org_id: str, rule_id: str) -> dict[str, Any]:
        with self.database.read() as connection:
            row = connection.execute(select(tracking_alert_rules).where(
                (tracking_alert_rules.c.id == rule_id) & (tracking_alert_rules.c.org_id == org_id))).first()
        if row is None:
            raise NotFound(f"alert rule {rule_id} not found", param="rule_id")
        return _rule_dict(row)

    def list_rules(self, org_id: str) -> list[dict[str, Any]]:
        with self.database.read() as connection:
            rows = connection.execute(select(tracking_alert_rules).where(
                tracking_alert_rules.c.org_id == org_id).order_by(tracking_alert_rules.c.created_at_us)).all()
        return [_rule_dict(row) for row in rows]

    def delete(self, org_id: str, rule_id: str) -> dict[str, Any]:
        """Disable (alerts already recorded keep naming the rule)."""
        self.get(org_id, rule_id)
        with self.database.write() as connection:
            connection.execute(update(tracking_alert_rules).where(
                tracking_alert_rules.c.id == rule_id).values(enabled=0))
        return self.get(org_id, rule_id)

    def enabled_rules(self, org_ids: list[str] | None = None) -> list[Rule]:
        query = select(tracking_alert_rules).where(tracking_alert_rules.c.enabled == 1)
        if org_ids is not None:
            query = query.where(tracking_alert_rules.c.org_id.in_(org_ids))
        with self.database.read() as connection:
            return [_rule(row) for row in connection.execute(query)]

    def alerts(self, org_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        with self.database.read() as connection:
            rows = connection.execute(select(tracking_alerts).where(tracking_alerts.c.org_id == org_id)
                                      .order_by(tracking_alerts.c.at_us.desc(), tracking_alerts.c.generation.desc())
                                      .limit(max(1, min(limit, ALERT_LIST_MAX)))).all()
        return [{"id": row.id, "rule_id": row.rule_id, "kind": row.kind, "transition": row.transition,
                 "message": row.message, "details": orjson.loads(row.details), "at": iso(row.at_us)}
                for row in rows]

    def apply(self, rule: Rule, reading: Reading) -> str | None:
        """Make the transition ``reading`` calls for, once; the transition made, or None."""
        transition = decide(rule, reading)
        now = self.clock.now_us()
        table = tracking_alert_rules
        with self.database.write() as connection:
            if transition is None:
                connection.execute(update(table).where(table.c.id == rule.id).values(
                    last_value=reading.value[:64], evaluated_at_us=now))
                return None
            generation = rule.generation + 1
            changed = connection.execute(update(table).where(
                (table.c.id == rule.id) & (table.c.generation == rule.generation)).values(
                state="firing" if transition == "fired" else "ok", generation=generation,
                last_value=reading.value[:64], changed_at_us=now, evaluated_at_us=now)).rowcount
            if not changed:
                return None  # another evaluator made this transition first
            connection.execute(insert(tracking_alerts).values(
                id=new_id("alt"), org_id=rule.org_id, rule_id=rule.id, kind=rule.kind, generation=generation,
                transition=transition, message=reading.message[:500],
                details=orjson.dumps(reading.details).decode(), at_us=now))
            data = {"rule_id": rule.id, "kind": rule.kind, "message": reading.message,
                    "details": reading.details}
            record_event(connection, rule.org_id, f"alert.{transition}", f"alert:{rule.id}:{generation}",
                         data, now)
            if transition == "fired" and rule.kind == "available_below":
                record_event(connection, rule.org_id, "balance.low", f"low:{rule.id}:{generation}", data, now)
        return transition


def _rule(row: Any) -> Rule:
    return Rule(id=row.id, org_id=row.org_id, kind=row.kind, params=orjson.loads(row.params),
                hysteresis_percent=row.hysteresis_percent, state=row.state, generation=row.generation)


def _rule_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "org_id": row.org_id, "kind": row.kind, "params": orjson.loads(row.params),
            "hysteresis_percent": row.hysteresis_percent, "state": row.state,
            "enabled": bool(row.enabled), "last_value": row.last_value,
            "changed_at": iso(row.changed_at_us), "evaluated_at": iso(row.evaluated_at_us),
            "created_at": iso(row.created_at_us)}
