"""``creditgate prices``: import provider price sheets, list, quote, explain, estimate, compare.

Until the database holds them, imported sheets live in a JSON file (``--store``, default
``$CREDITGATE_PRICE_STORE`` or ``.creditgate/price_sheets.json``) and rate cards are YAML files
(``--card``; ``sample`` is the packaged sample card, ``sheets`` a card built from the store at
``--credits-per-unit``). Every command accepts ``--json``. Bad input exits non-zero with one line
on stderr.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import typer
from rich.table import Table

from creditgate.cli.common import JSON_OPTION, cli_clock, console, fail, print_json
from creditgate.clock import iso, parse_iso
from creditgate.errors import CreditgateError, InvalidInput
from creditgate.ledger.credits import AmountError, format_amount
from creditgate.pricing._exact import format_decimal, load_yaml_exact, parse_decimal, parse_int
from creditgate.pricing.bundles import Bundle, parse_bundle_catalog
from creditgate.pricing.card_files import load_card_text
from creditgate.pricing.catalog import JsonFilePriceCatalog
from creditgate.pricing.compare import Comparison, compare, load_workload_text
from creditgate.pricing.conversion import ConversionRate, Conversions, check_currency
from creditgate.pricing.meters import DEFAULT_METERS
from creditgate.pricing.rating import PricingEngine
from creditgate.pricing.rules import LoadSnapshot, PricingContext
from creditgate.pricing.samples import sample_bundles, sample_engine, sample_price_sheet
from creditgate.pricing.sheet_import import SHEET_FORMATS, import_sheet_text, read_text
from creditgate.pricing.sheets import SheetEntry, sheet_to_rate_card
from creditgate.pricing.unit_price import format_count

app = typer.Typer(help="Prices: provider sheets, rate cards, quotes, explanations, comparisons",
                  no_args_is_help=True)

STORE_DEFAULT: Final = Path(".creditgate") / "price_sheets.json"
STORE_OPTION = typer.Option(None, "--store", help="Price sheet store (JSON file; default "
                            "$CREDITGATE_PRICE_STORE or .creditgate/price_sheets.json)")
CARD_OPTION = typer.Option("sample", "--card", help="Rate card: a YAML file, 'sample' (packaged) "
                           "or 'sheets' (the imported sheets converted to credits)")
RATE_OPTION = typer.Option("100", "--credits-per-unit", help="Credits per unit of money")
CURRENCY_OPTION = typer.Option("USD", "--currency", help="Currency of the conversion rate")
MODEL_OPTION = typer.Option(None, "--model", "-m", help="Model or deployment name")
USAGE_OPTION = typer.Option(None, "--usage", "-u", help="meter=quantity pairs, e.g. "
                            "input_tokens=1000,output_tokens=200")
AT_OPTION = typer.Option(None, "--at", help="Usage time, ISO 8601 with timezone (default: now)")
ORG_OPTION = typer.Option(None, "--org", help="Organization, for contract prices and discounts")
UTILISATION_OPTION = typer.Option(None, "--utilisation", help="Deployment utilisation, percent")
QUEUE_OPTION = typer.Option(None, "--queue-depth", help="Deployment queue depth")
PERIOD_OPTION = typer.Option(None, "--period-usage", help="The org's usage so far this period, "
                             "meter=quantity pairs")
SOURCE_ARGUMENT = typer.Argument(None, help="Price sheet file", show_default=False)
WORKLOAD_OPTION = typer.Option(None, "--workload", "-w", help="Workload file (YAML or JSON)")
COMMON_METERS: Final = ("input_tokens", "cached_input_tokens", "output_tokens")


@contextmanager
def _user_errors(as_json: bool) -> Iterator[None]:
    """Operating errors become one line (text, or a JSON object with --json) and exit 1."""
    try:
        yield
    except CreditgateError as error:
        message = " ".join(error.message.split())
        if as_json:
            print_json(error.to_dict())
        fail(message)
    except AmountError as error:
        fail(" ".join(str(error).split()))


def _store(path: Path | None) -> JsonFilePriceCatalog:
    chosen = path or Path(os.environ.get("CREDITGATE_PRICE_STORE") or STORE_DEFAULT)
    return JsonFilePriceCatalog(chosen)


def _conversion(credits_per_unit: str, currency: str) -> ConversionRate:
    return ConversionRate(check_currency(currency),
                          parse_decimal(credits_per_unit, field="credits-per-unit",
                                        allow_zero=False))


def _engine(card: str, store: Path | None, conversion: ConversionRate) -> PricingEngine:
    if card == "sample":
        return sample_engine()
    if card == "sheets":
        sheet = _store(store).load_sheet()
        if not len(sheet):
            raise InvalidInput("the price store is empty: run 'creditgate prices import' first",
                               param="card")
        return PricingEngine(sheet_to_rate_card(sheet, conversion))
    document = load_card_text(read_text(Path(card)), source=card)
    return PricingEngine(document.card, overrides=document.overrides, registry=document.registry)


def _required(value: str | None, option: str) -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"{option} is required", param=option.lstrip("-"))
    return value


def _context(utilisation: str | None, queue_depth: str | None,
             period_usage: str | None) -> PricingContext | None:
    load = None
    if utilisation is not None or queue_depth is not None:
        load = LoadSnapshot(
            parse_int(utilisation or 0, field="utilisation", maximum=1_000),
            parse_int(queue_depth or 0, field="queue-depth", maximum=10**9))
    period = (DEFAULT_METERS.parse_usage(period_usage, field="period-usage")
              if period_usage else None)
    return PricingContext(load, period) if load is not None or period is not None else None


def _at(text: str | None) -> int:
    return cli_clock().now_us() if text is None else parse_iso(text, field="at")


# ------------------------------------------------------------------------------------ import
@app.command("import")
def import_command(
        source: Path | None = SOURCE_ARGUMENT,
        sheet_format: str | None = typer.Option(None, "--format", "-f",
                                                help="litellm, csv or yaml"),
        store: Path | None = STORE_OPTION,
        dry_run: bool = typer.Option(False, "--dry-run", help="Check the file, store nothing"),
        as_json: bool = JSON_OPTION) -> None:
    """Import a provider price sheet; all or nothing."""
    with _user_errors(as_json):
        path = Path(_required(str(source) if source else None, "SOURCE"))
        chosen = _required(sheet_format, "--format").strip().lower()
        if chosen not in SHEET_FORMATS:
            raise InvalidInput(f"--format must be one of {', '.join(SHEET_FORMATS)}",
                               param="format")
        result = import_sheet_text(read_text(path), chosen, source=path.name)
        catalog = _store(store)
        total = len(catalog.load_sheet().merged(result.entries)) if dry_run else len(
            catalog.save_entries(result.entries))
    summary = {**result.summary(), "store": str(catalog.path), "stored_models": total,
               "dry_run": dry_run}
    if as_json:
        return print_json(summary)
    verb = "checked" if dry_run else "imported"
    typer.echo(f"{verb} {len(result.entries)} models from {path.name} ({chosen}); "
               f"{total} models in {catalog.path}")
    if result.skipped_entries:
        typer.echo(f"skipped {len(result.skipped_entries)} entries without a supported meter")
    if result.skipped_fields:
        names = summary["skipped_field_names"]
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        typer.echo(f"skipped {len(result.skipped_fields)} fields without a meter ({shown})")


# ------------------------------------------------------------------------------------ list
def _entry_row(entry: SheetEntry, conversion: ConversionRate) -> dict[str, Any]:
    credits = entry.credit_prices(conversion) if entry.currency == conversion.currency else {}
    return {
        "model": entry.model, "provider": entry.provider, "mode": entry.mode,
        "currency": entry.currency,
        "prices": {m: p.to_text() for m, p in entry.prices.items()},
        "credits": {m: p.to_text() for m, p in credits.items()},
        "long_context": [{"above_input_tokens": t.above_input_tokens,
                          "prices": {m: p.to_text() for m, p in t.prices.items()}}
                         for t in entry.long_context],
        "notes": list(entry.notes),
    }


@app.command("list")
def list_command(
        card: str | None = typer.Option(None, "--card", help="List a rate card's models instead "
                                        "of the imported sheets ('sample' or a YAML file)"),
        provider: str | None = typer.Option(None, "--provider", help="Only this provider"),
        at: str | None = AT_OPTION, store: Path | None = STORE_OPTION,
        credits_per_unit: str = RATE_OPTION, currency: str = CURRENCY_OPTION,
        as_json: bool = JSON_OPTION) -> None:
    """List imported provider prices (money and credits), or a rate card's current prices."""
    with _user_errors(as_json):
        conversion = _conversion(credits_per_unit, currency)
        if card is not None:
            return _list_card(_engine(card, store, conversion), _at(at), as_json)
        sheet = _store(store).load_sheet()
        rows = [_entry_row(entry, conversion) for entry in sheet.entries
                if provider is None or entry.provider == provider]
    if as_json:
        return print_json(rows)
    if not rows:
        typer.echo("no imported prices; run 'creditgate prices import FILE --format ...'")
        return None
    table = Table("model", "provider", "mode", *[f"{m} /1M" for m in COMMON_METERS], "other",
                  "long context", title=f"Provider prices (credits at {conversion.describe()})")
    for entry in (e for e in sheet.entries if provider is None or e.provider == provider):
        credits = (entry.credit_prices(conversion) if entry.currency == conversion.currency
                   else {})
        cells = []
        for meter in COMMON_METERS:
            price = entry.prices.get(meter)
            cells.append("" if price is None else
                         f"{format_decimal(price.amount)} {entry.currency} / "
                         f"{format_decimal(credits[meter].amount) if credits else '-'} cr")
        other = "; ".join(f"{m} {p.to_text()} {entry.currency}" for m, p in entry.prices.items()
                          if m not in COMMON_METERS and m != "reasoning_tokens")
        tiers = "; ".join(f"> {format_count(t.above_input_tokens)}" for t in entry.long_context)
        table.add_row(entry.model, entry.provider, entry.mode, *cells, other, tiers)
    console.print(table)
    return None


