"""Billing cycles and their periods: pure calendar arithmetic, no I/O.

A cycle is either *monthly* (a period starts at local midnight on the anchor day of every month;
an anchor past a short month's end falls on that month's last day) or *days* (a period every
``length_days`` days from local midnight of the cycle's origin date). Boundaries are computed in
the organization's timezone with :mod:`zoneinfo`, so a period boundary stays at local midnight
across daylight-saving changes. Period 0 is the period that contains the cycle's origin.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from creditgate.clock import from_us, to_us, zone
from creditgate.errors import InvalidInput

CYCLE_KINDS: Final = ("monthly", "days")
ANCHOR_DAY_MAX: Final = 31
LENGTH_DAYS_MAX: Final = 366


@dataclass(frozen=True, slots=True)
class CycleSpec:
    kind: str
    timezone: str
    origin_us: int
    anchor_day: int = 1
    length_days: int = 30


@dataclass(frozen=True, slots=True)
class Period:
    index: int
    start_us: int
    end_us: int

    def contains(self, instant_us: int) -> bool:
        return self.start_us <= instant_us < self.end_us


def check_cycle(kind: str, timezone: str, *, anchor_day: int = 1, length_days: int = 30) -> None:
    """Refuse a cycle that cannot be computed; raises InvalidInput naming the bad field."""
    if kind not in CYCLE_KINDS:
        raise InvalidInput(f"cycle kind must be one of {', '.join(CYCLE_KINDS)}", param="kind")
    zone(timezone)
    if kind == "monthly" and (isinstance(anchor_day, bool) or not 1 <= anchor_day <= ANCHOR_DAY_MAX):
        raise InvalidInput(f"anchor_day must be from 1 to {ANCHOR_DAY_MAX}", param="anchor_day")
    if kind == "days" and (isinstance(length_days, bool) or not 1 <= length_days <= LENGTH_DAYS_MAX):
        raise InvalidInput(f"length_days must be from 1 to {LENGTH_DAYS_MAX}", param="length_days")


def _local_midnight_us(day: date, tz: ZoneInfo) -> int:
    return to_us(datetime(day.year, day.month, day.day, tzinfo=tz))


def _local_date(instant_us: int, tz: ZoneInfo) -> date:
    return from_us(instant_us).astimezone(tz).date()


def _month_boundary(year: int, month: int, anchor_day: int, tz: ZoneInfo) -> int:
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return _local_midnight_us(date(year, month, day), tz)


def _shift_month(year: int, month: int, months: int) -> tuple[int, int]:
    total = year * 12 + (month - 1) + months
    return total // 12, total % 12 + 1


def _first_month(spec: CycleSpec, tz: ZoneInfo) -> tuple[int, int]:
    """The (year, month) whose anchor boundary starts period 0."""
    origin = _local_date(spec.origin_us, tz)
    if spec.origin_us >= _month_boundary(origin.year, origin.month, spec.anchor_day, tz):
        return origin.year, origin.month
    return _shift_month(origin.year, origin.month, -1)


def period_at(spec: CycleSpec, index: int) -> Period:
    """Period number ``index`` (0 contains the origin)."""
    assert index >= 0, index
    tz = zone(spec.timezone)
    if spec.kind == "monthly":
        year, month = _shift_month(*_first_month(spec, tz), index)
        next_year, next_month = _shift_month(year, month, 1)
        return Period(index, _month_boundary(year, month, spec.anchor_day, tz),
                      _month_boundary(next_year, next_month, spec.anchor_day, tz))
    first = _local_date(spec.origin_us, tz)
    start = first + timedelta(days=index * spec.length_days)
    return Period(index, _local_midnight_us(start, tz),
                  _local_midnight_us(start + timedelta(days=spec.length_days), tz))


def period_containing(spec: CycleSpec, instant_us: int) -> Period | None:
    """The period holding ``instant_us``, or None before the cycle's first period."""
    tz = zone(spec.timezone)
    if spec.kind == "monthly":
        first_year, first_month = _first_month(spec, tz)
        local = _local_date(instant_us, tz)
        guess = (local.year - first_year) * 12 + (local.month - first_month)
    else:
        guess = (_local_date(instant_us, tz) - _local_date(spec.origin_us, tz)).days // spec.length_days
    guess = max(guess, 0)
    # The guess is off by at most one period (the anchor may fall later in the month).
    for index in (guess - 1, guess, guess + 1):
        if index >= 0 and period_at(spec, index).contains(instant_us):
            return period_at(spec, index)
    first = period_at(spec, 0)
    assert instant_us < first.start_us, (instant_us, spec)
    return None


def period_starting_at(spec: CycleSpec, start_us: int) -> Period:
    """The period that starts exactly at ``start_us``; InvalidInput when none does."""
    found = period_containing(spec, start_us)
    if found is None or found.start_us != start_us:
        raise InvalidInput("no billing period of this organization starts at that time",
                           param="period_start")
    return found


def periods_ended_by(spec: CycleSpec, now_us: int, *, after_index: int = -1,
                     count_max: int) -> list[Period]:
    """Periods after ``after_index`` that ended at or before ``now_us``, oldest first, at most
    ``count_max`` of them (a close job catching up many periods does it in bounded steps)."""
    found: list[Period] = []
    index = after_index + 1
    while len(found) < count_max:
        period = period_at(spec, index)
        if period.end_us > now_us:
            break
        found.append(period)
        index += 1
    return found


def label(period: Period, timezone: str) -> str:
    """Local dates, end exclusive: ``2026-01-01..2026-02-01``."""
    tz = zone(timezone)
    return f"{_local_date(period.start_us, tz).isoformat()}..{_local_date(period.end_us, tz).isoformat()}"
