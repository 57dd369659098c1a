"""Money to credits at a configurable rate, for example 1 USD = 100 credits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.credits import AmountError, divide_round_half_up, parse_amount
from creditgate.pricing._exact import Ratio, decimal_ratio, format_decimal, multiply, parse_decimal

_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
# 1 unit of money buys at most this many credits; a larger rate is a typo.
CREDITS_PER_UNIT_MAX: Final = 10**9


def check_currency(value: Any, *, field: str = "currency") -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value.strip()):
        raise InvalidInput(f"{field}: must be a three-letter ISO 4217 code such as USD, got "
                           f"{value!r}", param=field)
    return value.strip()


def amount_micros(value: Any, *, field: str, allow_zero: bool = True) -> int:
    """Parse a money or credit amount (decimal text, at most 6 decimals) into micro-units."""
    try:
        return parse_amount(value, field=field, allow_zero=allow_zero)
    except AmountError as error:
        raise InvalidInput(str(error), param=field) from None


@dataclass(frozen=True, slots=True)
class ConversionRate:
    currency: str
    credits_per_unit: Decimal

    def __post_init__(self) -> None:
        check_currency(self.currency)
        parse_decimal(self.credits_per_unit, field="credits_per_unit", allow_zero=False,
                      maximum=CREDITS_PER_UNIT_MAX)

    @property
    def ratio(self) -> Ratio:
        return decimal_ratio(self.credits_per_unit)

    def money_to_credits(self, money_micros: int) -> int:
        """Micro-units of money to micro-credits, rounded once, half up."""
        numerator, denominator = multiply((money_micros, 1), self.ratio)
        return divide_round_half_up(numerator, denominator)

    def credits_to_money(self, credit_micros: int) -> int:
        numerator, denominator = self.ratio
        return divide_round_half_up(credit_micros * denominator, numerator)

    def describe(self) -> str:
        return f"1 {self.currency} = {format_decimal(self.credits_per_unit)} credits"

    def to_dict(self) -> dict[str, str]:
        return {"currency": self.currency, "credits_per_unit": format_decimal(self.credits_per_unit)}

    @classmethod
    def parse(cls, data: Any, *, field: str = "conversion") -> ConversionRate:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{field}: expected currency and credits_per_unit", param=field)
        return cls(check_currency(data.get("currency", "USD"), field=f"{field}.currency"),
                   parse_decimal(data.get("credits_per_unit"), field=f"{field}.credits_per_unit",
                                 allow_zero=False, maximum=CREDITS_PER_UNIT_MAX))


DEFAULT_CONVERSION: Final = ConversionRate("USD", Decimal(100))


class Conversions:
    """Rates by currency; a price in a currency without a rate cannot be turned into credits."""

    __slots__ = ("_rates",)

    def __init__(self, rates: Iterable[ConversionRate] = (DEFAULT_CONVERSION,)) -> None:
        self._rates = {rate.currency: rate for rate in rates}

    def rate(self, currency: str) -> ConversionRate:
        found = self._rates.get(currency)
        if found is None:
            raise NotFound(f"no conversion rate from {currency} to credits (known: "
                           f"{', '.join(sorted(self._rates)) or 'none'})", param="currency")
        return found

    def __iter__(self) -> Any:
        return iter(self._rates.values())
