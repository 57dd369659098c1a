"""Comparing providers, models and bundles on a user's own workload.

A workload lists, per model family, what a period (a month by default) uses: input, cached and
output tokens, images, seconds of audio, and so on. Each candidate model is priced on it from the
imported provider sheets, in money and in credits (the common unit across currencies); providers
are ranked by the cheapest model they offer for every family. Bundles are ranked by the money
paid per credit actually *used*: at the workload's burn rate, credits still unused when a bundle
expires are lost, less what its rollover policy carries over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import MICROS_PER_UNIT, divide_round_half_up, format_amount
from creditgate.pricing._exact import load_yaml_exact, parse_int
from creditgate.pricing.bundles import BUNDLE_SCOPES, Bundle
from creditgate.pricing.conversion import Conversions, amount_micros
from creditgate.pricing.meters import DEFAULT_METERS, MeterRegistry, Usage
from creditgate.pricing.sheets import PriceSheet, SheetEntry

WORKLOAD_ITEMS_MAX: Final = 200
CANDIDATES_PER_ITEM_MAX: Final = 10_000
PERIOD_DAYS_MAX: Final = 366
FALLBACK_METERS: Final = {"cached_input_tokens": "input_tokens", "reasoning_tokens": "output_tokens"}


@dataclass(frozen=True, slots=True)
class WorkloadItem:
    family: str
    usage: Usage
    candidates: tuple[str, ...] = ()  # empty: every sheet model matching mode and providers
    mode: str | None = None
    providers: tuple[str, ...] = ()
    # Typical prompt size, which decides long-context tiers; unknown means below every tier.
    avg_prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    items: tuple[WorkloadItem, ...]
    period_days: int = 30
    scope: str = "inference"
    # Credits used per period, when known; otherwise the cheapest complete provider's total.
    burn_credits_per_period: int | None = None


def _strings(value: Any, *, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"{field}: expected a list of names", param=field)
    return tuple(value)


def parse_workload(data: Any, *, source: str = "workload",
                   registry: MeterRegistry = DEFAULT_METERS) -> Workload:
    if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
        raise InvalidInput(f"{source}: expected a mapping with an 'items' list", param=source)
    for key in data:
        if key not in ("name", "period_days", "scope", "burn_credits_per_period", "items"):
            raise InvalidInput(f"{source}: {key}: unknown field", param=str(key))
    items = []
    if not data["items"] or len(data["items"]) > WORKLOAD_ITEMS_MAX:
        raise InvalidInput(f"{source}: items: give 1 to {WORKLOAD_ITEMS_MAX} items", param="items")
    for index, item in enumerate(data["items"]):
        field = f"items[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{field}: expected a mapping", param=field)
        for key in item:
            if key not in ("family", "usage", "candidates", "mode", "providers",
                           "avg_prompt_tokens"):
                raise InvalidInput(f"{field}.{key}: unknown field", param=f"{field}.{key}")
        usage = item.get("usage")
        if not isinstance(usage, Mapping) or not usage:
            raise InvalidInput(f"{field}.usage: required mapping of meter to quantity",
                               param=f"{field}.usage")
        checked = registry.check_usage({meter: parse_int(quantity, field=f"{field}.usage.{meter}")
                                        for meter, quantity in usage.items()},
                                       field=f"{field}.usage")
        candidates = _strings(item.get("candidates"), field=f"{field}.candidates")
        if len(candidates) > CANDIDATES_PER_ITEM_MAX:
            raise InvalidInput(f"{field}.candidates: at most {CANDIDATES_PER_ITEM_MAX}",
                               param=f"{field}.candidates")
        prompt = item.get("avg_prompt_tokens")
        items.append(WorkloadItem(
            family=str(item.get("family", f"item {index + 1}")), usage=checked,
            candidates=candidates,
            mode=str(item["mode"]) if item.get("mode") is not None else None,
            providers=_strings(item.get("providers"), field=f"{field}.providers"),
            avg_prompt_tokens=(None if prompt is None else
                               parse_int(prompt, field=f"{field}.avg_prompt_tokens"))))
    scope = data.get("scope", "inference")
    if scope not in BUNDLE_SCOPES:
        raise InvalidInput(f"{source}: scope: must be inference or training", param="scope")
    burn = data.get("burn_credits_per_period")
    return Workload(
        name=str(data.get("name", source)), items=tuple(items),
        period_days=parse_int(data.get("period_days", 30), field="period_days", minimum=1,
                              maximum=PERIOD_DAYS_MAX),
        scope=scope,
        burn_credits_per_period=(None if burn is None else amount_micros(
            burn, field="burn_credits_per_period", allow_zero=False)))


def load_workload_text(text: str, *, source: str = "workload") -> Workload:
    """Read a workload from YAML or JSON text (JSON is YAML, and floats stay exact)."""
    return parse_workload(load_yaml_exact(text, source=source), source=source)


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True, slots=True)
class ModelCost:
    family: str
    model: str
    provider: str
    currency: str
    money: int  # micro-units of currency, rounded once per family and model
    credits: int  # micro-credits, rounded once from the exact money
    price_set: str

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "model": self.model, "provider": self.provider,
                "currency": self.currency, "cost": format_amount(self.money),
                "credits": format_amount(self.credits), "price_set": self.price_set}


@dataclass(frozen=True, slots=True)
class Excluded:
    family: str
    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProviderTotal:
    provider: str
    credits: int
    choices: tuple[ModelCost, ...]  # the cheapest model per family
    missing: tuple[str, ...]  # families the provider has no priced model for

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        currencies = {choice.currency for choice in self.choices}
        money = (format_amount(sum(choice.money for choice in self.choices))
                 if len(currencies) == 1 else None)
        return {"provider": self.provider, "credits": format_amount(self.credits),
                "cost": money, "currency": next(iter(currencies)) if len(currencies) == 1 else None,
                "models": {choice.family: choice.model for choice in self.choices},
                "missing_families": list(self.missing)}


@dataclass(frozen=True, slots=True)
class BundleValue:
    bundle: Bundle
    used_credits: int  # micro-credits used before expiry (or carried over by rollover)
    expired_credits: int  # micro-credits lost at expiry
    days_to_use: Fraction  # how long the credits last at the burn rate
    cost_per_used_credit: Fraction | None  # money per used credit; None if none gets used

    def cost_per_used_credit_text(self) -> str | None:
        if self.cost_per_used_credit is None:
            return None
        return format_amount(_round_micros(self.cost_per_used_credit))

    def days_to_use_text(self) -> str:
        tenths = divide_round_half_up(self.days_to_use.numerator * 10, self.days_to_use.denominator)
        return f"{tenths // 10}.{tenths % 10}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle.name, "price": format_amount(self.bundle.price),
            "currency": self.bundle.currency,
            "credits": format_amount(self.bundle.total_credits),
            "validity_days": self.bundle.validity_days,
            "rollover": self.bundle.rollover.describe(),
            "used_credits": format_amount(self.used_credits),
            "expired_credits": format_amount(self.expired_credits),
            "days_to_use": self.days_to_use_text(),
            "cost_per_used_credit": self.cost_per_used_credit_text(),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    workload: Workload
    models: tuple[ModelCost, ...]  # per family, cheapest first
    excluded: tuple[Excluded, ...]
    providers: tuple[ProviderTotal, ...]  # complete providers cheapest first, then incomplete
    bundles: tuple[BundleValue, ...]  # best value first
    burn_credits_per_period: int | None
    burn_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.name, "period_days": self.workload.period_days,
            "models": [cost.to_dict() for cost in self.models],
            "excluded": [{"family": e.family, "model": e.model, "reason": e.reason}
                         for e in self.excluded],
            "providers": [provider.to_dict() for provider in self.providers],
            "burn_credits_per_period": (None if self.burn_credits_per_period is None
                                        else format_amount(self.burn_credits_per_period)),
            "burn_source": self.burn_source,
            "bundles": [value.to_dict() for value in self.bundles],
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        """One flat table for CSV output, with a ``section`` column."""
        rows: list[dict[str, Any]] = []
        for rank, cost in enumerate(self.models, start=1):
            rows.append({"section": "model", "rank": rank, "name": cost.model, **cost.to_dict()})
        for rank, provider in enumerate(self.providers, start=1):
            data = provider.to_dict()
            rows.append({"section": "provider", "rank": rank, "name": provider.provider,
                         "credits": data["credits"], "cost": data["cost"],
                         "currency": data["currency"],
                         "missing_families": ";".join(data["missing_families"])})
        for rank, value in enumerate(self.bundles, start=1):
            rows.append({"section": "bundle", "rank": rank, "name": value.bundle.name,
                         **value.to_dict()})
        return rows


def _round_micros(value: Fraction) -> int:
    scaled = value * MICROS_PER_UNIT
    return divide_round_half_up(scaled.numerator, scaled.denominator)


# ------------------------------------------------------------------------------ ranking
def cost_of(entry: SheetEntry, item: WorkloadItem, conversions: Conversions) -> ModelCost | str:
    """The item's cost on one sheet entry, or the reason it cannot be priced there."""
    if item.avg_prompt_tokens is not None:
        prices, price_set = entry.prices, "base"
        for tier in reversed(entry.long_context):
            if item.avg_prompt_tokens > tier.above_input_tokens:
                prices, price_set = tier.prices, f"above {tier.above_input_tokens}"
                break
    else:
        prices, price_set = entry.prices, "base"
    money = Fraction(0)
    for meter, quantity in item.usage.items():
        if not quantity:
            continue
        price = prices.get(meter)
        if price is None and meter in FALLBACK_METERS:
            # A model without a cache discount bills cached tokens as input tokens, and one
            # without a reasoning price bills reasoning as output.
            price = prices.get(FALLBACK_METERS[meter])
        if price is None:
            return f"no price for {meter}"
        numerator, denominator = price.per_unit()
        money += Fraction(quantity * numerator, denominator)
    rate = conversions.rate(entry.currency)
    credits = money * Fraction(*rate.ratio)
    return ModelCost(item.family, entry.model, entry.provider, entry.currency,
                     _round_micros(money), _round_micros(credits), price_set)


