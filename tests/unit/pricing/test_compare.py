"""Comparing providers, models and bundles on a workload, with published prices."""

from __future__ import annotations

from fractions import Fraction

import pytest
from tests.unit.pricing.conftest import FIXTURES

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import parse_amount
from creditgate.pricing import (
    Bundle,
    PriceSheet,
    RolloverPolicy,
    compare,
    import_price_csv,
    import_price_yaml,
    load_workload_text,
    parse_bundle_catalog,
    rank_bundles,
)
from creditgate.pricing._exact import load_yaml_exact
from creditgate.pricing.samples import sample_bundles, sample_price_sheet, sample_workload


def fixture_sheet() -> PriceSheet:
    csv_entries = import_price_csv((FIXTURES / "prices.csv").read_text()).entries
    yaml_entries = import_price_yaml((FIXTURES / "prices.yaml").read_text()).entries
    return PriceSheet().merged(csv_entries).merged(yaml_entries)


def fixture_bundles() -> tuple[Bundle, ...]:
    return parse_bundle_catalog(load_yaml_exact((FIXTURES / "bundles.yaml").read_text(),
                                                source="bundles.yaml"))


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    workload = load_workload_text((FIXTURES / "workload.yaml").read_text(), source="workload")
    return compare(fixture_sheet(), workload, bundles=fixture_bundles())


def test_models_are_ranked_by_total_cost_per_family(result) -> None:  # type: ignore[no-untyped-def]
    chat = [(c.model, c.money, c.price_set) for c in result.models if c.family == "frontier-chat"]
    # 30M input, 10M cached, 2M output with 150k-token prompts:
    # gpt-4o $75 + $12.50 + $20; Gemini 1.5 Pro is past its 128k tier ($2.50/$10, and no cache
    # price, so cached tokens bill as input); Claude Sonnet stays below its 200k tier.
    assert chat == [("gpt-4o", parse_amount("107.5"), "base"),
                    ("gemini-1.5-pro", parse_amount("120"), "above 128000"),
                    ("claude-sonnet-4", parse_amount("123"), "base")]
    images = [(c.model, c.credits) for c in result.models if c.family == "images"]
    assert images == [("imagen-3", parse_amount("3000")), ("dall-e-3", parse_amount("4000"))]
    assert [(e.model, e.reason) for e in result.excluded] == [
        ("not-imported-model", "not on the price sheets")]


def test_providers_are_ranked_by_their_cheapest_model_per_family(result) -> None:  # type: ignore[no-untyped-def]
    ranked = [(p.provider, p.credits, p.missing) for p in result.providers]
    assert ranked == [("openai", parse_amount("14750"), ()),
                      ("google", parse_amount("15000"), ()),
                      ("anthropic", parse_amount("12300"), ("images",))]


def test_bundles_are_ranked_by_cost_per_used_credit_counting_expiry(result) -> None:  # type: ignore[no-untyped-def]
    assert result.burn_credits_per_period == parse_amount("14750")
    ranked = [(v.bundle.name, v.to_dict()["cost_per_used_credit"], v.to_dict()["expired_credits"])
              for v in result.bundles]
    # "large" (60,000 credits, 90 days) lasts 122 days at 491.67 credits a day: 15,750 credits
    # are left at expiry, 5,000 roll over, 10,750 are lost. It still beats "medium" per used
    # credit; the never-expiring bundle is simply dearer. The training bundle is not ranked.
    assert ranked == [("large", "0.008122", "10750"), ("medium", "0.008182", "0"),
                      ("small", "0.01", "0"), ("forever", "0.012", "0")]


def test_expiring_credits_make_a_big_bundle_worse_at_a_low_burn_rate() -> None:
    big = Bundle("big", parse_amount("100"), "USD", parse_amount("20000"), 0, 30)
    small = Bundle("small", parse_amount("10"), "USD", parse_amount("1000"), 0, 30)
    values = rank_bundles([big, small], burn_per_period=parse_amount("2000"), period_days=30)
    # At 2,000 credits a month the big bundle uses 2,000 of 20,000: $0.05 per used credit.
    assert [(v.bundle.name, v.cost_per_used_credit) for v in values] == [
        ("small", Fraction(1, 100)), ("big", Fraction(1, 20))]
    full = Bundle("big-full", parse_amount("100"), "USD", parse_amount("20000"), 0, 30,
                  RolloverPolicy("full"))
    assert rank_bundles([full], parse_amount("2000"), 30)[0].expired_credits == 0


def test_outputs_for_json_and_csv(result) -> None:  # type: ignore[no-untyped-def]
    data = result.to_dict()
    assert data["providers"][0] == {"provider": "openai", "credits": "14750", "cost": "147.5",
                                    "currency": "USD",
                                    "models": {"frontier-chat": "gpt-4o", "images": "dall-e-3"},
                                    "missing_families": []}
    sections = {row["section"] for row in result.csv_rows()}
    assert sections == {"model", "provider", "bundle"}


def test_the_sample_catalog_compares() -> None:
    result = compare(sample_price_sheet(), sample_workload(), bundles=sample_bundles())
    assert result.providers[0].provider == "google"
    assert result.bundles[0].bundle.name == "scale"


@pytest.mark.parametrize(("body", "message"), [
    ("items: []", "give 1 to 200 items"),
    ("items: [{family: x}]", "usage: required"),
    ("items: [{family: x, usage: {furlongs: 1}}]", "unknown meter 'furlongs'"),
    ("items: [{family: x, usage: {input_tokens: -5}}]", "must be at least 0"),
    ("items: [{family: x, usage: {input_tokens: 1.5}}]", "not a whole number"),
    ("items: [{family: x, usage: {input_tokens: 5}, budget: 3}]", "budget: unknown field"),
    ("{items: [{usage: {input_tokens: 5}}], scope: everything}", "scope"),
    ("items: [", "malformed YAML"),
])
def test_bad_workloads_are_rejected(body: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_workload_text(body)


def test_a_json_workload_is_read_without_floats() -> None:
    workload = load_workload_text('{"items": [{"family": "chat", "usage": {"input_tokens": 5}}],'
                                  ' "burn_credits_per_period": "1234.5"}')
    assert workload.burn_credits_per_period == parse_amount("1234.5")
