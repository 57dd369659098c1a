"""Provider price sheets: LiteLLM JSON, our CSV and YAML; normalization; bad input rejected."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from tests.unit.pricing.conftest import FIXTURES

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import parse_amount
from creditgate.pricing import (
    ConversionRate,
    JsonFilePriceCatalog,
    PriceSheet,
    PricingEngine,
    UnitPrice,
    import_litellm,
    import_price_csv,
    import_price_yaml,
    sheet_to_rate_card,
)
from creditgate.pricing.sheet_import import import_sheet

USD = ConversionRate("USD", Decimal(100))
PER_1M = 1_000_000


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def price(amount: str, per: int = PER_1M) -> UnitPrice:
    return UnitPrice(Decimal(amount), per)


def test_litellm_map_imports_published_prices_per_million_tokens() -> None:
    result = import_litellm(text("litellm_prices.json"), source="litellm_prices.json")
    sheet = PriceSheet(result.entries)
    gpt = sheet.get("gpt-4o")
    assert (gpt.provider, gpt.mode, gpt.currency) == ("openai", "chat", "USD")
    assert gpt.prices["input_tokens"] == price("2.5")
    assert gpt.prices["cached_input_tokens"] == price("1.25")
    assert gpt.prices["output_tokens"] == price("10")
    # Reasoning is billed as output unless the provider gives a reasoning price.
    assert gpt.prices["reasoning_tokens"] == price("10")
    assert gpt.credit_prices(USD)["input_tokens"] == price("250")


def test_litellm_floats_are_read_as_exact_decimals() -> None:
    sheet = PriceSheet(import_litellm(text("litellm_prices.json")).entries)
    # The float 3e-07 is really 2.99999999999999986e-07 and 2.25e-05 * 1000 * 1000 computes
    # 22.500000000000004; read as decimals they are exactly 0.3 and 22.5 per 1M tokens.
    assert Decimal.from_float(3e-07) != Decimal("3e-07")
    assert 2.25e-05 * 1000 * 1000 != 22.5
    assert sheet.get("claude-sonnet-4-20250514").prices["cached_input_tokens"] == price("0.3")
    (tier,) = sheet.get("claude-sonnet-4-20250514").long_context
    assert tier.prices["output_tokens"] == price("22.5")
    assert sheet.get("o3-mini").prices["input_tokens"] == price("1.1")
    assert sheet.get("o3-mini").prices["output_tokens"] == price("4.4")
    for entry in sheet.entries:
        for unit_price in entry.prices.values():
            assert isinstance(unit_price.amount, Decimal)
            assert isinstance(unit_price.per, int)


def test_litellm_long_context_tiers_and_own_unit_meters() -> None:
    sheet = PriceSheet(import_litellm(text("litellm_prices.json")).entries)
    gemini = sheet.get("gemini/gemini-1.5-pro")
    (tier,) = gemini.long_context
    assert tier.above_input_tokens == 128_000
    assert tier.prices["input_tokens"] == price("2.5")
    assert tier.prices["output_tokens"] == price("10")
    (sonnet_tier,) = sheet.get("claude-sonnet-4-20250514").long_context
    assert sonnet_tier.above_input_tokens == 200_000
    assert sonnet_tier.prices["cached_input_tokens"] == price("0.6")
    assert sonnet_tier.prices["output_tokens"] == price("22.5")
    # Per-image, per-second and per-character prices stay in their own units.
    assert sheet.get("dall-e-3").prices == {"images": price("0.04", 1)}
    assert sheet.get("whisper-1").prices == {"audio_seconds": price("0.0001", 1)}
    assert sheet.get("tts-1").prices == {"characters": price("0.000015", 1)}
    assert sheet.get("vertex_ai/gemini-1.0-pro").prices["characters"] == price("0.000000125", 1)


def test_litellm_fields_without_a_meter_are_skipped_and_reported() -> None:
    result = import_litellm(text("litellm_prices.json"))
    skipped = {(s.entry, s.field) for s in result.skipped_fields}
    assert ("gpt-4o", "input_cost_per_token_batches") in skipped
    assert ("claude-3-5-sonnet-20241022", "cache_creation_input_token_cost") in skipped
    assert ("whisper-1", "output_cost_per_second") in skipped
    assert ("vertex_ai/gemini-1.0-pro", "output_cost_per_character") in skipped
    assert ("gpt-4o-search-preview", "search_context_cost_per_query") in skipped
    assert [s.entry for s in result.skipped_entries] == ["1024-x-1024/dall-e-2"]
    assert "sample_spec" not in {entry.model for entry in result.entries}
    assert len(result.entries) == 12


@pytest.mark.parametrize(("body", "message", "param"), [
    ('{"m": {"input_cost_per_token": -1e-06}}', "must not be negative", "m.input_cost_per_token"),
    ('{"m": {"input_cost_per_token": NaN}}', "not a finite number", "m.input_cost_per_token"),
    ('{"m": {"output_cost_per_token": Infinity}}', "not a finite number",
     "m.output_cost_per_token"),
    ('{"m": {"input_cost_per_token": "0.000001"}}', "expected a number, got the string",
     "m.input_cost_per_token"),
    ('{"m": {"input_cost_per_token": true}}', "boolean", "m.input_cost_per_token"),
    ('{"m": {"input_cost_per_furlong": 1e-06}}', "unknown unit 'furlong'",
     "m.input_cost_per_furlong"),
    ('{"m": {"input_cost_per_token_above_128k_tokens": 1e-06}}', "has no base price", None),
    ('{"m": "cheap"}', "expected an object", "m"),
    ('["not", "a", "map"]', "expected a JSON object", None),
    ('{"m": {"input_cost_per_token": 1e-06,}}', "malformed JSON at line 1", None),
    ('{\n  "m": {\n    "input_cost_per_token": 1e-06\n  ', "malformed JSON at line 4", None),
])
def test_bad_litellm_input_is_rejected_naming_the_field(body: str, message: str,
                                                         param: str | None) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        import_litellm(body, source="bad.json")
    if param is not None:
        assert raised.value.param == param


def test_one_bad_entry_rejects_the_whole_litellm_file() -> None:
    body = '{"good": {"input_cost_per_token": 1e-06}, "bad": {"input_cost_per_token": -1}}'
    with pytest.raises(InvalidInput, match="bad.input_cost_per_token"):
        import_litellm(body)


def test_our_csv_sheet_with_tiers_and_other_units() -> None:
    sheet = PriceSheet(import_price_csv(text("prices.csv"), source="prices.csv").entries)
    sonnet = sheet.get("claude-sonnet-4")
    assert sonnet.prices["input_tokens"] == price("3")
    assert sonnet.long_context[0].prices["output_tokens"] == price("22.50")
    # $0.006 per 60 seconds is normalized to $0.0001 per second.
    assert sheet.get("whisper-1").prices["audio_seconds"] == price("0.0001", 1)
    assert sheet.get("dall-e-3").prices["images"] == price("0.04", 1)


@pytest.mark.parametrize(("rows", "message"), [
    ("m,p,chat,input_tokens,-2,1M,,", "line 2 column price: must not be negative"),
    ("m,p,chat,input_tokens,two,1M,,", "line 2 column price: 'two' is not a decimal number"),
    ("m,p,chat,input_tokens,NaN,1M,,", "line 2 column price: 'NaN' is not a decimal number"),
    ("m,p,chat,furlongs,1,1M,,", "line 2 column meter: unknown meter 'furlongs'"),
    ("m,p,chat,input_tokens,1,1M,furlongs,", "line 2 column unit: unknown unit 'furlongs'"),
    ("m,p,chat,input_tokens,1,1M,images,", "unknown unit 'images' \\(expected tokens\\)"),
    ("m,p,chat,input_tokens,1,0,,", "line 2 column per: must be at least 1"),
    ("m,p,chat,input_tokens,1,1M,,\nm,p,chat,input_tokens,2,1M,,",
     "line 3: a second price for m input_tokens \\(first on line 2\\)"),
    ("m,p,chat,input_tokens,1,1M,,\nm,q,chat,output_tokens,2,1M,,",
     "line 3 column provider: 'q' differs"),
    ("m,p,chat,input_tokens,1", "line 2: expected 8 columns, found 5"),
    ("m,p,chat,output_tokens,1,1M,,128000", "has no base price"),
])
def test_bad_csv_rows_are_rejected_naming_the_line(rows: str, message: str) -> None:
    header = "model,provider,mode,meter,price,per,unit,above_input_tokens\n"
    with pytest.raises(InvalidInput, match=message):
        import_price_csv(header + rows + "\n", source="prices.csv")


@pytest.mark.parametrize(("body", "message"), [
    ("", "the file is empty"),
    ("model,provider,meter\n", "missing column 'price'"),
    ("model,provider,meter,price,colour\n", "unknown column 'colour'"),
])
def test_bad_csv_headers_are_rejected(body: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        import_price_csv(body)


def test_our_yaml_sheet_keeps_unquoted_decimals_exact() -> None:
    sheet = PriceSheet(import_price_yaml(text("prices.yaml")).entries)
    assert sheet.get("gpt-4o").prices["input_tokens"] == price("2.50")
    assert sheet.get("gpt-4o").prices["output_tokens"] == price("10")  # bare number: per 1M
    assert sheet.get("gemini-1.5-flash").long_context[0].prices["cached_input_tokens"] == \
        price("0.0375")
    unquoted = "models:\n  m:\n    provider: p\n    prices: {input_tokens: 0.1}\n"
    assert PriceSheet(import_price_yaml(unquoted).entries).get("m").prices["input_tokens"] == \
        price("0.1")


@pytest.mark.parametrize(("body", "message"), [
    ("models:\n  m: {prices: {input_tokens: '1'}}\n", "provider: required"),
    ("models:\n  m: {provider: p, prices: {input_tokens: '-1'}}\n", "must not be negative"),
    ("models:\n  m: {provider: p, prices: {input_tokens: '.nan'}}\n", "not a price"),
    ("models:\n  m: {provider: p, prices: {stones: '1'}}\n", "unknown meter 'stones'"),
    ("models:\n  m: {provider: p, prices: {images: '1 per furlong'}}\n", "unknown unit"),
    ("models:\n  m: {provider: p, price: {input_tokens: '1'}}\n", "price: unknown field"),
    ("models: [\n", "malformed YAML at line"),
    ("- just a list\n", "expected a mapping with a 'models' mapping"),
])
def test_bad_yaml_sheets_are_rejected_naming_the_field(body: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        import_price_yaml(body, source="prices.yaml")


def test_a_sheet_becomes_a_rate_card_at_the_conversion_rate() -> None:
    sheet = PriceSheet(import_litellm(text("litellm_prices.json")).entries)
    engine = PricingEngine(sheet_to_rate_card(sheet, USD))
    usage = {"input_tokens": 1_000, "output_tokens": 200}
    assert engine.quote("gpt-4o", usage, 0).credits == parse_amount("0.45")
    long_prompt = {"input_tokens": 200_000, "output_tokens": 1_000}
    assert engine.quote("gemini/gemini-1.5-pro", long_prompt, 0).credits == parse_amount("51")
    marked_up = PricingEngine(sheet_to_rate_card(sheet, USD, markup_percent=Decimal(20)))
    assert marked_up.quote("gpt-4o", usage, 0).credits == parse_amount("0.54")


def test_the_json_store_merges_imports_by_model(tmp_path: Path) -> None:
    store = JsonFilePriceCatalog(tmp_path / "store" / "prices.json")
    assert len(store.load_sheet()) == 0
    store.save_entries(import_sheet(FIXTURES / "litellm_prices.json", "litellm").entries)
    sheet = store.save_entries(import_sheet(FIXTURES / "prices.yaml", "yaml").entries)
    # gpt-4o came from both files: the later import replaced it; the rest are kept.
    assert len(sheet) == 12 + 2
    reloaded = store.load_sheet()
    assert reloaded == sheet
    assert reloaded.get("gpt-4o").source.startswith("prices.yaml")
    assert reloaded.get("o3-mini").prices["input_tokens"] == price("1.1")
