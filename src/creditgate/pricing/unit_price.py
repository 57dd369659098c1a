"""A price per N units of a meter, in credits (rate cards) or money (provider sheets)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import MICROS_PER_UNIT
from creditgate.pricing._exact import (
    Ratio,
    decimal_ratio,
    format_decimal,
    multiply,
    parse_decimal,
    parse_per,
    ratio,
    ratio_to_decimal,
)

# "2.5", "2.5/1M", "2.5 per 1M tokens", "0.04 per image".
_PRICE_TEXT: Final = re.compile(
    r"^\s*(?P<amount>[+-]?(?:[0-9][0-9._eE+-]*|\.[0-9]+))\s*"
    r"(?:(?:/|\bper\b)\s*(?P<per>[0-9][0-9_]*[kKmMbB]?)?\s*(?P<unit>[A-Za-z_]+)?)?\s*$")
# Keys accepted for the amount in the mapping form {"credits": "2.5", "per": "1M"}.
_AMOUNT_KEYS: Final = ("credits", "price", "amount")


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """``amount`` (an exact decimal) per ``per`` units, e.g. 2.5 per 1,000,000 tokens."""

    amount: Decimal
    per: int

    def __post_init__(self) -> None:
        assert self.amount.is_finite() and self.amount >= 0, self.amount
        assert isinstance(self.per, int) and self.per >= 1, self.per

    def per_unit(self) -> Ratio:
        """The exact price of one unit."""
        numerator, denominator = decimal_ratio(self.amount)
        return ratio(numerator, denominator * self.per)

    def micros_per_unit(self) -> Ratio:
        """The exact price of one unit in micro-units (the sub-unit of every amount)."""
        return multiply(self.per_unit(), (MICROS_PER_UNIT, 1))

    def normalized(self, per: int) -> UnitPrice:
        """The same price quoted per ``per`` units, or unchanged if that is not a finite decimal."""
        amount = ratio_to_decimal(multiply(self.per_unit(), (per, 1)))
        return self if amount is None else UnitPrice(amount, per)

    def scaled(self, factor: Ratio) -> UnitPrice | None:
        """This price times ``factor`` (a conversion rate), or None if that does not terminate."""
        amount = ratio_to_decimal(multiply(decimal_ratio(self.amount), factor))
        return None if amount is None else UnitPrice(amount, self.per)

    def describe(self, unit: str) -> str:
        return f"{format_decimal(self.amount)} per {format_count(self.per)} {unit}s"

    def to_text(self) -> str:
        """The compact form accepted by :meth:`parse`: ``"2.5/1M"``."""
        return f"{format_decimal(self.amount)}/{format_count(self.per)}"

    @classmethod
    def parse(cls, value: Any, *, field: str, per_default: int, unit: str | None = None) -> UnitPrice:
        """Read ``"2.5/1M"``, ``"2.5 per 1M tokens"``, ``{"credits": "2.5", "per": "1M"}``, ``"2.5"``.

        A bare number is a price per ``per_default`` units (the meter's usual basis). A unit word,
        when given, must be the meter's ``unit`` (singular or plural).
        """
        if isinstance(value, dict):
            unknown = set(value) - {*_AMOUNT_KEYS, "per", "unit"}
            if unknown:
                raise InvalidInput(f"{field}: unknown key {min(unknown)!r} (use credits/price, "
                                   f"per and unit)", param=field)
            if "unit" in value:
                check_unit(str(value["unit"]), unit, field=f"{field}.unit")
            keys = [key for key in _AMOUNT_KEYS if key in value]
            if len(keys) != 1:
                raise InvalidInput(f"{field}: give exactly one of credits, price or amount",
                                   param=field)
            amount = parse_decimal(value[keys[0]], field=f"{field}.{keys[0]}")
            per = parse_per(value.get("per", per_default), field=f"{field}.per")
            return cls(amount, per)
        if isinstance(value, str):
            match = _PRICE_TEXT.match(value)
            if match is None:
                raise InvalidInput(f"{field}: {value!r} is not a price such as \"2.5/1M\"",
                                   param=field)
            amount = parse_decimal(match.group("amount"), field=field)
            per_text, unit_text = match.group("per"), match.group("unit")
            if unit_text is not None:
                check_unit(unit_text, unit, field=field)
                per = parse_per(per_text, field=field) if per_text else 1
            else:
                per = parse_per(per_text, field=field) if per_text else per_default
            return cls(amount, per)
        return cls(parse_decimal(value, field=field), per_default)


def check_unit(word: str, unit: str | None, *, field: str) -> None:
    """Refuse a unit word that is not the meter's unit: "per 1M furlongs" is a mistake."""
    normalized = word.strip().lower()
    if unit is not None and normalized in (unit, f"{unit}s"):
        return
    expected = f" (expected {unit}s)" if unit else ""
    raise InvalidInput(f"{field}: unknown unit {word!r}{expected}", param=field)


def format_count(count: int) -> str:
    """``1000000`` -> ``"1M"``, ``1000`` -> ``"1K"``, other counts as digits."""
    for divisor, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if count >= divisor and count % divisor == 0:
            return f"{count // divisor}{suffix}"
    return str(count)