def _list_card(engine: PricingEngine, at_us: int, as_json: bool) -> None:
    version = engine.card.version_at(at_us)
    rows: list[dict[str, Any]] = [
        {"model": name, "prices": {m: p.to_text() for m, p in rate.prices.items()},
         "long_context": [t.above_input_tokens for t in rate.long_context]}
        for name, rate in sorted(version.models.items())]
    if as_json:
        print_json({"card": engine.card.name, "version": version.version,
                    "effective_from": iso(version.effective_from_us), "models": rows,
                    "rules": [rule.name for rule in version.rules]})
        return
    table = Table("model", "prices (credits per N units)", "long context above",
                  title=f"Card {engine.card.name} v{version.version} "
                        f"(from {iso(version.effective_from_us)})")
    for row in rows:
        table.add_row(row["model"], ", ".join(f"{m} {p}" for m, p in row["prices"].items()),
                      ", ".join(format_count(t) for t in row["long_context"]))
    console.print(table)


# ------------------------------------------------------------------------------------ quote
@app.command("quote")
def quote_command(model: str | None = MODEL_OPTION, usage: str | None = USAGE_OPTION,
                  at: str | None = AT_OPTION, org: str | None = ORG_OPTION,
                  utilisation: str | None = UTILISATION_OPTION,
                  queue_depth: str | None = QUEUE_OPTION, period_usage: str | None = PERIOD_OPTION,
                  card: str = CARD_OPTION, store: Path | None = STORE_OPTION,
                  credits_per_unit: str = RATE_OPTION, currency: str = CURRENCY_OPTION,
                  as_json: bool = JSON_OPTION) -> None:
    """The exact credits a usage costs."""
    with _user_errors(as_json):
        engine = _engine(card, store, _conversion(credits_per_unit, currency))
        charge = engine.quote(_required(model, "--model"),
                              engine.registry.parse_usage(_required(usage, "--usage")), _at(at),
                              org=org, context=_context(utilisation, queue_depth, period_usage))
    if as_json:
        return print_json(charge.to_dict())
    rules = "; ".join(f"{r.name} ×{r.to_dict()['multiplier']}" for r in charge.rules)
    typer.echo(f"{format_amount(charge.credits)} credits ({charge.model}, card {charge.card} "
               f"v{charge.version}{'; ' + rules if rules else ''})")
    return None


