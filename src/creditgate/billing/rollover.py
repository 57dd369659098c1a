"""Rollover policies: how much of an expiring grant carries into the next period. Pure.

A policy is stored as JSON on the grant (``grants.rollover``) or on the bundle, allowance or
trial that produced it::

    {"policy": "capped", "cap_amount": "50", "cap_percent": "25",
     "expires_after_periods": 1, "priority": 50, "roll_again": false}

- ``none``: use it or lose it (also what a grant without a policy gets).
- ``full``: every free credit rolls over.
- ``capped``: at most ``cap_amount`` credits and/or at most ``cap_percent`` of the grant's
  *original* amount; with both, the smaller cap applies. The percentage cap is rounded by the one
  rounding rule (half up to the micro-credit).

The rollover grant expires at the end of the period ``expires_after_periods`` after the closed
one (1 = the end of the next period), takes ``priority`` (default: the origin's), and is itself
rolled over again only when ``roll_again`` is true (it then carries the same policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import AmountError, divide_round_half_up, format_amount, parse_amount

ROLLOVER_POLICIES: Final = ("none", "full", "capped")
EXPIRES_AFTER_PERIODS_MAX: Final = 12
PERCENT_MICROS_MAX: Final = 100 * 1_000_000
_FIELDS: Final = {"policy", "cap_amount", "cap_percent", "expires_after_periods", "priority", "roll_again"}


@dataclass(frozen=True, slots=True)
class RolloverPolicy:
    policy: str = "none"
    cap_amount: int | None = None
    # Percent in micro-percent (25% = 25_000_000) so that "12.5" stays exact.
    cap_percent_micros: int | None = None
    expires_after_periods: int = 1
    priority: int | None = None
    roll_again: bool = False

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"policy": self.policy}
        if self.cap_amount is not None:
            value["cap_amount"] = format_amount(self.cap_amount)
        if self.cap_percent_micros is not None:
            value["cap_percent"] = format_amount(self.cap_percent_micros)
        if self.policy != "none":
            value["expires_after_periods"] = self.expires_after_periods
            value["roll_again"] = self.roll_again
            if self.priority is not None:
                value["priority"] = self.priority
        return value


NO_ROLLOVER: Final = RolloverPolicy()


def parse_policy(value: str | dict[str, Any] | None) -> RolloverPolicy:
    """Read a policy from its JSON (text or dict); InvalidInput says what is wrong."""
    if value is None:
        return NO_ROLLOVER
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidInput("rollover must be a JSON object", param="rollover") from None
    if not isinstance(value, dict):
        raise InvalidInput("rollover must be a JSON object", param="rollover")
    value = _from_bundle_form(value)
    unknown = set(value) - _FIELDS
    if unknown:
        raise InvalidInput(f"unknown rollover field(s): {', '.join(sorted(unknown))}", param="rollover")
    policy = value.get("policy", "none")
    if policy not in ROLLOVER_POLICIES:
        raise InvalidInput(f"rollover policy must be one of {', '.join(ROLLOVER_POLICIES)}",
                           param="rollover.policy")
    cap_amount = _amount(value.get("cap_amount"), "rollover.cap_amount")
    cap_percent = _amount(value.get("cap_percent"), "rollover.cap_percent")
    if cap_percent is not None and cap_percent > PERCENT_MICROS_MAX:
        raise InvalidInput("rollover cap_percent must be at most 100", param="rollover.cap_percent")
    if policy == "capped" and cap_amount is None and cap_percent is None:
        raise InvalidInput("a capped rollover needs cap_amount and/or cap_percent", param="rollover")
    if policy != "capped" and (cap_amount is not None or cap_percent is not None):
        raise InvalidInput("caps only apply to the capped policy", param="rollover.policy")
    periods = value.get("expires_after_periods", 1)
    if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= EXPIRES_AFTER_PERIODS_MAX:
        raise InvalidInput(f"rollover expires_after_periods must be from 1 to {EXPIRES_AFTER_PERIODS_MAX}",
                           param="rollover.expires_after_periods")
    priority = value.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not 0 <= priority <= 1_000_000):
        raise InvalidInput("rollover priority must be an integer from 0 to 1000000", param="rollover.priority")
    roll_again = value.get("roll_again", False)
    if not isinstance(roll_again, bool):
        raise InvalidInput("rollover roll_again must be true or false", param="rollover.roll_again")
    return RolloverPolicy(policy=policy, cap_amount=cap_amount, cap_percent_micros=cap_percent,
                          expires_after_periods=periods, priority=priority, roll_again=roll_again)


def _from_bundle_form(value: dict[str, Any]) -> dict[str, Any]:
    """Accept the pricing bundles' form too (``{"kind": "capped_percent", "cap_percent": "20"}``,
    see ``creditgate.pricing.bundles.RolloverPolicy.to_dict``), which purchased grants carry."""
    if "kind" not in value or "policy" in value:
        return value
    rest = {key: item for key, item in value.items() if key not in ("kind", "cap_credits")}
    kind = value["kind"]
    if kind in ("capped_amount", "capped_percent"):
        rest["policy"] = "capped"
        if "cap_credits" in value:
            rest["cap_amount"] = value["cap_credits"]
    else:
        rest["policy"] = kind
    return rest


def _amount(value: Any, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_amount(value, field=field)
    except AmountError as error:
        raise InvalidInput(str(error), param=field) from None


def rolled_amount(policy: RolloverPolicy, original_amount: int, free: int) -> int:
    """Credits that roll over from a grant of ``original_amount`` with ``free`` credits left."""
    assert original_amount > 0 and free >= 0
    if policy.policy == "none" or free == 0:
        return 0
    rolled = free
    if policy.cap_amount is not None:
        rolled = min(rolled, policy.cap_amount)
    if policy.cap_percent_micros is not None:
        rolled = min(rolled, divide_round_half_up(original_amount * policy.cap_percent_micros,
                                                  PERCENT_MICROS_MAX))
    return rolled


def next_policy(policy: RolloverPolicy) -> RolloverPolicy:
    """The policy a rollover grant carries: the same one only when it says ``roll_again``."""
    return policy if policy.roll_again else NO_ROLLOVER
