"""Each organization's billing cycle: stored settings, read as a :class:`CycleSpec`.

An organization without a stored cycle gets the default one (monthly on the 1st, in the
organization's own timezone, from its creation); it is written down the first time a period of
the organization is closed, so that later default changes never move closed periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from creditgate.billing.late_usage import LateUsagePolicy
from creditgate.billing.periods import CycleSpec, check_cycle
from creditgate.errors import Conflict, NotFound
from creditgate.storage.schema import orgs
from creditgate.storage.tables_billing import billing_cycles, billing_statements


@dataclass(frozen=True, slots=True)
class Cycle:
    org_id: str
    spec: CycleSpec
    late_usage: LateUsagePolicy
    stored: bool

    def to_dict(self) -> dict[str, Any]:
        from creditgate.clock import iso

        return {"org_id": self.org_id, "kind": self.spec.kind, "timezone": self.spec.timezone,
                "anchor_day": self.spec.anchor_day if self.spec.kind == "monthly" else None,
                "length_days": self.spec.length_days if self.spec.kind == "days" else None,
                "origin": iso(self.spec.origin_us), "late_grace_s": self.late_usage.grace_s,
                "late_after_grace": self.late_usage.after_grace}


def load_cycle(connection: Any, org_id: str) -> Cycle:
    row = connection.execute(select(billing_cycles).where(billing_cycles.c.org_id == org_id)).first()
    if row is not None:
        spec = CycleSpec(kind=row.kind, timezone=row.timezone, origin_us=row.origin_us,
                         anchor_day=row.anchor_day, length_days=row.length_days)
        return Cycle(org_id, spec, LateUsagePolicy(grace_s=row.late_grace_s,
                                                   after_grace=row.late_after_grace), True)
    org = connection.execute(select(orgs.c.created_at_us, orgs.c.timezone).where(orgs.c.id == org_id)).first()
    if org is None:
        raise NotFound(f"organization {org_id} not found", param="org_id")
    spec = CycleSpec(kind="monthly", timezone=org.timezone or "UTC", origin_us=org.created_at_us)
    return Cycle(org_id, spec, LateUsagePolicy(), False)


def save_cycle(connection: Any, cycle: Cycle, now_us: int) -> None:
    spec = cycle.spec
    values = {"kind": spec.kind, "anchor_day": spec.anchor_day, "length_days": spec.length_days,
              "timezone": spec.timezone, "origin_us": spec.origin_us,
              "late_grace_s": cycle.late_usage.grace_s,
              "late_after_grace": cycle.late_usage.after_grace, "updated_at_us": now_us}
    exists = connection.execute(select(billing_cycles.c.org_id)
                                .where(billing_cycles.c.org_id == cycle.org_id)).first()
    if exists:
        connection.execute(update(billing_cycles).where(billing_cycles.c.org_id == cycle.org_id).values(**values))
    else:
        connection.execute(insert(billing_cycles).values(org_id=cycle.org_id, **values))


def set_cycle(database: Any, org_id: str, *, kind: str, timezone: str | None, anchor_day: int,
              length_days: int, late_grace_s: int | None, late_after_grace: str | None,
              now_us: int) -> Cycle:
    """Set an organization's cycle. The new cycle starts now; it may only change while no period
    is closed, or else closed statements would no longer line up with the periods."""
    with database.write() as connection:
        current = load_cycle(connection, org_id)
        # Only None keeps the current value: an empty string is a bad input, refused by the checks.
        tz = current.spec.timezone if timezone is None else timezone
        check_cycle(kind, tz, anchor_day=anchor_day, length_days=length_days)
        late = LateUsagePolicy(grace_s=current.late_usage.grace_s if late_grace_s is None else late_grace_s,
                               after_grace=(current.late_usage.after_grace if late_after_grace is None
                                            else late_after_grace))
        spec = CycleSpec(kind=kind, timezone=tz, origin_us=current.spec.origin_us,
                         anchor_day=anchor_day, length_days=length_days)
        if spec != current.spec:
            closed = connection.execute(select(billing_statements.c.id)
                                        .where(billing_statements.c.org_id == org_id).limit(1)).first()
            if closed:
                raise Conflict("the cycle cannot change once a period is closed; only the late-usage "
                               "policy can", param="kind")
        cycle = Cycle(org_id, spec, late, True)
        save_cycle(connection, cycle, now_us)
        return cycle