@app.command("explain")
def explain_command(model: str | None = MODEL_OPTION, usage: str | None = USAGE_OPTION,
                    at: str | None = AT_OPTION, org: str | None = ORG_OPTION,
                    utilisation: str | None = UTILISATION_OPTION,
                    queue_depth: str | None = QUEUE_OPTION,
                    period_usage: str | None = PERIOD_OPTION, card: str = CARD_OPTION,
                    store: Path | None = STORE_OPTION, credits_per_unit: str = RATE_OPTION,
                    currency: str = CURRENCY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Show how a charge is made: card version, base price, each rule, rounding, final credits."""
    with _user_errors(as_json):
        engine = _engine(card, store, _conversion(credits_per_unit, currency))
        explanation = engine.explain(_required(model, "--model"),
                                     engine.registry.parse_usage(_required(usage, "--usage")),
                                     _at(at), org=org,
                                     context=_context(utilisation, queue_depth, period_usage))
    if as_json:
        return print_json(explanation.to_dict())
    typer.echo(explanation.render())
    return None


@app.command("estimate")
def estimate_command(model: str | None = MODEL_OPTION,
                     prompt_tokens: str | None = typer.Option(None, "--prompt-tokens"),
                     max_output_tokens: str | None = typer.Option(None, "--max-output-tokens"),
                     at: str | None = AT_OPTION, org: str | None = ORG_OPTION,
                     utilisation: str | None = UTILISATION_OPTION,
                     queue_depth: str | None = QUEUE_OPTION,
                     period_usage: str | None = PERIOD_OPTION, card: str = CARD_OPTION,
                     store: Path | None = STORE_OPTION, credits_per_unit: str = RATE_OPTION,
                     currency: str = CURRENCY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The most one request can cost: what the gateway reserves before forwarding it."""
    with _user_errors(as_json):
        engine = _engine(card, store, _conversion(credits_per_unit, currency))
        name = _required(model, "--model")
        bound = engine.estimate_max(
            name, parse_int(_required(prompt_tokens, "--prompt-tokens"), field="prompt-tokens"),
            parse_int(_required(max_output_tokens, "--max-output-tokens"),
                      field="max-output-tokens"),
            _at(at), org=org, context=_context(utilisation, queue_depth, period_usage))
    if as_json:
        return print_json({"model": name, "credits": format_amount(bound), "credits_micros": bound})
    typer.echo(f"at most {format_amount(bound)} credits")
    return None


# ------------------------------------------------------------------------------------ compare
def _bundles(value: str | None) -> tuple[Bundle, ...]:
    if value is None:
        return ()
    if value == "sample":
        return sample_bundles()
    return parse_bundle_catalog(load_yaml_exact(read_text(Path(value)), source=value),
                                source=value)


@app.command("compare")
def compare_command(
        workload: Path | None = WORKLOAD_OPTION,
        bundles: str | None = typer.Option("sample", "--bundles",
                                           help="Bundle catalog YAML, 'sample', or 'none'"),
        sheet: str = typer.Option("store", "--sheet", help="'store' (imported sheets) or 'sample'"),
        output: str = typer.Option("table", "--output", "-o", help="table, json or csv"),
        store: Path | None = STORE_OPTION, credits_per_unit: str = RATE_OPTION,
        currency: str = CURRENCY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Rank providers and models by total cost on a workload, and bundles by cost per used credit."""
    with _user_errors(as_json or output == "json"):
        if output not in ("table", "json", "csv"):
            raise InvalidInput("--output must be table, json or csv", param="output")
        path = Path(_required(str(workload) if workload else None, "--workload"))
        parsed = load_workload_text(read_text(path), source=path.name)
        if sheet not in ("store", "sample"):
            raise InvalidInput("--sheet must be store or sample", param="sheet")
        prices = sample_price_sheet() if sheet == "sample" else _store(store).load_sheet()
        if not len(prices):
            raise InvalidInput("the price store is empty: run 'creditgate prices import' first, "
                               "or pass --sheet sample", param="sheet")
        result = compare(prices, parsed, bundles=_bundles(None if bundles == "none" else bundles),
                         conversions=Conversions([_conversion(credits_per_unit, currency)]))
    if as_json or output == "json":
        return print_json(result.to_dict())
    if output == "csv":
        typer.echo(_csv(result), nl=False)
        return None
    _print_comparison(result)
    return None


def _csv(result: Comparison) -> str:
    rows = result.csv_rows()
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _print_comparison(result: Comparison) -> None:
    models = Table("family", "rank", "model", "provider", "cost", "credits", "prices",
                   title=f"Models for workload {result.workload.name} "
                         f"(per {result.workload.period_days} days)")
    rank, family = 0, None
    for cost in result.models:
        rank = rank + 1 if cost.family == family else 1
        family = cost.family
        models.add_row(cost.family, str(rank), cost.model, cost.provider,
                       f"{format_amount(cost.money)} {cost.currency}", format_amount(cost.credits),
                       cost.price_set)
    console.print(models)
    providers = Table("rank", "provider", "credits", "models", "missing", title="Providers")
    for index, total in enumerate(result.providers, start=1):
        providers.add_row(str(index) if total.complete else "-", total.provider,
                          format_amount(total.credits),
                          ", ".join(f"{c.family}: {c.model}" for c in total.choices),
                          ", ".join(total.missing))
    console.print(providers)
    if not result.bundles:
        typer.echo(f"bundles: not ranked (burn rate {result.burn_source})")
        return
    burn = format_amount(result.burn_credits_per_period or 0)
    bundles = Table("rank", "bundle", "price", "credits", "valid days", "rollover", "lasts days",
                    "expire unused", "cost per used credit",
                    title=f"Bundles at {burn} credits per {result.workload.period_days} days "
                          f"({result.burn_source})")
    for index, value in enumerate(result.bundles, start=1):
        data = value.to_dict()
        bundles.add_row(str(index), data["bundle"], f"{data['price']} {data['currency']}",
                        data["credits"], str(data["validity_days"] or "never"), data["rollover"],
                        data["days_to_use"], data["expired_credits"],
                        data["cost_per_used_credit"] or "-")
    console.print(bundles)


__all__ = ["app"]
