"""Rate card versions, overrides and card documents: validation names what is wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.unit.pricing.conftest import FIXTURES, at

from creditgate.errors import InvalidInput
from creditgate.pricing import (
    DEFAULT_METERS,
    Meter,
    ModelRate,
    OrgOverride,
    Overrides,
    RateCard,
    RateCardVersion,
    UnitPrice,
    load_card_text,
    validate_versions,
)

GPT = {"gpt-4o": ModelRate("gpt-4o", {"input_tokens": UnitPrice(Decimal(250), 1_000_000)})}


def version(number: int, start: str, until: str | None = None) -> RateCardVersion:
    return RateCardVersion(number, at(start), GPT, effective_until_us=None if until is None
                           else at(until))


def test_versions_are_ordered_and_each_runs_until_the_next() -> None:
    card = RateCard.create("c", [version(2, "2025-06-01T00:00:00Z"),
                                 version(1, "2025-01-01T00:00:00Z")])
    assert [v.version for v in card.versions] == [1, 2]
    assert card.version_at(at("2025-05-31T23:59:59Z")).version == 1
    assert card.version_at(at("2030-01-01T00:00:00Z")).version == 2


def test_explicit_end_that_meets_the_next_start_is_accepted() -> None:
    validate_versions([version(1, "2025-01-01T00:00:00Z", "2025-06-01T00:00:00Z"),
                       version(2, "2025-06-01T00:00:00Z")])


@pytest.mark.parametrize(("versions", "message"), [
    ([version(1, "2025-01-01T00:00:00Z"), version(2, "2025-01-01T00:00:00Z")],
     "overlap: both start at 2025-01-01T00:00:00Z"),
    ([version(1, "2025-01-01T00:00:00Z", "2025-07-01T00:00:00Z"),
      version(2, "2025-06-01T00:00:00Z")], "overlap: 1 runs until 2025-07-01"),
    ([version(1, "2025-01-01T00:00:00Z", "2025-05-01T00:00:00Z"),
      version(2, "2025-06-01T00:00:00Z")], "leave a gap from 2025-05-01T00:00:00Z"),
    ([version(2, "2025-01-01T00:00:00Z"), version(1, "2025-06-01T00:00:00Z")],
     "version numbers must increase"),
    ([version(1, "2025-01-01T00:00:00Z", "2024-01-01T00:00:00Z")], "must be after effective_from"),
    ([], "at least one version"),
])
def test_overlapping_gapped_or_disordered_versions_are_rejected(
        versions: list[RateCardVersion], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_versions(versions, card="c")


def test_a_new_version_appends_to_history_and_cannot_backdate() -> None:
    card = RateCard.create("c", [version(1, "2025-01-01T00:00:00Z")])
    newer = card.with_version(version(2, "2025-06-01T00:00:00Z"))
    assert [v.version for v in newer.versions] == [1, 2]
    assert len(card.versions) == 1  # the original is unchanged
    with pytest.raises(InvalidInput, match="must start after version 1"):
        card.with_version(version(2, "2024-06-01T00:00:00Z"))


def test_a_closed_last_version_leaves_no_price_after_its_end() -> None:
    card = RateCard.create("c", [version(1, "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")])
    with pytest.raises(Exception, match="ended at 2025-02-01"):
        card.version_at(at("2025-03-01T00:00:00Z"))


def test_unknown_meters_and_bad_long_context_tiers_are_rejected() -> None:
    bad_meter = ModelRate("m", {"furlongs": UnitPrice(Decimal(1), 1)})
    with pytest.raises(InvalidInput, match="unknown meter 'furlongs'"):
        RateCard.create("c", [RateCardVersion(1, 0, {"m": bad_meter})])
    extended = DEFAULT_METERS.with_meters(Meter("furlongs", "furlong", 1))
    RateCard.create("c", [RateCardVersion(1, 0, {"m": bad_meter})], registry=extended)


def test_overrides_for_the_same_org_and_model_may_not_overlap_in_time() -> None:
    first = OrgOverride("acme", "old", "gpt-4o", discount_percent=Decimal(5),
                        effective_until_us=at("2025-06-01T00:00:00Z"))
    second = OrgOverride("acme", "new", "gpt-4o", discount_percent=Decimal(10),
                         effective_from_us=at("2025-06-01T00:00:00Z"))
    overrides = Overrides([first, second])
    assert overrides.find("acme", "gpt-4o", at("2025-05-01T00:00:00Z")) is first
    assert overrides.find("acme", "gpt-4o", at("2025-07-01T00:00:00Z")) is second
    with pytest.raises(InvalidInput, match="overlap in time"):
        Overrides([first, OrgOverride("acme", "clash", "gpt-4o", discount_percent=Decimal(1))])
    with pytest.raises(InvalidInput, match="discount_percent: must be from 0 to 100"):
        Overrides([OrgOverride("acme", "x", discount_percent=Decimal(150))])
    with pytest.raises(InvalidInput, match="contract prices, a discount_percent, or both"):
        Overrides([OrgOverride("acme", "empty")])


def test_the_fixture_card_document_loads() -> None:
    document = load_card_text((FIXTURES / "rate_card.yaml").read_text(), source="rate_card.yaml")
    assert document.card.name == "test-public"
    assert [v.version for v in document.card.versions] == [1, 2]
    assert [rule.name for rule in document.card.versions[1].rules] == [
        "berlin-nights", "gpu-surge", "token-volume"]
    assert len(document.overrides.items) == 2


CARD = """
card: c
versions:
  - version: 1
    effective_from: "2025-01-01T00:00:00Z"
    models:
      m: {input_tokens: "%s"}
"""


@pytest.mark.parametrize(("price", "message"), [
    ("-1/1M", "must not be negative"),
    ("NaN", "not a price"),
    ("abc", "not a price"),
    ("2.5/1M furlongs", "unknown unit 'furlongs'"),
    ("2.5/0", "must be at least 1"),
    ("1e-40", "more than 18 decimal places"),
])
def test_bad_prices_in_a_card_document_name_the_field(price: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        load_card_text(CARD % price)
    assert raised.value.param is not None
    assert "models.m.input_tokens" in raised.value.param


ONE_VERSION = "card: c\nversions:\n  - {version: 1, effective_from: '2025-01-01T00:00:00Z', "


@pytest.mark.parametrize(("text", "message"), [
    ("card: c\nversions: [", "malformed YAML at line"),
    ("card: c\nversions:\n  - {version: 1, effective_from: '2025-01-01', models: {}}",
     "has no timezone"),
    (ONE_VERSION + "models: {}, rules: [{kind: surge, name: s}]}", "cap: required"),
    (ONE_VERSION + "models: {}, rules: [{kind: time_window, name: t, timezone: Mars/Olympus, "
                   "hours: '1-2', multiplier: '2'}]}", "unknown timezone 'Mars/Olympus'"),
    (ONE_VERSION + "models: {}, rules: [{kind: lottery, name: l}]}", "kind: must be one of"),
    (ONE_VERSION + "models: {}, colour: blue}", "colour: unknown field"),
    (ONE_VERSION + "models: {}, rules: [{kind: volume_tiers, name: v, mode: graduated, "
                   "meters: [input_tokens], tiers: [{above: 5, multiplier: '1'}]}]}",
     "first tier must start above 0"),
    ("cards: c\nversions: []", "cards: unknown field"),
])
def test_malformed_card_documents_are_rejected(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_card_text(text)
