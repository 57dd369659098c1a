"""Exact credit and money amounts.

One sub-unit everywhere: an amount is a Python ``int`` counting **micro-units** (1e-6) of a
credit (or, for money, of the currency). At 1 credit = $0.01 a price of $0.02 per 1M tokens is
2 credits per 1M tokens, i.e. exactly 2 micro-credits per token, so even the cheapest published
per-token prices are representable without rounding.

One rounding rule everywhere: when a computation leaves a fraction of a sub-unit (a price times
a quantity divided by a ``per`` count, a cost basis pro-rated over credits), the result is rounded
**half up** (away from zero for the halves; amounts here are never negative) to the nearest
micro-unit, once per charge, by :func:`divide_round_half_up`. Nothing else rounds.
"""

from __future__ import annotations

import re
from typing import Final

MICROS_PER_UNIT: Final = 1_000_000
DECIMALS_MAX: Final = 6
# The largest amount accepted anywhere: 10^12 credits. In micro-units that is 10^18, which
# still fits a signed 64-bit column (9.22e18) with room for sums of a few such amounts.
UNITS_MAX: Final = 10**12
MICROS_MAX: Final = UNITS_MAX * MICROS_PER_UNIT

# ASCII digits only: ``\d`` alone would also accept other scripts' digits ("١٢" is 12 to int()).
_DECIMAL_PATTERN: Final = re.compile(r"^(?P<sign>[-+]?)(?P<whole>\d+)(?:\.(?P<fraction>\d+))?$", re.ASCII)
# Whole parts longer than this are above UNITS_MAX; checking the length first also keeps int()
# away from strings beyond Python's 4300-digit conversion limit (a plain ValueError).
_WHOLE_DIGITS_MAX: Final = len(str(UNITS_MAX))
# Echo at most this much of a rejected input in an error message (one readable line).
_SHOWN_CHARS_MAX: Final = 40


class AmountError(ValueError):
    """A credit or money string that is not a valid amount; the message says why."""


def parse_amount(text: str | int, *, field: str = "amount", allow_negative: bool = False,
                 allow_zero: bool = True) -> int:
    """Parse a decimal string such as ``"12.5"`` into micro-units.

    Integers are accepted as whole units. Floats are refused on purpose: a float has already
    lost the exact value the caller meant.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise AmountError(f"{field}: expected a decimal string such as \"12.5\", got {type(text).__name__}")
    if isinstance(text, int):
        text = str(text)
    stripped = text.strip()
    match = _DECIMAL_PATTERN.match(stripped)
    if match is None:
        raise AmountError(f"{field}: {_shown(text)} is not a decimal number such as \"12.5\"")
    fraction = match.group("fraction") or ""
    if len(fraction) > DECIMALS_MAX:
        raise AmountError(f"{field}: {_shown(text)} has more than {DECIMALS_MAX} decimals")
    whole_digits = match.group("whole").lstrip("0") or "0"
    if len(whole_digits) > _WHOLE_DIGITS_MAX:
        raise AmountError(f"{field}: {_shown(text)} is above the maximum of {UNITS_MAX}")
    whole = int(whole_digits)
    if whole > UNITS_MAX:
        raise AmountError(f"{field}: {_shown(text)} is above the maximum of {UNITS_MAX}")
    micros = whole * MICROS_PER_UNIT + int(fraction.ljust(DECIMALS_MAX, "0") or "0")
    if micros > MICROS_MAX:
        raise AmountError(f"{field}: {_shown(text)} is above the maximum of {UNITS_MAX}")
    if match.group("sign") == "-" and micros != 0:
        if not allow_negative:
            raise AmountError(f"{field}: {_shown(text)} must not be negative")
        micros = -micros
    if micros == 0 and not allow_zero:
        raise AmountError(f"{field}: must be greater than zero")
    return micros


def _shown(text: str) -> str:
    if len(text) <= _SHOWN_CHARS_MAX:
        return repr(text)
    return repr(text[:_SHOWN_CHARS_MAX]) + f"... ({len(text)} characters)"


def format_amount(micros: int) -> str:
    """Format micro-units as the shortest exact decimal string: 12_500_000 -> ``"12.5"``."""
    assert isinstance(micros, int) and not isinstance(micros, bool), micros
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def divide_round_half_up(numerator: int, denominator: int) -> int:
    """The one place where division rounds: ``numerator / denominator`` to the nearest int, halves up."""
    assert denominator > 0, denominator
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((2 * -numerator + denominator) // (2 * denominator))


def check_micros(micros: int, *, field: str = "amount", allow_zero: bool = True) -> int:
    """Validate an amount that is already in micro-units (from a library caller)."""
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise AmountError(f"{field}: expected an integer number of micro-units, got {type(micros).__name__}")
    if micros < 0:
        raise AmountError(f"{field}: must not be negative")
    if micros == 0 and not allow_zero:
        raise AmountError(f"{field}: must be greater than zero")
    if micros > MICROS_MAX:
        raise AmountError(f"{field}: above the maximum of {UNITS_MAX}")
    return micros
