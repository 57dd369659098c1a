"""The bundle catalog, and what buying a bundle grants.

Buying a bundle creates two grants in the ledger: the paid credits, whose cost basis is the money
paid, and the bonus credits, whose cost basis is zero. Keeping them apart lets revenue, free
credits and breakage (credits that expire unused) be booked correctly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from creditgate.clock import MICROS_PER_SECOND
from creditgate.errors import InvalidInput
from creditgate.ledger.credits import divide_round_half_up, format_amount
from creditgate.pricing._exact import decimal_ratio, format_decimal, parse_decimal, parse_int
from creditgate.pricing.conversion import ConversionRate, amount_micros, check_currency

ROLLOVER_KINDS: Final = ("none", "full", "capped_amount", "capped_percent")
BUNDLE_SCOPES: Final = ("inference", "training")
VALIDITY_DAYS_MAX: Final = 3_650
PRIORITY_MAX: Final = 1_000_000  # the ledger's bound on grant priority
BUNDLES_PER_PURCHASE_MAX: Final = 1_000
BUNDLES_PER_CATALOG_MAX: Final = 1_000
MICROS_PER_DAY: Final = 86_400 * MICROS_PER_SECOND
_BUNDLE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@/+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class RolloverPolicy:
    """How much of a grant's unused balance moves to a new grant when it expires.

    ``none``: nothing. ``full``: all of it. ``capped_amount``: at most ``cap_credits``
    (micro-credits). ``capped_percent``: at most ``cap_percent`` percent of the credits granted.
    """

    kind: Literal["none", "full", "capped_amount", "capped_percent"] = "none"
    cap_credits: int | None = None
    cap_percent: Decimal | None = None

    def __post_init__(self) -> None:
        if self.kind not in ROLLOVER_KINDS:
            raise InvalidInput(f"rollover: must be one of {', '.join(ROLLOVER_KINDS)}",
                               param="rollover")
        if (self.kind == "capped_amount") != (self.cap_credits is not None):
            raise InvalidInput("rollover: capped_amount needs a cap in credits, and only it",
                               param="rollover")
        if (self.kind == "capped_percent") != (self.cap_percent is not None):
            raise InvalidInput("rollover: capped_percent needs a percentage, and only it",
                               param="rollover")
        if self.cap_percent is not None and not 0 <= self.cap_percent <= 100:
            raise InvalidInput("rollover: the percentage must be from 0 to 100", param="rollover")

    def amount(self, remaining: int, granted: int) -> int:
        """Micro-credits that roll over out of ``remaining`` unused of ``granted``."""
        if self.kind == "none":
            return 0
        if self.kind == "full":
            return remaining
        if self.kind == "capped_amount":
            assert self.cap_credits is not None
            return min(remaining, self.cap_credits)
        assert self.cap_percent is not None
        numerator, denominator = decimal_ratio(self.cap_percent)
        return min(remaining, divide_round_half_up(granted * numerator, 100 * denominator))

    def describe(self) -> str:
        if self.kind == "capped_amount":
            assert self.cap_credits is not None
            return f"up to {format_amount(self.cap_credits)} credits"
        if self.kind == "capped_percent":
            assert self.cap_percent is not None
            return f"up to {format_decimal(self.cap_percent)}%"
        return self.kind

    def to_dict(self) -> dict[str, str]:
        data: dict[str, str] = {"kind": self.kind}
        if self.cap_credits is not None:
            data["cap_credits"] = format_amount(self.cap_credits)
        if self.cap_percent is not None:
            data["cap_percent"] = format_decimal(self.cap_percent)
        return data

    @classmethod
    def parse(cls, value: Any, *, field: str = "rollover") -> RolloverPolicy:
        """``none``, ``full``, ``{capped_amount: "500"}`` or ``{capped_percent: "20"}``."""
        if value is None or value in ("none", "full"):
            return cls(value or "none")
        if isinstance(value, Mapping) and len(value) == 1:
            (kind, cap), = value.items()
            if kind == "capped_amount":
                return cls("capped_amount", cap_credits=amount_micros(cap, field=f"{field}.{kind}"))
            if kind == "capped_percent":
                return cls("capped_percent",
                           cap_percent=parse_decimal(cap, field=f"{field}.{kind}", maximum=100))
        raise InvalidInput(f"{field}: expected none, full, {{capped_amount: N}} or "
                           f"{{capped_percent: N}}, got {value!r}", param=field)


def rollover_amount(policy: RolloverPolicy, remaining: int, granted: int) -> int:
    return policy.amount(remaining, granted)


@dataclass(frozen=True, slots=True)
class Bundle:
    name: str
    price: int  # micro-units of ``currency``
    currency: str
    credits: int  # micro-credits
    bonus_credits: int  # micro-credits
    validity_days: int | None  # None: never expires
    rollover: RolloverPolicy = field(default_factory=RolloverPolicy)
    scope: Literal["inference", "training"] = "inference"
    priority: int = 100
    description: str = ""

    def __post_init__(self) -> None:
        prefix = f"bundles.{self.name}"
        if not isinstance(self.name, str) or not _BUNDLE_NAME.match(self.name):
            raise InvalidInput(f"bundles: invalid bundle name {self.name!r}", param="name")
        check_currency(self.currency, field=f"{prefix}.currency")
        if self.credits <= 0:
            raise InvalidInput(f"{prefix}.credits: must be greater than zero",
                               param=f"{prefix}.credits")
        if self.price < 0 or self.bonus_credits < 0:
            raise InvalidInput(f"{prefix}: price and bonus_credits must not be negative",
                               param=prefix)
        if self.validity_days is not None and not 1 <= self.validity_days <= VALIDITY_DAYS_MAX:
            raise InvalidInput(f"{prefix}.validity_days: must be from 1 to {VALIDITY_DAYS_MAX}",
                               param=f"{prefix}.validity_days")
        if self.scope not in BUNDLE_SCOPES:
            raise InvalidInput(f"{prefix}.scope: must be inference or training",
                               param=f"{prefix}.scope")
        if not 0 <= self.priority <= PRIORITY_MAX:
            raise InvalidInput(f"{prefix}.priority: must be from 0 to {PRIORITY_MAX}",
                               param=f"{prefix}.priority")

    @property
    def total_credits(self) -> int:
        return self.credits + self.bonus_credits

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "price": format_amount(self.price), "currency": self.currency,
                "credits": format_amount(self.credits),
                "bonus_credits": format_amount(self.bonus_credits),
                "validity_days": self.validity_days, "rollover": self.rollover.to_dict(),
                "scope": self.scope, "priority": self.priority, "description": self.description}


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """One grant to create in the ledger; :meth:`ledger_kwargs` fits ``LedgerService.grant``."""

    kind: Literal["purchase", "promotional"]
    amount: int  # micro-credits
    cost_basis: int  # micro-units of ``currency``: the money paid for these credits
    currency: str
    scope: str
    priority: int
    effective_at_us: int
    expires_at_us: int | None
    rollover: RolloverPolicy
    metadata: Mapping[str, Any]

    def ledger_kwargs(self) -> dict[str, Any]:
        return {"amount": self.amount, "kind": self.kind, "scope": self.scope,
                "priority": self.priority, "effective_at_us": self.effective_at_us,
                "expires_at_us": self.expires_at_us, "cost_basis": self.cost_basis,
                "currency": self.currency, "rollover": self.rollover.to_dict(),
                "metadata": dict(self.metadata)}


@dataclass(frozen=True, slots=True)
class BundlePurchase:
    bundle: Bundle
    quantity: int
    paid: GrantSpec
    bonus: GrantSpec | None  # None when the bundle has no bonus credits

    @property
    def grants(self) -> tuple[GrantSpec, ...]:
        return (self.paid,) if self.bonus is None else (self.paid, self.bonus)


def purchase_grants(bundle: Bundle, purchased_at_us: int, *, quantity: int = 1,
                    reference: str | None = None) -> BundlePurchase:
    """The grants that buying ``quantity`` of ``bundle`` at ``purchased_at_us`` creates.

    The paid grant carries the whole price as its cost basis and the bonus grant carries zero, so
    that the ledger can tell paid from free credits. Both share the bundle's scope, priority,
    expiry and rollover policy.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not (
            1 <= quantity <= BUNDLES_PER_PURCHASE_MAX):
        raise InvalidInput(f"quantity: must be from 1 to {BUNDLES_PER_PURCHASE_MAX}",
                           param="quantity")
    expires = (None if bundle.validity_days is None
               else purchased_at_us + bundle.validity_days * MICROS_PER_DAY)
    metadata: dict[str, Any] = {"bundle": bundle.name, "quantity": quantity}
    if reference is not None:
        metadata["reference"] = reference
    paid = GrantSpec("purchase", bundle.credits * quantity, bundle.price * quantity,
                     bundle.currency, bundle.scope, bundle.priority, purchased_at_us, expires,
                     bundle.rollover, {**metadata, "part": "paid"})
    bonus = None
    if bundle.bonus_credits:
        bonus = GrantSpec("promotional", bundle.bonus_credits * quantity, 0, bundle.currency,
                          bundle.scope, bundle.priority, purchased_at_us, expires, bundle.rollover,
                          {**metadata, "part": "bonus"})
    return BundlePurchase(bundle, quantity, paid, bonus)


