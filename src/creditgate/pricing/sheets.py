"""Provider price sheets: what providers charge in money, normalized to one basis.

Every imported price is put on its meter's basis: money per 1M tokens for token meters, and per
image, per second or per character for those meters, which stay in their own units rather than
being guessed into tokens. :meth:`SheetEntry.credit_prices` gives the same prices in credits at a
conversion rate, and :func:`sheet_to_rate_card` turns a sheet into a rate card.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from creditgate.errors import InvalidInput, NotFound
from creditgate.pricing._exact import decimal_ratio, format_decimal, multiply, ratio
from creditgate.pricing.conversion import ConversionRate, check_currency
from creditgate.pricing.meters import DEFAULT_METERS, MeterRegistry
from creditgate.pricing.rate_cards import (
    LongContextTier,
    ModelRate,
    RateCard,
    RateCardVersion,
    check_long_context,
)
from creditgate.pricing.unit_price import UnitPrice

SHEET_ENTRIES_MAX: Final = 100_000
STORE_FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class SheetEntry:
    model: str
    provider: str
    mode: str
    currency: str
    prices: Mapping[str, UnitPrice]  # money per the meter's basis
    long_context: tuple[LongContextTier, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))

    def credit_prices(self, conversion: ConversionRate) -> dict[str, UnitPrice]:
        return {meter: _convert(price, conversion) for meter, price in self.prices.items()}

    def credit_long_context(self, conversion: ConversionRate) -> tuple[LongContextTier, ...]:
        return tuple(LongContextTier(tier.above_input_tokens,
                                     {m: _convert(p, conversion) for m, p in tier.prices.items()})
                     for tier in self.long_context)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "provider": self.provider, "mode": self.mode,
            "currency": self.currency,
            "prices": {meter: price.to_text() for meter, price in self.prices.items()},
            "long_context": [{"above_input_tokens": tier.above_input_tokens,
                              "prices": {m: p.to_text() for m, p in tier.prices.items()}}
                             for tier in self.long_context],
            "source": self.source, "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, registry: MeterRegistry = DEFAULT_METERS,
                  field: str = "entry") -> SheetEntry:
        def prices(raw: Mapping[str, Any], where: str) -> dict[str, UnitPrice]:
            return {m: UnitPrice.parse(p, field=f"{where}.{m}",
                                       per_default=registry.get(m, field=f"{where}.{m}").per_default)
                    for m, p in raw.items()}
        try:
            return cls(
                model=str(data["model"]), provider=str(data["provider"]), mode=str(data["mode"]),
                currency=check_currency(data["currency"], field=f"{field}.currency"),
                prices=prices(data["prices"], f"{field}.prices"),
                long_context=tuple(LongContextTier(int(tier["above_input_tokens"]),
                                                   prices(tier["prices"], f"{field}.long_context"))
                                   for tier in data.get("long_context", ())),
                source=str(data.get("source", "")), notes=tuple(data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInput(f"{field}: malformed stored entry ({error})", param=field) from None


def _convert(price: UnitPrice, conversion: ConversionRate) -> UnitPrice:
    converted = price.scaled(conversion.ratio)
    # A decimal times a decimal always terminates.
    assert converted is not None, (price, conversion)
    return converted


@dataclass(frozen=True, slots=True)
class SkippedField:
    """A recognized provider field that has no meter here (batch prices, per-pixel, ...)."""

    entry: str
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class PriceSheet:
    entries: tuple[SheetEntry, ...] = ()
    _by_model: Mapping[str, SheetEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_model: dict[str, SheetEntry] = {}
        for entry in self.entries:
            if entry.model in by_model:
                raise InvalidInput(f"{entry.source or entry.model}: model {entry.model!r} appears "
                                   f"twice", param="model")
            by_model[entry.model] = entry
        if len(by_model) > SHEET_ENTRIES_MAX:
            raise InvalidInput(f"price sheet: at most {SHEET_ENTRIES_MAX} models", param="entries")
        object.__setattr__(self, "_by_model", MappingProxyType(by_model))

    def get(self, model: str) -> SheetEntry:
        entry = self._by_model.get(model)
        if entry is None:
            raise NotFound(f"model {model!r} is not on the imported price sheets", param="model")
        return entry

    def __contains__(self, model: object) -> bool:
        return model in self._by_model

    def __len__(self) -> int:
        return len(self.entries)

    def merged(self, entries: Iterable[SheetEntry]) -> PriceSheet:
        """A sheet where ``entries`` replace the entries of the same model; others are kept."""
        incoming = list(entries)
        replaced = {entry.model for entry in incoming}
        kept = [entry for entry in self.entries if entry.model not in replaced]
        return PriceSheet(tuple(sorted([*kept, *incoming], key=lambda e: (e.provider, e.model))))

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": STORE_FORMAT_VERSION,
                "entries": [entry.to_dict() for entry in self.entries]}

    @classmethod
    def from_dict(cls, data: Any, *, registry: MeterRegistry = DEFAULT_METERS) -> PriceSheet:
        if not isinstance(data, Mapping) or data.get("format_version") != STORE_FORMAT_VERSION:
            raise InvalidInput("price store: unknown format (expected format_version "
                               f"{STORE_FORMAT_VERSION})", param="store")
        return cls(tuple(SheetEntry.from_dict(item, registry=registry, field=f"entries[{index}]")
                         for index, item in enumerate(data.get("entries", ()))))


def normalized_entry(*, model: str, provider: str, mode: str, currency: str,
                     prices: Mapping[str, UnitPrice],
                     long_context: Iterable[LongContextTier] = (), source: str = "",
                     notes: Iterable[str] = (), registry: MeterRegistry = DEFAULT_METERS) -> SheetEntry:
    """Check an entry's meters and put every price on its meter's basis."""
    def on_basis(items: Mapping[str, UnitPrice], where: str) -> dict[str, UnitPrice]:
        return {meter: price.normalized(registry.get(meter, field=f"{where}.{meter}").per_default)
                for meter, price in items.items()}

    if not prices:
        raise InvalidInput(f"{source}: model {model!r} has no base prices", param=source)
    base = on_basis(prices, source)
    tiers = tuple(LongContextTier(tier.above_input_tokens, on_basis(tier.prices, source))
                  for tier in long_context)
    check_long_context(tiers, base, registry, field=source)
    return SheetEntry(model, provider, mode, check_currency(currency, field=f"{source}.currency"),
                      base, tiers, source, tuple(notes))


def sheet_to_rate_card(sheet: PriceSheet, conversion: ConversionRate, *,
                       name: str = "provider-list", effective_from_us: int = 0,
                       markup_percent: Decimal = Decimal(0),
                       registry: MeterRegistry = DEFAULT_METERS) -> RateCard:
    """A one-version rate card charging each sheet price in credits, plus ``markup_percent``.

    Entries in another currency than the conversion's are left out.
    """
    markup_numerator, markup_denominator = decimal_ratio(markup_percent)
    factor = multiply(conversion.ratio, ratio(100 * markup_denominator + markup_numerator,
                                              100 * markup_denominator))

    def scaled(price: UnitPrice) -> UnitPrice:
        result = price.scaled(factor)
        assert result is not None, price  # decimals times decimals terminate
        return result

    models = {}
    for entry in sheet.entries:
        if entry.currency != conversion.currency:
            continue
        models[entry.model] = ModelRate(
            entry.model, {m: scaled(p) for m, p in entry.prices.items()},
            tuple(LongContextTier(t.above_input_tokens, {m: scaled(p) for m, p in t.prices.items()})
                  for t in entry.long_context))
    if not models:
        raise NotFound(f"no imported prices in {conversion.currency} to build a card from",
                       param="currency")
    note = f"from provider price sheets at {conversion.describe()}"
    if markup_percent:
        note += f", plus {format_decimal(markup_percent)}% markup"
    version = RateCardVersion(1, effective_from_us, models, note=note)
    return RateCard.create(name, [version], registry=registry)
