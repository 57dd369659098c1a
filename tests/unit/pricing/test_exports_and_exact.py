"""The package's public surface, and the exact-number helpers every price goes through."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditgate import pricing
from creditgate.errors import InvalidInput
from creditgate.pricing._exact import (
    decimal_ratio,
    format_ratio,
    load_json_exact,
    load_yaml_exact,
    parse_decimal,
    parse_per,
    ratio_to_decimal,
)
from creditgate.pricing.unit_price import UnitPrice


def test_the_public_surface_is_pinned() -> None:
    assert sorted(pricing.__all__) == sorted([
        "BUILTIN_METERS", "DEFAULT_CONVERSION", "DEFAULT_METERS", "SHEET_FORMATS",
        "AppliedRule", "Bundle", "BundlePurchase", "CardDocument", "Charge", "Comparison",
        "ConversionRate", "Conversions", "Explanation", "GrantSpec", "ImportResult",
        "InMemoryPriceCatalog", "JsonFilePriceCatalog", "LoadSnapshot", "LongContextTier",
        "Meter", "MeterRegistry", "ModelRate", "OrgOverride", "Overrides", "PriceCatalog",
        "PriceSheet", "PricingContext", "PricingEngine", "RateCard", "RateCardVersion",
        "RolloverPolicy", "SheetEntry", "Step", "SurgeRule", "TimeWindowRule", "UnitPrice",
        "Usage", "UsageRecord", "VolumeTier", "VolumeTierRule", "Workload", "WorkloadItem",
        "compare", "import_litellm", "import_price_csv", "import_price_yaml", "import_sheet",
        "import_sheet_text", "load_card_text", "load_workload_text", "parse_bundle_catalog",
        "parse_card_document", "parse_workload", "purchase_grants", "rank_bundles",
        "rollover_amount", "sheet_to_rate_card", "validate_versions"])
    for name in pricing.__all__:
        assert hasattr(pricing, name), name


def test_the_builtin_meters_and_their_units() -> None:
    units = {meter.name: meter.unit for meter in pricing.DEFAULT_METERS}
    assert units == {
        "input_tokens": "token", "cached_input_tokens": "token", "output_tokens": "token",
        "reasoning_tokens": "token", "requests": "request", "images": "image",
        "audio_seconds": "second", "characters": "character", "compute_ms": "millisecond",
        "training_gpu_hours": "gpu_hour"}


@pytest.mark.parametrize(("value", "expected"), [
    ("2.50", Decimal("2.50")), ("1e-06", Decimal("0.000001")), (3, Decimal(3)),
    ("1_000", Decimal(1000)), (Decimal("0.1"), Decimal("0.1")), ("0", Decimal(0)),
])
def test_parse_decimal_accepts_exact_numbers(value: object, expected: Decimal) -> None:
    assert parse_decimal(value, field="price") == expected


@pytest.mark.parametrize(("value", "message"), [
    (2.5, "floats are not accepted"), (True, "boolean"), ("-1", "must not be negative"),
    ("NaN", "not a decimal number"), ("inf", "not a decimal number"),
    (Decimal("NaN"), "not a finite number"), (Decimal("-Infinity"), "not a finite number"),
    ("1e-19", "more than 18 decimal places"), ("1e13", "above the maximum"),
    (None, "expected a number"), ("", "not a decimal number"),
])
def test_parse_decimal_rejects_everything_else(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_decimal(value, field="price")


def test_per_counts_and_price_texts() -> None:
    assert [parse_per(text, field="per") for text in ("1", "1K", "1M", "1_000_000", 60)] == [
        1, 1_000, 1_000_000, 1_000_000, 60]
    assert UnitPrice.parse("2.5/1M", field="p", per_default=1) == UnitPrice(Decimal("2.5"), 10**6)
    assert UnitPrice.parse("0.04 per image", field="p", per_default=1, unit="image") == \
        UnitPrice(Decimal("0.04"), 1)
    assert UnitPrice.parse("15 per 1M characters", field="p", per_default=1,
                           unit="character") == UnitPrice(Decimal(15), 10**6)
    assert UnitPrice.parse({"credits": "3", "per": "1K"}, field="p", per_default=1) == \
        UnitPrice(Decimal(3), 1_000)
    assert UnitPrice(Decimal("0.006"), 60).normalized(1) == UnitPrice(Decimal("0.0001"), 1)
    assert UnitPrice(Decimal(1), 3).normalized(1) == UnitPrice(Decimal(1), 3)  # 1/3 stays as is


@given(st.integers(-10**20, 10**20), st.integers(-30, 10))
def test_decimal_ratio_round_trips_exactly(digits: int, exponent: int) -> None:
    number = Decimal(digits).scaleb(exponent)
    numerator, denominator = decimal_ratio(number)
    assert Decimal(numerator) / Decimal(denominator) == number or denominator > 10**28
    assert ratio_to_decimal((numerator, denominator)) == number


def test_format_ratio_is_exact_or_marked_approximate() -> None:
    assert format_ratio((45, 100)) == "0.45"
    assert format_ratio((1, 3)) == "≈0.333333333333"
    assert format_ratio((10, 1)) == "10"


def test_loaders_never_produce_floats() -> None:
    assert load_yaml_exact("price: 2.50\nwhen: 2025-01-01T00:00:00Z\n", source="s") == {
        "price": "2.50", "when": "2025-01-01T00:00:00Z"}
    assert load_json_exact('{"price": 2.5e-06}', source="s") == {"price": Decimal("0.0000025")}
    with pytest.raises(InvalidInput, match="malformed YAML at line 2"):
        load_yaml_exact("a: 1\nb: c: d\n", source="s")
