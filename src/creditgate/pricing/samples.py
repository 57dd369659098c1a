"""The sample catalog shipped with the package: a rate card, bundles, provider prices, a workload.

``creditgate demo`` and the CLI's defaults load these; tests use them as worked examples.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from creditgate.clock import Clock
from creditgate.pricing._exact import load_yaml_exact
from creditgate.pricing.bundles import Bundle, parse_bundle_catalog
from creditgate.pricing.card_files import CardDocument, load_card_text
from creditgate.pricing.compare import Workload, load_workload_text
from creditgate.pricing.conversion import ConversionRate
from creditgate.pricing.rating import PricingEngine
from creditgate.pricing.sheet_import import import_price_yaml
from creditgate.pricing.sheets import PriceSheet

SAMPLE_FILES: Final = ("rate_card.yaml", "bundles.yaml", "provider_prices.yaml", "workload.yaml")


def sample_text(name: str) -> str:
    assert name in SAMPLE_FILES, name
    return (resources.files("creditgate.pricing") / "sample_data" / name).read_text("utf-8")


def sample_card_document() -> CardDocument:
    return load_card_text(sample_text("rate_card.yaml"), source="sample rate_card.yaml")


def sample_engine(clock: Clock | None = None) -> PricingEngine:
    document = sample_card_document()
    return PricingEngine(document.card, overrides=document.overrides, registry=document.registry,
                         clock=clock)


def sample_conversion() -> ConversionRate:
    data = load_yaml_exact(sample_text("bundles.yaml"), source="sample bundles.yaml")
    return ConversionRate.parse(data["conversion"])


def sample_bundles() -> tuple[Bundle, ...]:
    data = load_yaml_exact(sample_text("bundles.yaml"), source="sample bundles.yaml")
    return parse_bundle_catalog(data, source="sample bundles.yaml")


def sample_price_sheet() -> PriceSheet:
    result = import_price_yaml(sample_text("provider_prices.yaml"),
                               source="sample provider_prices.yaml")
    return PriceSheet(result.entries)


def sample_workload() -> Workload:
    return load_workload_text(sample_text("workload.yaml"), source="sample workload.yaml")
