"""Worked accounting examples, in the manner of django-hordak's ``test_worked_examples.py``.

Each test tells a small story about one organization and then states every account balance the
journal must show. Accounts: ``issued`` (credits put into circulation, negative), ``grant:<id>``
(free credits of a grant), ``hold:<id>`` (earmarked by a pending hold), ``usage`` (consumed),
``breakage`` (expired unused), ``forfeit`` (voided unused), ``overdraft:<scope>`` (debt, negative).
Balances always sum to zero, and the verifier agrees with the book at the end of each story.
"""

from __future__ import annotations

import orjson
import pytest

from creditgate.errors import InsufficientCredits

from .books import DAY, SECOND, T0, accounts, add_grant, audit, c, new_book


def last_result(book) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return orjson.loads(book.transactions[-1].result)  # type: ignore[no-any-return]


def test_a_purchase_then_a_request_reserved_and_posted_for_less() -> None:
    """Acme buys 100 credits for $1.00. A chat request is reserved at 10 credits and costs 7.5."""
    acme = new_book()
    purchase = add_grant(acme, "100", cost_basis="1.00")
    hold = acme.reserve(c("10"), "inference", 60 * SECOND, T0, model="llama-3-8b")
    assert accounts(acme) == {"issued": -c("100"), f"grant:{purchase}": c("90"), f"hold:{hold['hold_id']}": c("10")}

    acme.post(hold["hold_id"], c("7.5"), T0 + 2 * SECOND)

    assert accounts(acme) == {"issued": -c("100"), f"grant:{purchase}": c("92.5"), "usage": c("7.5")}
    assert acme.available("inference", (), T0 + 2 * SECOND) == c("92.5")
    assert audit(acme) == []


def test_trial_credits_burn_first_and_the_rest_expires_as_breakage_with_zero_cost_basis() -> None:
    """Beta signs up: a 10-credit trial for a week (priority 0), then buys 50 credits for $25."""
    beta = new_book()
    trial = add_grant(beta, "10", kind="trial", priority=0, expires_at=T0 + 7 * DAY)
    purchase = add_grant(beta, "50", cost_basis="25")

    beta.debit(c("4"), "inference", T0 + DAY)  # the trial pays
    assert accounts(beta)[f"grant:{trial}"] == c("6")

    assert beta.expire_due(T0 + 7 * DAY) == 1
    assert last_result(beta) == {"grant_id": trial, "lost": c("6"), "cost_basis_lost": 0, "still_held": 0}
    assert accounts(beta) == {"issued": -c("60"), f"grant:{purchase}": c("50"), "usage": c("4"),
                              "breakage": c("6")}
    assert beta.available("inference", (), T0 + 7 * DAY) == c("50")
    assert audit(beta) == []


def test_expiring_purchase_books_breakage_with_its_pro_rata_cost_basis() -> None:
    """Gamma buys 100 credits for $50 valid 30 days and uses 60; 40 credits ($20) expire."""
    gamma = new_book()
    purchase = add_grant(gamma, "100", cost_basis="50", expires_at=T0 + 30 * DAY)
    gamma.debit(c("60"), "inference", T0 + DAY)

    gamma.expire_due(T0 + 30 * DAY)

    assert last_result(gamma) == {"grant_id": purchase, "lost": c("40"), "cost_basis_lost": c("20"),
                                  "still_held": 0}
    assert accounts(gamma) == {"issued": -c("100"), "usage": c("60"), "breakage": c("40")}
    assert audit(gamma) == []


def test_overage_on_an_overdraft_is_paid_off_by_the_next_purchase() -> None:
    """Delta may go 20 credits into overdraft. It has 5, uses 12, then buys 100."""
    delta = new_book(overdraft="20")
    first = add_grant(delta, "5")

    delta.debit(c("12"), "inference", T0 + SECOND)
    assert accounts(delta) == {"issued": -c("5"), "usage": c("12"), "overdraft:inference": -c("7")}
    assert delta.available("inference", (), T0 + SECOND) == -c("7")

    second = add_grant(delta, "100", now=T0 + 2 * SECOND)

    assert last_result(delta)["debt_paid"] == c("7")
    assert accounts(delta) == {"issued": -c("105"), f"grant:{second}": c("93"), "usage": c("12")}
    assert delta.grants[first].remaining == 0
    assert delta.available("inference", (), T0 + 2 * SECOND) == c("93")
    assert audit(delta) == []


def test_a_grant_voided_during_a_request_still_pays_for_it_and_forfeits_the_rest() -> None:
    """Epsilon's promotional grant is revoked while a request holding 8 credits is in flight."""
    epsilon = new_book()
    promo = add_grant(epsilon, "30", kind="promotional")
    hold = epsilon.reserve(c("8"), "inference", 60 * SECOND, T0)["hold_id"]

    epsilon.void_grant(promo, T0 + SECOND)
    assert accounts(epsilon) == {"issued": -c("30"), f"hold:{hold}": c("8"), "forfeit": c("22")}

    epsilon.post(hold, c("5"), T0 + 2 * SECOND)

    assert accounts(epsilon) == {"issued": -c("30"), "usage": c("5"), "forfeit": c("25")}
    assert epsilon.available("inference", (), T0 + 2 * SECOND) == 0
    assert audit(epsilon) == []


def test_a_model_restricted_promotion_next_to_a_general_purchase() -> None:
    """Zeta gets 10 free credits for llama-3-8b only (priority 10) and buys 20 for anything."""
    zeta = new_book()
    promo = add_grant(zeta, "10", kind="promotional", priority=10, allow=["llama-3-8b"])
    purchase = add_grant(zeta, "20", cost_basis="10")

    llama = zeta.reserve(c("12"), "inference", 60 * SECOND, T0, subjects=("llama-3-8b",))
    gpt = zeta.reserve(c("3"), "inference", 60 * SECOND, T0, subjects=("gpt-4o",))

    assert llama["legs"] == [[promo, c("10")], [purchase, c("2")]]
    assert gpt["legs"] == [[purchase, c("3")]]
    zeta.post(llama["hold_id"], c("11"), T0 + SECOND)
    zeta.void(gpt["hold_id"], T0 + SECOND)
    assert accounts(zeta) == {"issued": -c("30"), f"grant:{purchase}": c("19"), "usage": c("11")}
    assert audit(zeta) == []


def test_a_training_job_cannot_spend_inference_credits() -> None:
    """Eta has 50 inference-only credits and 5 for anything; a 20-credit training job is refused."""
    eta = new_book()
    add_grant(eta, "50", scope="inference")
    add_grant(eta, "5", scope="any")
    assert eta.available("training", (), T0) == c("5")
    assert eta.available("inference", (), T0) == c("55")
    with pytest.raises(InsufficientCredits, match="5 available, 20 required"):
        eta.reserve(c("20"), "training", 3600 * SECOND, T0)
    assert accounts(eta)["issued"] == -c("55")
    assert audit(eta) == []
