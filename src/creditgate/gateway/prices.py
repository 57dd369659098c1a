"""A deployment's own price list, compiled to integers once.

``{"input_tokens": "150", "output_tokens": "600", "per": 1000000}`` means 150 credits per million
input tokens. Every meter's price is kept as micro-credits per ``per`` units, so a charge is a
few integer multiply-adds and one division that rounds, by the one rounding rule
(:func:`~creditgate.ledger.credits.divide_round_half_up`), once per charge.

A charge is monotone in every quantity, so pricing the most a request can use gives an upper
bound of what the same request can cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import AmountError, divide_round_half_up, format_amount, parse_amount

METERS: Final = ("input_tokens", "output_tokens", "requests", "items", "compute_ms")
PER_MAX: Final = 10**12


@dataclass(frozen=True, slots=True)
class PriceList:
    per: int
    # micro-credits per `per` units of each meter; meters not listed are free.
    micros: tuple[tuple[str, int], ...]

    def cost(self, usage: Mapping[str, int]) -> int:
        """The charge in micro-credits for metered ``usage``, rounded once."""
        total = 0
        for meter, price in self.micros:
            quantity = usage.get(meter, 0)
            if quantity:
                total += price * quantity
        return divide_round_half_up(total, self.per)

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {meter: format_amount(price) for meter, price in self.micros}
        shown["per"] = self.per
        return shown

    def price(self, meter: str) -> int:
        return dict(self.micros).get(meter, 0)


def parse_prices(data: Any, *, field: str = "prices") -> PriceList:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{field} must be an object such as "
                           '{"input_tokens": "150", "output_tokens": "600", "per": 1000000}',
                           param=field)
    per = data.get("per", 1)
    if isinstance(per, bool) or not isinstance(per, int) or not 1 <= per <= PER_MAX:
        raise InvalidInput(f"{field}.per must be an integer from 1 to {PER_MAX}", param=f"{field}.per")
    micros = []
    for meter, text in data.items():
        if meter == "per":
            continue
        if meter not in METERS:
            raise InvalidInput(f"{field}: unknown meter {meter!r}; known: {', '.join(METERS)}",
                               param=f"{field}.{meter}")
        try:
            micros.append((meter, parse_amount(text, field=f"{field}.{meter}")))
        except AmountError as error:
            raise InvalidInput(str(error), param=f"{field}.{meter}") from None
    return PriceList(per=per, micros=tuple(sorted(micros)))
