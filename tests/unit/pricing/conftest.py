"""Fixtures for the pricing tests: the files in tests/fixtures/pricing and ready-made engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from creditgate.clock import parse_iso
from creditgate.pricing import PricingEngine, load_card_text

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pricing"


def at(text: str) -> int:
    """An ISO timestamp as epoch microseconds, for readable test cases."""
    return parse_iso(text)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def test_engine() -> PricingEngine:
    document = load_card_text((FIXTURES / "rate_card.yaml").read_text(), source="rate_card.yaml")
    return PricingEngine(document.card, overrides=document.overrides, registry=document.registry)
