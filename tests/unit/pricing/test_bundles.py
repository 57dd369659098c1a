"""Bundle catalog, purchases as two grants, rollover policies and the credit conversion."""

from __future__ import annotations

import inspect
from decimal import Decimal

import pytest
from tests.unit.pricing.conftest import FIXTURES, at

from creditgate.errors import InvalidInput
from creditgate.ledger.credits import parse_amount
from creditgate.pricing import (
    Bundle,
    ConversionRate,
    RolloverPolicy,
    parse_bundle_catalog,
    purchase_grants,
)
from creditgate.pricing._exact import load_yaml_exact
from creditgate.pricing.samples import sample_bundles

DAY_US = 86_400 * 1_000_000


def catalog() -> dict[str, Bundle]:
    data = load_yaml_exact((FIXTURES / "bundles.yaml").read_text(), source="bundles.yaml")
    return {bundle.name: bundle for bundle in parse_bundle_catalog(data)}


def test_buying_a_bundle_creates_a_paid_grant_and_a_free_bonus_grant() -> None:
    medium = catalog()["medium"]  # $45 for 5,000 credits + 500 bonus, 60 days
    bought_at = at("2025-03-01T10:00:00Z")
    purchase = purchase_grants(medium, bought_at, reference="order-17")
    paid, bonus = purchase.grants
    assert (paid.kind, paid.amount, paid.cost_basis, paid.currency) == (
        "purchase", parse_amount("5000"), parse_amount("45"), "USD")
    assert bonus is not None
    assert (bonus.kind, bonus.amount, bonus.cost_basis) == ("promotional", parse_amount("500"), 0)
    for grant in purchase.grants:
        assert grant.effective_at_us == bought_at
        assert grant.expires_at_us == bought_at + 60 * DAY_US
        assert grant.scope == "inference"
        assert grant.rollover == RolloverPolicy("capped_percent", cap_percent=Decimal(10))
    assert paid.metadata == {"bundle": "medium", "quantity": 1, "reference": "order-17",
                             "part": "paid"}


def test_quantity_multiplies_credits_and_cost_basis_and_no_bonus_means_one_grant() -> None:
    small = catalog()["small"]
    purchase = purchase_grants(small, 0, quantity=3)
    assert purchase.bonus is None
    assert len(purchase.grants) == 1
    assert purchase.paid.amount == parse_amount("3000")
    assert purchase.paid.cost_basis == parse_amount("30")
    with pytest.raises(InvalidInput, match="quantity"):
        purchase_grants(small, 0, quantity=0)


def test_a_bundle_without_validity_never_expires() -> None:
    assert purchase_grants(catalog()["forever"], 0).paid.expires_at_us is None


def test_grant_specs_fit_the_ledger_service_grant_call() -> None:
    from creditgate.ledger.service import Ledger

    accepted = set(inspect.signature(Ledger.grant).parameters)
    for grant in purchase_grants(catalog()["large"], 0).grants:
        kwargs = grant.ledger_kwargs()
        assert set(kwargs) <= accepted
        assert kwargs["rollover"] == {"kind": "capped_amount", "cap_credits": "5000"}


@pytest.mark.parametrize(("policy", "remaining", "granted", "rolled"), [
    (RolloverPolicy("none"), 700, 1_000, 0),
    (RolloverPolicy("full"), 700, 1_000, 700),
    (RolloverPolicy("capped_amount", cap_credits=500), 700, 1_000, 500),
    (RolloverPolicy("capped_amount", cap_credits=500), 300, 1_000, 300),
    (RolloverPolicy("capped_percent", cap_percent=Decimal(20)), 700, 1_000, 200),
    (RolloverPolicy("capped_percent", cap_percent=Decimal("12.5")), 700, 1_000, 125),
    (RolloverPolicy("capped_percent", cap_percent=Decimal(20)), 100, 1_000, 100),
])
def test_rollover_policies(policy: RolloverPolicy, remaining: int, granted: int,
                           rolled: int) -> None:
    assert policy.amount(remaining, granted) == rolled


def test_bundle_credits_default_to_the_price_at_the_conversion_rate() -> None:
    bundles = parse_bundle_catalog({
        "conversion": {"currency": "USD", "credits_per_unit": "100"},
        "bundles": [{"name": "auto", "price": "19.99", "validity_days": 30}]})
    assert bundles[0].credits == parse_amount("1999")
    rate = ConversionRate("USD", Decimal(100))
    assert rate.money_to_credits(bundles[0].price) == bundles[0].credits


@pytest.mark.parametrize(("bundle", "message"), [
    ({"name": "x", "price": "-5", "credits": "1"}, "price: '-5' must not be negative"),
    ({"name": "x", "price": "5", "credits": "0"}, "credits: must be greater than zero"),
    ({"name": "x", "price": "5", "credits": "1", "currency": "dollars"}, "three-letter"),
    ({"name": "x", "price": "5", "credits": "1", "validity_days": 0}, "validity_days"),
    ({"name": "x", "price": "5", "credits": "1", "scope": "everything"}, "scope"),
    ({"name": "x", "price": "5", "credits": "1", "rollover": "sometimes"}, "rollover"),
    ({"name": "x", "price": "5", "credits": "1", "rollover": {"capped_percent": "150"}},
     "above the maximum"),
    ({"name": "x", "price": "5", "credits": "1", "colour": "red"}, "colour: unknown field"),
    ({"name": "x", "price": 5.5, "credits": "1"}, "expected a decimal string"),
])
def test_bad_bundles_are_rejected_naming_the_field(bundle: dict[str, object],
                                                   message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_bundle_catalog({"bundles": [bundle]})


def test_bundle_names_are_unique() -> None:
    with pytest.raises(InvalidInput, match="used twice"):
        parse_bundle_catalog({"bundles": [{"name": "a", "price": "1", "credits": "1"}] * 2})


def test_the_sample_catalog_loads() -> None:
    names = [bundle.name for bundle in sample_bundles()]
    assert names == ["starter", "growth", "scale", "annual-commit", "training-pack"]