# ------------------------------------------------------------------------------ catalog files
def parse_bundle(data: Any, *, field: str, conversion: ConversionRate | None) -> Bundle:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{field}: expected a mapping", param=field)
    known = {"name", "price", "currency", "credits", "bonus_credits", "validity_days", "rollover",
             "scope", "priority", "description"}
    for key in data:
        if key not in known:
            raise InvalidInput(f"{field}.{key}: unknown field", param=f"{field}.{key}")
    name = data.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"{field}.name: required", param=f"{field}.name")
    field = f"bundles.{name}"
    currency = check_currency(data.get("currency", conversion.currency if conversion else "USD"),
                              field=f"{field}.currency")
    price = amount_micros(data.get("price"), field=f"{field}.price")
    if "credits" in data:
        credits = amount_micros(data["credits"], field=f"{field}.credits", allow_zero=False)
    elif conversion is not None and conversion.currency == currency:
        credits = conversion.money_to_credits(price)
    else:
        raise InvalidInput(f"{field}.credits: required (no conversion rate for {currency})",
                           param=f"{field}.credits")
    validity = data.get("validity_days")
    return Bundle(
        name=name, price=price, currency=currency, credits=credits,
        bonus_credits=amount_micros(data.get("bonus_credits", 0), field=f"{field}.bonus_credits"),
        validity_days=None if validity in (None, "never") else parse_int(
            validity, field=f"{field}.validity_days", minimum=1, maximum=VALIDITY_DAYS_MAX),
        rollover=RolloverPolicy.parse(data.get("rollover"), field=f"{field}.rollover"),
        scope=data.get("scope", "inference"),
        priority=parse_int(data.get("priority", 100), field=f"{field}.priority",
                           maximum=PRIORITY_MAX),
        description=str(data.get("description", "")),
    )


def parse_bundle_catalog(data: Any, *, source: str = "bundles") -> tuple[Bundle, ...]:
    """Read ``{conversion: {...}, bundles: [...]}``; names must be unique."""
    if not isinstance(data, Mapping) or not isinstance(data.get("bundles"), list):
        raise InvalidInput(f"{source}: expected a mapping with a 'bundles' list", param=source)
    conversion = ConversionRate.parse(data["conversion"]) if "conversion" in data else None
    items: Iterable[Any] = data["bundles"]
    bundles = tuple(parse_bundle(item, field=f"bundles[{index}]", conversion=conversion)
                    for index, item in enumerate(items))
    if len(bundles) > BUNDLES_PER_CATALOG_MAX:
        raise InvalidInput(f"{source}: at most {BUNDLES_PER_CATALOG_MAX} bundles", param=source)
    names = [bundle.name for bundle in bundles]
    for name in names:
        if names.count(name) > 1:
            raise InvalidInput(f"bundles.{name}: the name is used twice", param=f"bundles.{name}")
    return bundles

