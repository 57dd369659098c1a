"""Budget periods: pure date arithmetic in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from creditgate.clock import from_us, to_us
from creditgate.ledger.records import Budget

BUDGET_PERIODS: Final = ("day", "month")
BUDGET_MODES: Final = ("hard", "soft", "off")


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
