"""Explaining a charge: the card version, the base price, each rule, the rounding, the result.

This is also the reference implementation of rating. It works from the card's own decimals with
exact Fractions, step by step, and never touches the compiled integers of
:mod:`creditgate.pricing.rating`; the tests require both to give the same credits and the same
rule records for every usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from creditgate.clock import iso
from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.credits import MICROS_PER_UNIT, divide_round_half_up, format_amount
from creditgate.pricing._exact import format_ratio
from creditgate.pricing.meters import MeterRegistry, Usage
from creditgate.pricing.rate_cards import EffectiveRate, long_context_record
from creditgate.pricing.rules import (
    AppliedRule,
    PricingContext,
    SurgeRule,
    TimeWindowRule,
    VolumeTierRule,
)
from creditgate.pricing.unit_price import UnitPrice, format_count


@dataclass(frozen=True, slots=True)
class ExplainedMeter:
    meter: str
    unit: str
    quantity: int
    price: UnitPrice
    subtotal: Fraction  # credits, exact


@dataclass(frozen=True, slots=True)
class Explanation:
    model: str
    card: str
    version: int
    version_from_us: int
    at_us: int
    prompt_tokens: int
    price_set: str
    meters: tuple[ExplainedMeter, ...]
    base: Fraction  # credits, exact
    rules: tuple[AppliedRule, ...]
    multiplier: Fraction
    exact: Fraction  # credits, exact: base times every multiplier
    credits: int  # micro-credits after the one rounding

    @property
    def rounding(self) -> Fraction:
        """What the rounding added (negative: removed), in credits."""
        return Fraction(self.credits, MICROS_PER_UNIT) - self.exact

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "card": self.card,
            "version": self.version,
            "version_effective_from": iso(self.version_from_us),
            "at": iso(self.at_us),
            "prompt_tokens": self.prompt_tokens,
            "price_set": self.price_set,
            "base": [{"meter": m.meter, "quantity": m.quantity, "price": m.price.to_text(),
                      "unit": m.unit, "credits": _text(m.subtotal)} for m in self.meters],
            "base_credits": _text(self.base),
            "rules": [rule.to_dict() for rule in self.rules],
            "multiplier": _text(self.multiplier),
            "exact_credits": _text(self.exact),
            "rounding": {"rule": "half up to 0.000001 credit, once per charge",
                         "delta_credits": _text(self.rounding)},
            "credits": format_amount(self.credits),
            "credits_micros": self.credits,
        }

    def render(self) -> str:
        """The human-readable form printed by ``creditgate prices explain``."""
        lines = [
            (f"charge for {self.model} on card {self.card!r} version {self.version} "
            f"(in force from {iso(self.version_from_us)})"),
            f"at {iso(self.at_us)}; prompt {self.prompt_tokens:,} tokens; {self.price_set} prices",
            "",
            "base price",
        ]
        rows = [(m.meter, f"{m.quantity:,} {_plural(m.unit, m.quantity)}",
                 (f"{format_ratio_price(m.price)} per {format_count(m.price.per)} "
                 f"{_plural(m.unit, m.price.per)}"), _text(m.subtotal)) for m in self.meters]
        widths = [max([len(row[column]) for row in rows] + [4]) for column in range(4)]
        for meter, quantity, price, subtotal in rows:
            lines.append(f"  {meter:<{widths[0]}}  {quantity:>{widths[1]}} × {price:<{widths[2]}}"
                         f" = {subtotal:>{widths[3]}}")
        lines.append(f"  {'base':<{widths[0] + widths[1] + widths[2] + 7}}"
                     f"{_text(self.base):>{widths[3]}} credits")
        lines.append("")
        if self.rules:
            lines.append("rules applied, in order")
            name_width = max(len(rule.name) for rule in self.rules)
            for rule in self.rules:
                lines.append(f"  {rule.kind:<14} {rule.name:<{name_width}}  "
                             f"×{format_ratio(rule.multiplier):<8} {rule.detail}")
        else:
            lines.append("rules applied: none")
        lines += [
            "",
            f"exact     {_text(self.exact)} credits (base × {_text(self.multiplier)})",
            f"rounding  half up to 0.000001 credit, once per charge: {_signed(self.rounding)}",
            f"final     {format_amount(self.credits)} credits",
        ]
        return "\n".join(lines)


def _plural(unit: str, count: int) -> str:
    return unit if count == 1 else f"{unit}s"


def format_ratio_price(price: UnitPrice) -> str:
    return format_ratio(price.amount.as_integer_ratio())


def _text(value: Fraction) -> str:
    return format_ratio((value.numerator, value.denominator))


def _signed(value: Fraction) -> str:
    return ("+" if value >= 0 else "") + _text(value)


def explain_charge(rate: EffectiveRate, usage: Usage, at_us: int, context: PricingContext,
                   registry: MeterRegistry) -> Explanation:
    """Rate ``usage`` under ``rate`` the slow, obvious way, recording every step."""
    prompt = sum(usage.get(meter, 0) for meter in registry.prompt_meters())
    prices, tier = rate.prices_for_prompt(prompt)
    records = list(rate.records)
    if tier is not None:
        records.append(long_context_record(tier))
    meters = []
    for meter, quantity in usage.items():
        price = prices.get(meter)
        if price is None:
            if quantity:
                if meter not in registry:
                    raise InvalidInput(f"usage.{meter}: unknown meter {meter!r}",
                                       param=f"usage.{meter}")
                raise NotFound(f"model {rate.model!r} has no price for meter {meter!r} on card "
                               f"{rate.card!r} version {rate.version.version}",
                               param=f"usage.{meter}")
            continue
        subtotal = quantity * Fraction(price.amount) / price.per
        meters.append(ExplainedMeter(meter, registry.get(meter).unit, quantity, price, subtotal))
    for rule in rate.rules:
        if isinstance(rule, TimeWindowRule):
            applied = rule.evaluate(at_us)
            if applied is not None:
                records.append(applied)
    for rule in rate.rules:
        if isinstance(rule, SurgeRule) and context.load is not None:
            applied = rule.evaluate(context.load)
            if applied is not None:
                records.append(applied)
    period = context.period_usage or {}
    for rule in rate.rules:
        if isinstance(rule, VolumeTierRule):
            applied = rule.evaluate(rule.basis(period), rule.basis(usage))
            if applied is not None:
                records.append(applied)
    multiplier = Fraction(1)
    for record in records:  # the org discount is one of the records
        multiplier *= Fraction(*record.multiplier)
    base = sum((m.subtotal for m in meters), Fraction(0))
    exact = base * multiplier
    exact_micros = exact * MICROS_PER_UNIT
    credits = divide_round_half_up(exact_micros.numerator, exact_micros.denominator)
    price_set = "base" if tier is None else f"long-context (above {tier.above_input_tokens} tokens)"
    return Explanation(rate.model, rate.card, rate.version.version, rate.version.effective_from_us,
                       at_us, prompt, price_set, tuple(meters), base, tuple(records), multiplier,
                       exact, credits)
