"""Importing provider price sheets: LiteLLM's JSON price map, and our own CSV and YAML.

Imports are all or nothing: the whole file is parsed and checked before anything is returned, and
the first bad value stops the import with an error naming the entry and field (JSON, YAML) or the
line and column (CSV). Nothing is downloaded: the caller passes the file's text.

LiteLLM's map has many more cost fields than creditgate has meters. A field is handled in one of
three ways:

* imported: it maps onto a meter (``input_cost_per_token`` -> ``input_tokens``; see
  :data:`LITELLM_METER_FIELDS`), optionally as a long-context tier (``*_above_128k_tokens``);
* skipped and reported: a unit LiteLLM is known to use that has no meter here (per pixel, per
  audio token, batch or priority prices, tool and storage fees, cache writes, ...);
* rejected: a cost field with a unit nobody knows, which probably means a typo or a format change.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from creditgate.errors import InvalidInput
from creditgate.pricing._exact import (
    FILE_BYTES_MAX,
    load_json_exact,
    load_yaml_exact,
    parse_decimal,
    parse_int,
    parse_per,
)
from creditgate.pricing.card_files import parse_long_context, parse_prices
from creditgate.pricing.conversion import check_currency
from creditgate.pricing.meters import DEFAULT_METERS, MeterRegistry
from creditgate.pricing.rate_cards import LongContextTier
from creditgate.pricing.sheets import SHEET_ENTRIES_MAX, SheetEntry, SkippedField, normalized_entry
from creditgate.pricing.unit_price import UnitPrice, check_unit

SheetFormat = Literal["litellm", "csv", "yaml"]
SHEET_FORMATS: Final = ("litellm", "csv", "yaml")

LITELLM_METER_FIELDS: Final = {
    "input_cost_per_token": "input_tokens",
    "cache_read_input_token_cost": "cached_input_tokens",
    "output_cost_per_token": "output_tokens",
    "output_cost_per_reasoning_token": "reasoning_tokens",
    "input_cost_per_request": "requests",
    "output_cost_per_image": "images",
    "input_cost_per_second": "audio_seconds",
    "input_cost_per_character": "characters",
}
# Units LiteLLM prices by that have no meter here. Fields using them are skipped, not rejected.
LITELLM_UNMETERED_UNITS: Final = frozenset({
    "token", "image", "second", "character", "request", "reasoning_token", "pixel", "audio_token",
    "image_token", "video_token", "audio_per_second", "video_per_second", "query", "page",
    "minute", "web_search_request",
})
# Suffixes that qualify a price (batch, priority, flex service tiers; long-cache writes; ...).
_LITELLM_MODIFIER: Final = re.compile(
    r"_(batches|batch_requests|priority|flex|cache_hit|above_\d+hr|above_\d+s_interval"
    r"|above_\d+k_tokens)$")
_LITELLM_TIER: Final = re.compile(r"^(?P<field>.+)_above_(?P<thousands>\d+)k_tokens$")
_LITELLM_UNIT: Final = re.compile(r"^(input|output)_cost_per_(?P<unit>.+)$")
_LITELLM_SKIP_ENTRIES: Final = frozenset({"sample_spec"})
_CSV_REQUIRED: Final = ("model", "provider", "meter", "price")
_CSV_OPTIONAL: Final = ("per", "currency", "mode", "unit", "above_input_tokens")


@dataclass(frozen=True, slots=True)
class ImportResult:
    source: str
    format: str
    entries: tuple[SheetEntry, ...]
    skipped_fields: tuple[SkippedField, ...] = ()
    skipped_entries: tuple[SkippedField, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format, "imported": len(self.entries),
            "skipped_entries": [{"entry": s.entry, "reason": s.reason} for s in self.skipped_entries],
            "skipped_fields": len(self.skipped_fields),
            "skipped_field_names": sorted({s.field for s in self.skipped_fields}),
        }


def _check_count(count: int, source: str) -> None:
    if count > SHEET_ENTRIES_MAX:
        raise InvalidInput(f"{source}: more than {SHEET_ENTRIES_MAX} models", param=source)


# ------------------------------------------------------------------------------------ LiteLLM
def _classify_litellm(key: str) -> tuple[str, int | None] | str:
    """(meter, tier threshold) for an imported field, else the reason it is skipped.

    Raises for a cost field with an unknown unit.
    """
    tier = _LITELLM_TIER.match(key)
    base, threshold = (tier.group("field"), int(tier.group("thousands")) * 1_000) if tier else (key, None)
    if base in LITELLM_METER_FIELDS:
        return LITELLM_METER_FIELDS[base], threshold
    if key.startswith("cache_creation_input_token_cost"):
        return "no meter for cache writes"
    if key.startswith("cache_read_input_token_cost"):
        return "cache-read price with a qualifier that has no meter"
    unit_match = _LITELLM_UNIT.match(key)
    if unit_match is None:
        return "a tool, storage or feature fee, not a usage meter"
    unit = unit_match.group("unit")
    qualified = False
    while (modifier := _LITELLM_MODIFIER.search(unit)) is not None:
        unit = unit[:modifier.start()]
        qualified = True
    if unit not in LITELLM_UNMETERED_UNITS:
        raise ValueError(unit)
    return ("a batch, priority or other qualified price" if qualified
            else f"no meter for {key.split('_')[0]} priced per {unit}")


def import_litellm(text: str | bytes, *, source: str = "litellm.json",
                   registry: MeterRegistry = DEFAULT_METERS, currency: str = "USD") -> ImportResult:
    """Import LiteLLM's ``model_prices_and_context_window.json`` format (prices in USD per unit).

    Floats are read as exact decimals (``parse_float=Decimal``) and never become floats.
    """
    data = load_json_exact(text, source=source)
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a JSON object of models", param=source)
    _check_count(len(data), source)
    entries: list[SheetEntry] = []
    skipped_fields: list[SkippedField] = []
    skipped_entries: list[SkippedField] = []
    for model, spec in data.items():
        if model in _LITELLM_SKIP_ENTRIES:
            continue
        where = f"{source}: {model}"
        if not isinstance(spec, dict):
            raise InvalidInput(f"{where}: expected an object", param=model)
        base: dict[str, UnitPrice] = {}
        tiers: dict[int, dict[str, UnitPrice]] = {}
        for key, value in spec.items():
            if "cost" not in key or value is None:
                continue
            field = f"{where}.{key}"
            try:
                kind = _classify_litellm(key)
            except ValueError as unit:
                raise InvalidInput(f"{field}: unknown unit {str(unit)!r} in a cost field",
                                   param=f"{model}.{key}") from None
            if isinstance(kind, str) or isinstance(value, (dict, list)):
                reason = kind if isinstance(kind, str) else "a structured price"
                skipped_fields.append(SkippedField(model, key, reason))
                continue
            meter, threshold = kind
            if isinstance(value, str):
                raise InvalidInput(f"{field}: expected a number, got the string {value!r}",
                                   param=f"{model}.{key}")
            try:
                amount = parse_decimal(value, field=f"{model}.{key}")
            except InvalidInput as error:
                raise InvalidInput(f"{source}: {error.message}", param=error.param) from None
            price = UnitPrice(amount, 1)
            (base if threshold is None else tiers.setdefault(threshold, {}))[meter] = price
        if not base and not tiers:
            skipped_entries.append(SkippedField(model, "", "no price on a supported meter"))
            continue
        notes = []
        if "output_tokens" in base and "reasoning_tokens" not in base:
            # Providers bill reasoning tokens as output tokens unless they say otherwise.
            base["reasoning_tokens"] = base["output_tokens"]
            for tier_prices in tiers.values():
                if "output_tokens" in tier_prices:
                    tier_prices.setdefault("reasoning_tokens", tier_prices["output_tokens"])
            notes.append("reasoning_tokens priced as output_tokens")
        provider = spec.get("litellm_provider")
        mode = spec.get("mode")
        entries.append(normalized_entry(
            model=model, provider=provider if isinstance(provider, str) else "unknown",
            mode=mode if isinstance(mode, str) else "unknown", currency=currency, prices=base,
            long_context=[LongContextTier(threshold, prices) for threshold, prices in tiers.items()],
            source=where, notes=notes, registry=registry))
    return ImportResult(source, "litellm", tuple(entries), tuple(skipped_fields),
                        tuple(skipped_entries))


# ------------------------------------------------------------------------------------ CSV
def import_price_csv(text: str, *, source: str = "prices.csv",
                     registry: MeterRegistry = DEFAULT_METERS) -> ImportResult:
    """Import our CSV: one row per model, meter and (optional) long-context tier.

    Columns: ``model,provider,meter,price`` and optionally ``per`` (default: the meter's basis,
    e.g. 1M for tokens), ``currency`` (USD), ``mode`` (chat), ``unit`` (checked against the
    meter) and ``above_input_tokens`` (the row is a long-context tier price).
    """
    if len(text) > FILE_BYTES_MAX:
        raise InvalidInput(f"{source}: file is larger than {FILE_BYTES_MAX} bytes", param=source)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise InvalidInput(f"{source}: the file is empty", param=source) from None
    except csv.Error as error:
        raise InvalidInput(f"{source} line 1: malformed CSV: {error}", param=source) from None
    for column in header:
        if column not in (*_CSV_REQUIRED, *_CSV_OPTIONAL):
            raise InvalidInput(f"{source} line 1: unknown column {column!r}", param=column)
    for column in _CSV_REQUIRED:
        if column not in header:
            raise InvalidInput(f"{source} line 1: missing column {column!r}", param=column)
    if len(set(header)) != len(header):
        raise InvalidInput(f"{source} line 1: a column appears twice", param=source)
    models: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str, int | None], int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InvalidInput(f"{source} line {line}: expected {len(header)} columns, found "
                                   f"{len(row)}", param=f"line {line}")
            cells = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
            _csv_row(cells, line, source, registry, models, seen)
    except csv.Error as error:
        raise InvalidInput(f"{source} line {reader.line_num}: malformed CSV: {error}",
                           param=source) from None
    _check_count(len(models), source)
    entries = tuple(
        normalized_entry(model=model, provider=info["provider"], mode=info["mode"],
                         currency=info["currency"], prices=info["prices"],
                         long_context=[LongContextTier(t, p) for t, p in info["tiers"].items()],
                         source=f"{source} line {info['line']}", registry=registry)
        for model, info in models.items())
    return ImportResult(source, "csv", entries)


def _csv_row(cells: Mapping[str, str], line: int, source: str, registry: MeterRegistry,
             models: dict[str, dict[str, Any]], seen: dict[tuple[str, str, int | None], int]) -> None:
    def where(column: str) -> str:
        return f"{source} line {line} column {column}"

    model = cells["model"]
    if not model:
        raise InvalidInput(f"{where('model')}: empty", param="model")
    meter = registry.get(cells["meter"], field=where("meter"))
    if cells.get("unit"):
        check_unit(cells["unit"], meter.unit, field=where("unit"))
    price = parse_decimal(cells["price"], field=where("price"))
    per = parse_per(cells.get("per") or meter.per_default, field=where("per"))
    threshold = (parse_int(cells["above_input_tokens"], field=where("above_input_tokens"), minimum=1)
                 if cells.get("above_input_tokens") else None)
    currency = check_currency(cells.get("currency") or "USD", field=where("currency"))
    key = (model, meter.name, threshold)
    if key in seen:
        raise InvalidInput(f"{source} line {line}: a second price for {model} {meter.name} "
                           f"(first on line {seen[key]})", param=f"line {line}")
    seen[key] = line
    info = models.setdefault(model, {"provider": cells["provider"], "mode": cells.get("mode") or "chat",
                                     "currency": currency, "prices": {}, "tiers": {}, "line": line})
    for column, value in (("provider", cells["provider"]), ("currency", currency)):
        if info[column] != value:
            raise InvalidInput(f"{where(column)}: {value!r} differs from {info[column]!r} on line "
                               f"{info['line']} for the same model", param=column)
    target = info["prices"] if threshold is None else info["tiers"].setdefault(threshold, {})
    target[meter.name] = UnitPrice(price, per)


# ------------------------------------------------------------------------------------ YAML
def import_price_yaml(text: str, *, source: str = "prices.yaml",
                      registry: MeterRegistry = DEFAULT_METERS) -> ImportResult:
    """Import our YAML: ``{currency: USD, models: {name: {provider, mode, prices, long_context}}}``.

    Prices are money per N units, written ``"2.50/1M"``, ``"0.04 per image"`` or as a bare
    number per the meter's basis.
    """
    data = load_yaml_exact(text, source=source)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise InvalidInput(f"{source}: expected a mapping with a 'models' mapping", param=source)
    for key in data:
        if key not in ("currency", "models"):
            raise InvalidInput(f"{source}: {key}: unknown field", param=str(key))
    default_currency = check_currency(data.get("currency", "USD"), field=f"{source}: currency")
    _check_count(len(data["models"]), source)
    entries = []
    for model, spec in data["models"].items():
        where = f"{source}: models.{model}"
        if not isinstance(spec, dict):
            raise InvalidInput(f"{where}: expected a mapping", param=str(model))
        for key in spec:
            if key not in ("provider", "mode", "currency", "prices", "long_context"):
                raise InvalidInput(f"{where}.{key}: unknown field", param=f"{model}.{key}")
        if not isinstance(spec.get("provider"), str):
            raise InvalidInput(f"{where}.provider: required", param=f"{model}.provider")
        if not isinstance(spec.get("prices"), dict):
            raise InvalidInput(f"{where}.prices: required mapping of meter to price",
                               param=f"{model}.prices")
        entries.append(normalized_entry(
            model=str(model), provider=spec["provider"], mode=str(spec.get("mode", "chat")),
            currency=spec.get("currency", default_currency),
            prices=parse_prices(spec["prices"], registry, field=f"{where}.prices"),
            long_context=parse_long_context(spec.get("long_context"), registry,
                                            field=f"{where}.long_context"),
            source=where, registry=registry))
    return ImportResult(source, "yaml", tuple(entries))


# ------------------------------------------------------------------------------------ any
def import_sheet_text(text: str, sheet_format: str, *, source: str,
                      registry: MeterRegistry = DEFAULT_METERS) -> ImportResult:
    if sheet_format == "litellm":
        return import_litellm(text, source=source, registry=registry)
    if sheet_format == "csv":
        return import_price_csv(text, source=source, registry=registry)
    if sheet_format == "yaml":
        return import_price_yaml(text, source=source, registry=registry)
    raise InvalidInput(f"format: must be one of {', '.join(SHEET_FORMATS)}, got {sheet_format!r}",
                       param="format")


def read_text(path: Path) -> str:
    """Read a whole input file, bounded, as UTF-8; errors become one-line InvalidInput."""
    try:
        size = path.stat().st_size
        if size > FILE_BYTES_MAX:
            raise InvalidInput(f"{path}: file is larger than {FILE_BYTES_MAX} bytes", param=str(path))
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file", param=str(path)) from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a file", param=str(path)) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text", param=str(path)) from None
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read ({error.strerror})", param=str(path)) from None


def import_sheet(path: Path, sheet_format: str, *,
                 registry: MeterRegistry = DEFAULT_METERS) -> ImportResult:
    return import_sheet_text(read_text(path), sheet_format, source=path.name, registry=registry)