def _candidates(sheet: PriceSheet, item: WorkloadItem) -> list[SheetEntry | str]:
    if item.candidates:
        return [sheet.get(name) if name in sheet else name for name in item.candidates]
    return [entry for entry in sheet.entries
            if (item.mode is None or entry.mode == item.mode)
            and (not item.providers or entry.provider in item.providers)]


def rank_models(sheet: PriceSheet, workload: Workload,
                conversions: Conversions) -> tuple[list[ModelCost], list[Excluded]]:
    costs: list[ModelCost] = []
    excluded: list[Excluded] = []
    for item in workload.items:
        priced: list[ModelCost] = []
        for candidate in _candidates(sheet, item):
            if isinstance(candidate, str):
                excluded.append(Excluded(item.family, candidate, "not on the price sheets"))
                continue
            if candidate.currency not in {rate.currency for rate in conversions}:
                excluded.append(Excluded(item.family, candidate.model,
                                         f"no conversion rate for {candidate.currency}"))
                continue
            result = cost_of(candidate, item, conversions)
            if isinstance(result, str):
                excluded.append(Excluded(item.family, candidate.model, result))
            else:
                priced.append(result)
        costs.extend(sorted(priced, key=lambda cost: (cost.credits, cost.model)))
    return costs, excluded


def rank_providers(costs: Sequence[ModelCost], workload: Workload) -> list[ProviderTotal]:
    families = [item.family for item in workload.items]
    cheapest: dict[str, dict[str, ModelCost]] = {}
    for cost in costs:  # already cheapest first within each family
        cheapest.setdefault(cost.provider, {}).setdefault(cost.family, cost)
    totals = []
    for provider, by_family in cheapest.items():
        choices = tuple(by_family[family] for family in families if family in by_family)
        missing = tuple(family for family in families if family not in by_family)
        totals.append(ProviderTotal(provider, sum(c.credits for c in choices), choices, missing))
    return sorted(totals, key=lambda total: (len(total.missing), total.credits, total.provider))


