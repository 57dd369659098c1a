"""parse_iso refuses instants outside the supported range, so nothing unrepresentable is stored.

A timestamp can parse (a valid date plus an offset) yet land outside years 1..9999 once in UTC,
and every later read (iso, from_us, billing periods) would then fail on the stored value.
"""

from __future__ import annotations

import pytest

from creditgate import clock
from creditgate.billing.periods import LENGTH_DAYS_MAX, CycleSpec, period_at, period_containing
from creditgate.billing.rollover import EXPIRES_AFTER_PERIODS_MAX
from creditgate.clock import from_us, iso, parse_iso
from creditgate.errors import InvalidInput

FIRST = "1970-01-01T00:00:00Z"
LAST = "8999-12-31T23:59:59.999999Z"

OUT_OF_RANGE = {
    "year 10000 in UTC": "9999-12-31T23:59:59-12:00",
    "year 0 in UTC": "0001-01-01T00:00:00+14:00",
    "far future in UTC": "9999-12-31T23:59:59Z",
    "just after the last": "9000-01-01T00:00:00Z",
    "just before the first": "1969-12-31T23:59:59.999999Z",
    "before the first by an offset": "1970-01-01T00:00:00+00:01",
}


@pytest.mark.parametrize("text", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_out_of_range_instants_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_iso(text, field="expires_at")
    assert raised.value.param == "expires_at"
    assert raised.value.message.startswith("expires_at: ")
    assert FIRST in raised.value.message and LAST in raised.value.message


def test_the_bounds_themselves_are_accepted_and_round_trip() -> None:
    assert parse_iso(FIRST) == clock.INSTANT_US_MIN == 0
    assert parse_iso(LAST) == clock.INSTANT_US_MAX
    assert iso(clock.INSTANT_US_MIN) == FIRST
    assert iso(clock.INSTANT_US_MAX) == LAST
    assert parse_iso("9000-01-01T00:00:00+00:01") == clock.INSTANT_US_MAX - 60 * 1_000_000 + 1


@pytest.mark.parametrize("timezone", ["Pacific/Kiritimati", "Etc/GMT+12", "UTC"])
def test_period_arithmetic_past_the_last_instant_stays_representable(timezone: str) -> None:
    """The bound leaves headroom: closing a period that holds the last instant looks at the
    following EXPIRES_AFTER_PERIODS_MAX periods (rollover expiries) in the org's timezone."""
    for spec in (CycleSpec("monthly", timezone, origin_us=0, anchor_day=31),
                 CycleSpec("days", timezone, origin_us=0, length_days=LENGTH_DAYS_MAX)):
        period = period_containing(spec, clock.INSTANT_US_MAX)
        assert period is not None and period.contains(clock.INSTANT_US_MAX)
        later = period_at(spec, period.index + EXPIRES_AFTER_PERIODS_MAX + 1)
        assert from_us(later.end_us).year < 10_000
