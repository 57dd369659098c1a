"""Holds through the real Ledger on SQLite and PostgreSQL: each resolves exactly once, expired
holds cannot be posted, expiry of grants under pending holds, and nothing crosses organizations."""

from __future__ import annotations

import pytest

from creditgate.clock import ManualClock
from creditgate.errors import HoldNotPending, InsufficientCredits, InvalidInput, NotFound
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database

from .helpers import c, scalar, snapshot


@pytest.fixture
def org_id(ledger: Ledger) -> str:
    org = ledger.create_org("acme")
    ledger.grant(org.id, c("10"))
    return org.id


@pytest.mark.parametrize("first", ["post", "void"])
@pytest.mark.parametrize("second", ["post", "void"])
def test_each_hold_resolves_exactly_once(ledger: Ledger, database: Database, org_id: str,
                                          first: str, second: str) -> None:
    hold_id = ledger.reserve(org_id, c("4"))["hold_id"]
    resolve = {"post": lambda: ledger.post(org_id, hold_id, c("3")), "void": lambda: ledger.void(org_id, hold_id)}
    resolve[first]()
    before = snapshot(database)
    with pytest.raises(HoldNotPending) as raised:
        resolve[second]()
    assert raised.value.details["hold_status"] == ("posted" if first == "post" else "voided")
    assert snapshot(database) == before
    assert ledger.balance(org_id).available == (c("7") if first == "post" else c("10"))
    assert verify(database).ok