def value_of_bundle(bundle: Bundle, burn_per_period: int, period_days: int) -> BundleValue:
    total = bundle.total_credits
    burn_per_day = Fraction(burn_per_period, period_days)
    days_to_use = Fraction(total) / burn_per_day
    if bundle.validity_days is None or days_to_use <= bundle.validity_days:
        expiring = 0
    else:
        expiring = total - _round_credits(burn_per_day * bundle.validity_days)
    lost = expiring - bundle.rollover.amount(expiring, total)
    used = total - lost
    cost = Fraction(bundle.price, used) if used else None
    return BundleValue(bundle, used, lost, days_to_use, cost)


def _round_credits(value: Fraction) -> int:
    return divide_round_half_up(value.numerator, value.denominator)


def rank_bundles(bundles: Sequence[Bundle], burn_per_period: int, period_days: int, *,
                 scope: str = "inference") -> list[BundleValue]:
    values = [value_of_bundle(bundle, burn_per_period, period_days)
              for bundle in bundles if bundle.scope == scope]
    return sorted(values, key=lambda v: (v.bundle.currency, v.cost_per_used_credit is None,
                                         v.cost_per_used_credit or 0, v.bundle.name))


def compare(sheet: PriceSheet, workload: Workload, *, bundles: Sequence[Bundle] = (),
            conversions: Conversions | None = None) -> Comparison:
    conversions = conversions or Conversions()
    costs, excluded = rank_models(sheet, workload, conversions)
    providers = rank_providers(costs, workload)
    if workload.burn_credits_per_period is not None:
        burn, source = workload.burn_credits_per_period, "given by the workload"
    elif providers and providers[0].complete and providers[0].credits > 0:
        burn = providers[0].credits
        source = f"cheapest complete provider ({providers[0].provider})"
    else:
        burn, source = None, "unknown: no provider prices every family"
    values = (rank_bundles(bundles, burn, workload.period_days, scope=workload.scope)
              if burn else [])
    return Comparison(workload, tuple(costs), tuple(excluded), tuple(providers), tuple(values),
                      burn, source)
