"""Budget periods: pure date arithmetic in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from creditgate.clock import from_us, to_us
from creditgate.ledger.records import Budget

BUDGET_PERIODS: Final = ("day", "month")
BUDGET_MODES: Final = ("hard", "soft", "off")


def subjects_of(key_id: str | None, project_id: str | None) -> tuple[str, ...]:
    """The budgets that spending by a key counts against: the key's own and its project's. The
    gateway's requests, REST holds and usage events all count this way."""
    subjects = [f"key:{key_id}"] if key_id else []
    if project_id:
        subjects.append(f"project:{project_id}")
    return tuple(subjects)


def period_start_us(period: str, now_us: int) -> int:
    moment = from_us(now_us)
    if period == "day":
        return to_us(datetime(moment.year, moment.month, moment.day, tzinfo=UTC))
    assert period == "month", period
    return to_us(datetime(moment.year, moment.month, 1, tzinfo=UTC))


def current(budget: Budget, now_us: int) -> Budget:
    """The budget as of ``now_us``: a new period starts with nothing spent (holds stay held)."""
    start = period_start_us(budget.period, now_us)
    if start > budget.period_start_us:
        return budget._replace(spent=0, period_start_us=start)
    return budget
