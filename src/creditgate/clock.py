"""Time as an injectable dependency, so that tests move time instead of sleeping.

Instants are integer microseconds since the Unix epoch (UTC) inside the system: they compare and
store the same way on SQLite and PostgreSQL. Datetimes appear only at the edges.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MICROS_PER_SECOND = 1_000_000
TIMEZONE_LENGTH_MAX: Final = 64
# The instants a caller may hand in, inclusive: 1970-01-01T00:00:00Z to 8999-12-31T23:59:59.999999Z.
# datetime stops at year 9999, and the system steps past a stored instant (billing periods of up to
# a year, rollover expiries a dozen periods on, forecast horizons, timezone shifts), so the last
# instant keeps centuries of headroom rather than sitting at the edge. Nothing predates the epoch.
INSTANT_US_MIN: Final = 0
INSTANT_US_MAX: Final = (datetime(9000, 1, 1, tzinfo=UTC)
                          - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) - 1


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class ManualClock:
    """A clock that only moves when told to. Thread safe."""

    def __init__(self, start_us: int | datetime = 1_767_225_600 * MICROS_PER_SECOND) -> None:
        self._lock = threading.Lock()
        self._now_us = start_us if isinstance(start_us, int) else to_us(start_us)

    def now_us(self) -> int:
        with self._lock:
            return self._now_us

    def advance(self, *, seconds: float = 0, days: int = 0, micros: int = 0) -> int:
        delta = int(seconds * MICROS_PER_SECOND) + days * 86_400 * MICROS_PER_SECOND + micros
        assert delta >= 0, "time only moves forward"
        with self._lock:
            self._now_us += delta
            return self._now_us

    def set(self, when: int | datetime) -> None:
        value = when if isinstance(when, int) else to_us(when)
        with self._lock:
            assert value >= self._now_us, "time only moves forward"
            self._now_us = value


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("datetime must carry a timezone")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_us(micros: int) -> datetime:
    seconds, rest = divmod(micros, MICROS_PER_SECOND)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest)


def iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    return from_us(micros).isoformat().replace("+00:00", "Z")


def parse_iso(text: str, *, field: str = "time") -> int:
    """Parse an ISO 8601 timestamp with a timezone into epoch micros; naive times are refused, and
    so are instants outside INSTANT_US_MIN..INSTANT_US_MAX."""
    from creditgate.errors import InvalidInput

    if not isinstance(text, str):
        raise InvalidInput(f"{field}: expected an ISO 8601 timestamp string", param=field)
    try:
        moment = datetime.fromisoformat(text.strip())  # 3.11 reads "Z" itself
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not an ISO 8601 timestamp", param=field) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{field}: {text!r} has no timezone (add Z or +00:00)", param=field)
    # Checked in UTC: a date that is valid as written can leave datetime's range once its offset
    # is applied, and would then fail every later read of the stored value.
    micros = to_us(moment)
    if not INSTANT_US_MIN <= micros <= INSTANT_US_MAX:
        raise InvalidInput(f"{field}: {text!r} is out of range (from {iso(INSTANT_US_MIN)} "
                           f"to {iso(INSTANT_US_MAX)})", param=field)
    return micros


def zone(timezone: str) -> ZoneInfo:
    """An IANA time zone by name (organizations' and billing cycles' zones)."""
    from creditgate.errors import InvalidInput

    if not isinstance(timezone, str) or not 0 < len(timezone) <= TIMEZONE_LENGTH_MAX:
        raise InvalidInput("timezone must be an IANA name such as Europe/Paris", param="timezone")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown timezone {timezone!r} (use an IANA name such as Europe/Paris)",
                           param="timezone") from None
