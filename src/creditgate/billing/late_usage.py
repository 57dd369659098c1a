"""Late usage: what happens to a usage event whose time falls in a period already closed. Pure.

The journal never books into the past (it is append-only and hash-chained, and a closed
period's statement is signed), so a late event can only be booked *now*, in the current period,
or refused. The policy, in order:

1. An event more than ``clock_skew_s`` in the future is rejected (``future``).
2. An event in a period that is still open is booked normally (``on_time``).
3. An event in a closed period that arrives within ``grace_s`` of that period's end is booked in
   the current period and flagged late (``late_in_grace``); its statement line carries the
   original time.
4. After the grace window the organization's ``after_grace`` setting decides: ``book_current``
   books it in the current period (``late_booked``), ``reject`` refuses it (``late_rejected``).

Ingestion calls :func:`decide_late_usage` before booking and maps ``accept=False`` to an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from creditgate.errors import InvalidInput

AFTER_GRACE_ACTIONS: Final = ("book_current", "reject")
GRACE_S_MAX: Final = 90 * 86_400
CLOCK_SKEW_S_DEFAULT: Final = 300
MICROS_PER_SECOND: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class LateUsagePolicy:
    grace_s: int = 3 * 86_400
    after_grace: str = "reject"
    clock_skew_s: int = CLOCK_SKEW_S_DEFAULT

    def __post_init__(self) -> None:
        if isinstance(self.grace_s, bool) or not isinstance(self.grace_s, int) or not 0 <= self.grace_s <= GRACE_S_MAX:
            raise InvalidInput(f"grace must be from 0 to {GRACE_S_MAX} seconds", param="grace_s")
        if self.after_grace not in AFTER_GRACE_ACTIONS:
            raise InvalidInput(f"after_grace must be one of {', '.join(AFTER_GRACE_ACTIONS)}",
                               param="after_grace")


@dataclass(frozen=True, slots=True)
class LateUsageDecision:
    accept: bool
    reason: str  # on_time | late_in_grace | late_booked | late_rejected | future
    late: bool
    message: str


def decide_late_usage(event_at_us: int, now_us: int, closed_through_us: int | None,
                      policy: LateUsagePolicy) -> LateUsageDecision:
    """Decide for one event. ``closed_through_us`` is the end of the last closed period (None
    when no period of the organization is closed yet)."""
    if event_at_us > now_us + policy.clock_skew_s * MICROS_PER_SECOND:
        return LateUsageDecision(False, "future", False, "usage time is in the future")
    if closed_through_us is None or event_at_us >= closed_through_us:
        return LateUsageDecision(True, "on_time", False, "booked in its own period")
    if now_us - closed_through_us <= policy.grace_s * MICROS_PER_SECOND:
        return LateUsageDecision(True, "late_in_grace", True,
                                 "its period is closed; booked in the current period (grace window)")
    if policy.after_grace == "book_current":
        return LateUsageDecision(True, "late_booked", True,
                                 "its period is closed; booked in the current period")
    return LateUsageDecision(False, "late_rejected", True,
                             "its period is closed and the grace window has passed")
