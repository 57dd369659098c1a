"""Recurring allowances (subscription-style): X credits granted at the start of every period.

Each allowance has its own scope, model allow-list, priority, expiry (``expires_after_periods``
periods after the one it is granted for ends; null for never) and rollover policy. The grant
for a period is keyed ``allowance:<id>:<period start>``, so granting twice (a repeated close, two
processes) books it once.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import insert, select, update

from creditgate.billing.cycles import load_cycle
from creditgate.billing.periods import Period, period_at, period_containing
from creditgate.billing.rollover import EXPIRES_AFTER_PERIODS_MAX, parse_policy
from creditgate.errors import Conflict, InvalidInput, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.credits import check_micros, format_amount
from creditgate.ledger.records import GRANT_SCOPES
from creditgate.ledger.service import PRIORITY_MAX, check_name
from creditgate.storage.tables_billing import billing_allowances

ALLOWANCES_PER_ORG_MAX: Final = 50


@dataclass(frozen=True, slots=True)
class Allowance:
    id: str
    org_id: str
    name: str
    amount: int
    scope: str
    allow: tuple[str, ...] | None
    priority: int
    expires_after_periods: int | None
    rollover: dict[str, Any] | None
    active: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "org_id": self.org_id, "name": self.name,
                "credits": format_amount(self.amount), "scope": self.scope,
                "allow": list(self.allow) if self.allow else None, "priority": self.priority,
                "expires_after_periods": self.expires_after_periods, "rollover": self.rollover,
                "active": self.active}


def _from_row(row: Any) -> Allowance:
    return Allowance(id=row.id, org_id=row.org_id, name=row.name, amount=row.amount, scope=row.scope,
                     allow=tuple(orjson.loads(row.allow)) if row.allow else None, priority=row.priority,
                     expires_after_periods=row.expires_after_periods,
                     rollover=orjson.loads(row.rollover) if row.rollover else None, active=bool(row.active))


class Allowances:
    def __init__(self, database: Any, ledger: Any, clock: Any) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock

    def create(self, org_id: str, name: str, amount: int, *, scope: str = "any",
               allow: list[str] | None = None, priority: int = 100,
               expires_after_periods: int | None = 1, rollover: dict[str, Any] | None = None) -> Allowance:
        """Validate everything first (nothing is written on bad input), store the allowance and
        grant it for the current period at once."""
        name = check_name(name)
        check_micros(amount, field="credits", allow_zero=False)
        if scope not in GRANT_SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(GRANT_SCOPES)}", param="scope")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= PRIORITY_MAX:
            raise InvalidInput(f"priority must be from 0 to {PRIORITY_MAX}", param="priority")
        if expires_after_periods is not None and not 1 <= expires_after_periods <= EXPIRES_AFTER_PERIODS_MAX:
            raise InvalidInput(f"expires_after_periods must be from 1 to {EXPIRES_AFTER_PERIODS_MAX}",
                               param="expires_after_periods")
        policy = parse_policy(rollover).to_json() if rollover is not None else None
        allow_list = sorted({check_name(item, field="allow") for item in allow}) if allow else None
        allowance = Allowance(id=new_id("alw"), org_id=org_id, name=name, amount=amount, scope=scope,
                              allow=tuple(allow_list) if allow_list else None, priority=priority,
                              expires_after_periods=expires_after_periods, rollover=policy, active=True)
        with self.database.write() as connection:
            self.ledger.get_org(org_id, connection=connection)
            rows = connection.execute(select(billing_allowances.c.name).where(
                billing_allowances.c.org_id == org_id)).all()
            if any(row.name == name for row in rows):
                raise Conflict(f"allowance {name!r} already exists", param="name")
            if len(rows) >= ALLOWANCES_PER_ORG_MAX:
                raise InvalidInput(f"at most {ALLOWANCES_PER_ORG_MAX} allowances per organization", param="name")
            connection.execute(insert(billing_allowances).values(
                id=allowance.id, org_id=org_id, name=name, amount=amount, scope=scope,
                allow=orjson.dumps(allow_list).decode() if allow_list else None, priority=priority,
                expires_after_periods=expires_after_periods,
                rollover=orjson.dumps(policy).decode() if policy else None, active=True,
                created_at_us=self.clock.now_us()))
            cycle = load_cycle(connection, org_id)
        current = period_containing(cycle.spec, self.clock.now_us())
        if current is not None:
            self._grant(allowance, current, cycle.spec)
        return allowance

    def list(self, org_id: str) -> list[Allowance]:
        with self.database.read() as connection:
            rows = connection.execute(select(billing_allowances).where(billing_allowances.c.org_id == org_id)
                                      .order_by(billing_allowances.c.created_at_us)).all()
        return [_from_row(row) for row in rows]

    def set_active(self, org_id: str, allowance_id: str, active: bool) -> Allowance:
        with self.database.write() as connection:
            changed = connection.execute(update(billing_allowances).where(
                (billing_allowances.c.id == allowance_id) & (billing_allowances.c.org_id == org_id))
                .values(active=active)).rowcount
            if not changed:
                raise NotFound(f"allowance {allowance_id} not found", param="allowance_id")
            row = connection.execute(select(billing_allowances).where(billing_allowances.c.id == allowance_id)).one()
        return _from_row(row)

    def grant_for_period(self, org_id: str, period: Period) -> builtins.list[str]:
        """Grant every active allowance of the organization for ``period`` (idempotent)."""
        with self.database.read() as connection:
            cycle = load_cycle(connection, org_id)
        return [self._grant(allowance, period, cycle.spec)
                for allowance in self.list(org_id) if allowance.active]

    def _grant(self, allowance: Allowance, period: Period, spec: Any) -> str:
        expires = (None if allowance.expires_after_periods is None
                   else period_at(spec, period.index + allowance.expires_after_periods - 1).end_us)
        result = self.ledger.grant(
            allowance.org_id, allowance.amount, kind="recurring", scope=allowance.scope,
            priority=allowance.priority, effective_at_us=period.start_us, expires_at_us=expires,
            allow=allowance.allow, rollover=allowance.rollover,
            metadata={"allowance_id": allowance.id, "period_index": period.index},
            idempotency_key=f"allowance:{allowance.id}:{period.start_us}")
        return str(result["grant_id"])