def test_an_expired_hold_cannot_be_posted_and_its_credits_come_back(
        ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    hold_id = ledger.reserve(org_id, c("4"), ttl_s=30)["hold_id"]
    clock.advance(seconds=29)
    assert ledger.balance(org_id).available == c("6")
    clock.advance(seconds=1)
    # Reads already see the credits back before anything books the expiry.
    assert ledger.get_hold(org_id, hold_id).status == "expired"
    assert (ledger.balance(org_id).available, ledger.balance(org_id).pending) == (c("10"), 0)
    with pytest.raises(HoldNotPending, match="already expired"):
        ledger.post(org_id, hold_id, c("4"))
    # The refused post booked the due expiry and nothing else.
    kinds = [row["kind"] for row in ledger.journal_page(org_id)]
    assert kinds == ["grant", "hold_reserve", "hold_expire"]
    before = snapshot(database)
    with pytest.raises(HoldNotPending):
        ledger.void(org_id, hold_id)
    assert snapshot(database) == before
    assert scalar(database, "SELECT held FROM grants") == 0
    assert verify(database).ok


def test_expire_due_books_holds_and_grants(ledger: Ledger, database: Database, clock: ManualClock) -> None:
    org_id = ledger.create_org("beta").id
    start = clock.now_us()
    expiring = ledger.grant(org_id, c("10"), cost_basis=c("4"), expires_at_us=start + 60 * 10**6)["grant_id"]
    ledger.grant(org_id, c("1"))
    hold_id = ledger.reserve(org_id, c("3"), ttl_s=120)["hold_id"]
    clock.advance(seconds=60)
    assert ledger.balance(org_id).available == c("1")
    assert ledger.expire_due() == 1  # the grant; the hold still runs
    grant = ledger.get_grant(org_id, expiring)
    assert (grant.status, grant.remaining, grant.held) == ("expired", c("3"), c("3"))
    expiry = ledger.journal_page(org_id)[-1]
    assert (expiry["kind"], expiry["result"]["lost"], expiry["result"]["cost_basis_lost"]) == (
        "grant_expire", c("7"), c("2.8"))
    # Posting the hold still consumes from the expired grant; the unused part is breakage.
    result = ledger.post(org_id, hold_id, c("1"))
    assert result["paid"] == [[expiring, c("1")]]
    grant = ledger.get_grant(org_id, expiring)
    assert (grant.remaining, grant.held) == (0, 0)
    assert ledger.journal_page(org_id)[-1]["entries"] == [
        {"account": f"hold:{hold_id}", "grant_id": expiring, "amount": -c("1")},
        {"account": "usage", "grant_id": expiring, "amount": c("1")},
        {"account": f"hold:{hold_id}", "grant_id": expiring, "amount": -c("2")},
        {"account": "breakage", "grant_id": expiring, "amount": c("2")},
    ]
    assert ledger.expire_due() == 0
    assert verify(database).ok


def test_a_voided_grant_under_a_pending_hold(ledger: Ledger, database: Database, org_id: str) -> None:
    hold_id = ledger.reserve(org_id, c("4"))["hold_id"]
    grant_id = ledger.list_grants(org_id)[0].id
    assert ledger.void_grant(org_id, grant_id)["lost"] == c("6")
    assert ledger.balance(org_id).available == 0
    with pytest.raises(InvalidInput, match="already voided"):
        ledger.void_grant(org_id, grant_id)
    released = ledger.void(org_id, hold_id)
    assert released["released"] == c("4")
    entries = ledger.journal_page(org_id)[-1]["entries"]
    assert {entry["account"] for entry in entries} == {f"hold:{hold_id}", "forfeit"}
    assert verify(database).ok


def test_holds_and_grants_of_another_organization_are_not_found(ledger: Ledger, database: Database,
                                                                org_id: str) -> None:
    other = ledger.create_org("other").id
    ledger.grant(other, c("5"))
    hold_id = ledger.reserve(org_id, c("1"))["hold_id"]
    grant_id = ledger.list_grants(org_id)[0].id
    before = snapshot(database)
    with pytest.raises(NotFound):
        ledger.post(other, hold_id, c("1"))
    with pytest.raises(NotFound):
        ledger.void(other, hold_id)
    with pytest.raises(NotFound):
        ledger.void_grant(other, grant_id)
    with pytest.raises(NotFound):
        ledger.get_hold(other, hold_id)
    with pytest.raises(NotFound):
        ledger.reserve("org_missing", c("1"))
    assert snapshot(database) == before


def test_insufficient_credits_writes_nothing(ledger: Ledger, database: Database, org_id: str) -> None:
    ledger.reserve(org_id, c("8"))
    before = snapshot(database)
    with pytest.raises(InsufficientCredits) as raised:
        ledger.reserve(org_id, c("2.5"))
    assert raised.value.to_dict()["error"]["available"] == "2"
    with pytest.raises(InsufficientCredits):
        ledger.debit(org_id, c("2.5"))
    assert snapshot(database) == before


@pytest.mark.parametrize(("call", "param"), [
    (lambda ledger, org: ledger.reserve(org, 0), None),
    (lambda ledger, org: ledger.reserve(org, -1), None),
    (lambda ledger, org: ledger.reserve(org, c("1"), ttl_s=0), "ttl"),
    (lambda ledger, org: ledger.reserve(org, c("1"), scope="any"), "scope"),
    (lambda ledger, org: ledger.debit(org, c("1"), scope="nope"), "scope"),
    (lambda ledger, org: ledger.grant(org, c("1"), kind="gift"), "kind"),
    (lambda ledger, org: ledger.grant(org, c("1"), priority=-1), "priority"),
    (lambda ledger, org: ledger.grant(org, c("1"), currency="usd"), "currency"),
    (lambda ledger, org: ledger.grant(org, c("1"), allow=[]), "allow"),
    (lambda ledger, org: ledger.grant(org, c("1"), effective_at_us=10, expires_at_us=10), "expires_at"),
    (lambda ledger, org: ledger.debit(org, c("1"), idempotency_key="x" * 201), "idempotency_key"),
])
def test_bad_library_input_is_refused_before_anything_is_written(
        ledger: Ledger, database: Database, org_id: str, call, param: str | None) -> None:  # type: ignore[no-untyped-def]
    from creditgate.ledger.credits import AmountError

    before = snapshot(database)
    with pytest.raises((InvalidInput, AmountError)) as raised:
        call(ledger, org_id)
    if param is not None:
        assert raised.value.param == param  # type: ignore[union-attr]
    assert snapshot(database) == before


def test_long_references_and_model_names_are_input_errors_not_database_errors(
        ledger: Ledger, database: Database, org_id: str) -> None:
    # The journal's ref column holds 80 characters and a hold's model 200; PostgreSQL enforces
    # that, and a database error would fail every other operation in the same group commit.
    before = snapshot(database)
    with pytest.raises(InvalidInput):
        ledger.debit(org_id, c("1"), ref="r" * 81)
    with pytest.raises(InvalidInput):
        ledger.reserve(org_id, c("1"), model="m" * 201)
    assert snapshot(database) == before


def test_expire_due_counts_the_holds_it_books(ledger: Ledger, database: Database, clock: ManualClock,
                                              org_id: str) -> None:
    ledger.reserve(org_id, c("1"), ttl_s=30)
    ledger.reserve(org_id, c("1"), ttl_s=30)
    clock.advance(seconds=30)
    assert ledger.expire_due(org_id) == 2
    assert ledger.expire_due() == 0
    assert [row["kind"] for row in ledger.journal_page(org_id)][-2:] == ["hold_expire", "hold_expire"]
