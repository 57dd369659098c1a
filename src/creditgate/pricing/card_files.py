"""Reading rate cards, rules and org overrides from plain data (a YAML or JSON document).

The document shape (see ``samples/rate_card.yaml``)::

    card: public
    meters: [{name: gpu_seconds, unit: second, per: 1}]   # optional extra meters
    versions:
      - version: 1
        effective_from: "2025-01-01T00:00:00Z"
        models:
          gpt-4o: {input_tokens: "250/1M", output_tokens: "1000/1M"}
          gemini-1.5-pro:
            input_tokens: "125/1M"
            long_context: [{above_input_tokens: 128000, input_tokens: "250/1M"}]
        rules: [{kind: time_window, ...}, {kind: surge, ...}, {kind: volume_tiers, ...}]
    overrides:
      - {name: acme-deal, org: acme, discount_percent: "10"}

Prices are credits per N units; a bare number is per the meter's usual basis (1M tokens, one
image, ...). Every error names the field it is about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from creditgate.clock import parse_iso
from creditgate.errors import InvalidInput
from creditgate.pricing._exact import load_yaml_exact, parse_decimal, parse_int, parse_per
from creditgate.pricing.meters import DEFAULT_METERS, Meter, MeterRegistry
from creditgate.pricing.rate_cards import (
    LongContextTier,
    ModelRate,
    OrgOverride,
    Overrides,
    RateCard,
    RateCardVersion,
)
from creditgate.pricing.rules import (
    WEEKDAYS,
    Rule,
    Step,
    SurgeRule,
    TimeWindowRule,
    VolumeTier,
    VolumeTierRule,
)
from creditgate.pricing.unit_price import UnitPrice

RULE_KINDS: Final = ("time_window", "surge", "volume_tiers")


@dataclass(frozen=True, slots=True)
class CardDocument:
    card: RateCard
    overrides: Overrides
    registry: MeterRegistry


def _mapping(value: Any, *, field: str, allowed: set[str] | None = None,
             required: Sequence[str] = ()) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field}: expected a mapping", param=field)
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise InvalidInput(f"{field}.{key}: unknown field", param=f"{field}.{key}")
    for key in required:
        if key not in value:
            raise InvalidInput(f"{field}.{key}: required", param=f"{field}.{key}")
    return value


def _list(value: Any, *, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{field}: expected a list", param=field)
    return value


def _name(value: Any, *, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput(f"{field}: expected a non-empty name", param=field)
    return value.strip()


def _time(value: Any, *, field: str) -> int | None:
    return None if value is None else parse_iso(value, field=field)


def parse_prices(data: Mapping[str, Any], registry: MeterRegistry, *,
                 field: str) -> dict[str, UnitPrice]:
    prices: dict[str, UnitPrice] = {}
    for meter, value in data.items():
        meter_field = f"{field}.{meter}"
        known = registry.get(str(meter), field=meter_field)
        prices[known.name] = UnitPrice.parse(value, field=meter_field, per_default=known.per_default,
                                             unit=known.unit)
    return prices


def parse_long_context(data: Any, registry: MeterRegistry, *,
                       field: str) -> tuple[LongContextTier, ...]:
    tiers = []
    for index, item in enumerate(_list(data, field=field)):
        tier_field = f"{field}[{index}]"
        item = _mapping(item, field=tier_field, required=("above_input_tokens",))
        threshold = parse_int(item["above_input_tokens"], field=f"{tier_field}.above_input_tokens",
                              minimum=1)
        prices = {key: value for key, value in item.items() if key != "above_input_tokens"}
        tiers.append(LongContextTier(threshold, parse_prices(prices, registry, field=tier_field)))
    return tuple(tiers)


def parse_model(model: str, data: Any, registry: MeterRegistry, *, field: str) -> ModelRate:
    data = _mapping(data, field=field)
    prices = {key: value for key, value in data.items() if key != "long_context"}
    return ModelRate(model, parse_prices(prices, registry, field=field),
                     parse_long_context(data.get("long_context"), registry,
                                        field=f"{field}.long_context"))


def _weekdays(value: Any, *, field: str) -> frozenset[int]:
    if value in (None, "all"):
        return frozenset(range(7))
    if isinstance(value, str) and "-" in value:
        first, _, last = value.partition("-")
        if first in WEEKDAYS and last in WEEKDAYS:
            start, end = WEEKDAYS.index(first), WEEKDAYS.index(last)
            return frozenset(day % 7 for day in range(start, end + 1 if end >= start else end + 8))
    days = value.split(",") if isinstance(value, str) else _list(value, field=field)
    found = set()
    for day in days:
        name = str(day).strip().lower()[:3]
        if name not in WEEKDAYS:
            raise InvalidInput(f"{field}: {day!r} is not a weekday ({', '.join(WEEKDAYS)})",
                               param=field)
        found.add(WEEKDAYS.index(name))
    return frozenset(found)


def _hours(value: Any, *, field: str) -> tuple[int, int]:
    text = str(value).strip() if value is not None else ""
    start, separator, end = text.partition("-")
    if not separator or not start.strip().isdigit() or not end.strip().isdigit():
        raise InvalidInput(f"{field}: expected hours such as \"22-06\", got {value!r}", param=field)
    return int(start), int(end)


def _steps(value: Any, *, field: str) -> tuple[Step, ...]:
    steps = []
    for index, item in enumerate(_list(value, field=field)):
        step_field = f"{field}[{index}]"
        item = _mapping(item, field=step_field, allowed={"at_least", "multiplier"},
                        required=("at_least", "multiplier"))
        steps.append(Step(parse_int(item["at_least"], field=f"{step_field}.at_least"),
                          parse_decimal(item["multiplier"], field=f"{step_field}.multiplier")))
    return tuple(steps)


def parse_rule(data: Any, registry: MeterRegistry, *, field: str) -> Rule:
    data = _mapping(data, field=field, required=("kind", "name"))
    kind, name = data["kind"], _name(data["name"], field=f"{field}.name")
    field = f"{field}({name})"
    models = frozenset(str(model) for model in _list(data.get("models"), field=f"{field}.models"))
    if kind == "time_window":
        _mapping(data, field=field, allowed={"kind", "name", "timezone", "weekdays", "hours",
                                             "multiplier", "models"},
                 required=("timezone", "hours", "multiplier"))
        start, end = _hours(data["hours"], field=f"{field}.hours")
        return TimeWindowRule(name, str(data["timezone"]),
                              _weekdays(data.get("weekdays"), field=f"{field}.weekdays"), start, end,
                              parse_decimal(data["multiplier"], field=f"{field}.multiplier"), models)
    if kind == "surge":
        _mapping(data, field=field, allowed={"kind", "name", "utilisation", "queue_depth", "cap",
                                             "models"}, required=("cap",))
        return SurgeRule(name, _steps(data.get("utilisation"), field=f"{field}.utilisation"),
                         _steps(data.get("queue_depth"), field=f"{field}.queue_depth"),
                         parse_decimal(data["cap"], field=f"{field}.cap"), models)
    if kind == "volume_tiers":
        _mapping(data, field=field, allowed={"kind", "name", "mode", "meters", "tiers", "models"},
                 required=("mode", "meters", "tiers"))
        meters = tuple(registry.get(str(m), field=f"{field}.meters").name
                       for m in _list(data["meters"], field=f"{field}.meters"))
        tiers = []
        for index, item in enumerate(_list(data["tiers"], field=f"{field}.tiers")):
            tier_field = f"{field}.tiers[{index}]"
            item = _mapping(item, field=tier_field, allowed={"above", "multiplier"},
                            required=("above", "multiplier"))
            tiers.append(VolumeTier(parse_int(item["above"], field=f"{tier_field}.above"),
                                    parse_decimal(item["multiplier"],
                                                  field=f"{tier_field}.multiplier")))
        return VolumeTierRule(name, data["mode"], meters, tuple(tiers), models)
    raise InvalidInput(f"{field}.kind: must be one of {', '.join(RULE_KINDS)}, got {kind!r}",
                       param=f"{field}.kind")


def parse_version(data: Any, registry: MeterRegistry, *, field: str) -> RateCardVersion:
    data = _mapping(data, field=field, allowed={"version", "effective_from", "effective_until",
                                                "note", "models", "rules"},
                    required=("version", "effective_from", "models"))
    number = parse_int(data["version"], field=f"{field}.version", minimum=1)
    field = f"versions[{number}]"
    models = _mapping(data["models"], field=f"{field}.models")
    return RateCardVersion(
        version=number,
        effective_from_us=parse_iso(data["effective_from"], field=f"{field}.effective_from"),
        effective_until_us=_time(data.get("effective_until"), field=f"{field}.effective_until"),
        models={str(model): parse_model(str(model), rate, registry,
                                        field=f"{field}.models.{model}")
                for model, rate in models.items()},
        rules=tuple(parse_rule(rule, registry, field=f"{field}.rules[{index}]")
                    for index, rule in enumerate(_list(data.get("rules"), field=f"{field}.rules"))),
        note=str(data.get("note", "")),
    )


def parse_override(data: Any, registry: MeterRegistry, *, field: str) -> OrgOverride:
    data = _mapping(data, field=field, allowed={"name", "org", "model", "prices", "long_context",
                                                "discount_percent", "effective_from",
                                                "effective_until"},
                    required=("name", "org"))
    name = _name(data["name"], field=f"{field}.name")
    field = f"overrides.{name}"
    discount = data.get("discount_percent")
    return OrgOverride(
        org=_name(data["org"], field=f"{field}.org"),
        name=name,
        model=None if data.get("model") in (None, "*") else str(data["model"]),
        prices=parse_prices(_mapping(data.get("prices") or {}, field=f"{field}.prices"), registry,
                            field=f"{field}.prices"),
        long_context=(parse_long_context(data["long_context"], registry,
                                         field=f"{field}.long_context")
                      if data.get("long_context") is not None else None),
        discount_percent=(None if discount is None else
                          parse_decimal(discount, field=f"{field}.discount_percent", maximum=100)),
        effective_from_us=_time(data.get("effective_from"), field=f"{field}.effective_from"),
        effective_until_us=_time(data.get("effective_until"), field=f"{field}.effective_until"),
    )


def parse_meters(data: Any, registry: MeterRegistry, *, field: str = "meters") -> MeterRegistry:
    extra = []
    for index, item in enumerate(_list(data, field=field)):
        item_field = f"{field}[{index}]"
        item = _mapping(item, field=item_field, allowed={"name", "unit", "per", "description"},
                        required=("name", "unit"))
        name = str(item["name"])
        if name in registry or not name.replace("_", "a").isalnum() or not name[:1].isalpha():
            raise InvalidInput(f"{item_field}.name: {name!r} is taken or not a meter name",
                               param=f"{item_field}.name")
        extra.append(Meter(name.lower(), _name(item["unit"], field=f"{item_field}.unit"),
                           parse_per(item.get("per", 1), field=f"{item_field}.per"),
                           str(item.get("description", ""))))
    return registry.with_meters(*extra) if extra else registry


def parse_card_document(data: Any, *, source: str = "card",
                        registry: MeterRegistry = DEFAULT_METERS) -> CardDocument:
    """Build a validated card, its overrides and its meter registry from a parsed document."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: expected a mapping with card and versions", param=source)
    for key in data:
        if key not in ("card", "meters", "versions", "overrides"):
            raise InvalidInput(f"{source}: {key}: unknown field", param=str(key))
    for key in ("card", "versions"):
        if key not in data:
            raise InvalidInput(f"{source}: {key}: required", param=key)
    registry = parse_meters(data.get("meters"), registry)
    name = _name(data["card"], field="card")
    versions = [parse_version(item, registry, field=f"versions[{index}]")
                for index, item in enumerate(_list(data["versions"], field="versions"))]
    card = RateCard.create(name, versions, registry=registry)
    overrides = Overrides([parse_override(item, registry, field=f"overrides[{index}]")
                           for index, item in enumerate(_list(data.get("overrides"),
                                                              field="overrides"))],
                          registry=registry)
    return CardDocument(card, overrides, registry)


def load_card_text(text: str, *, source: str = "card") -> CardDocument:
    return parse_card_document(load_yaml_exact(text, source=source), source=source)
