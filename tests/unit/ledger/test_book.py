"""Book operations without a database: holds, debits, overdraft, expiry, and the hash chain."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from creditgate.errors import HoldNotPending, InsufficientCredits, InvalidInput, NotFound
from creditgate.ledger import journal
from creditgate.ledger.records import GENESIS_HASH

from .books import DAY, SECOND, T0, accounts, add_grant, audit, c, held, new_book, remaining

TTL = 60 * SECOND


# ------------------------------------------------------------------ holds
def test_reserve_spans_several_grants_and_lowers_available_at_once() -> None:
    book = new_book()
    first = add_grant(book, "10", priority=1)
    second = add_grant(book, "10", priority=2)
    third = add_grant(book, "10", priority=3)
    result = book.reserve(c("15"), "inference", TTL, T0)
    assert result["legs"] == [[first, c("10")], [second, c("5")]]
    assert result["expires_at_us"] == T0 + TTL
    assert book.available("inference", (), T0) == c("15")
    assert (held(book, first), held(book, second), held(book, third)) == (c("10"), c("5"), 0)
    # Earmarked, not consumed: remaining is unchanged until the hold is posted.
    assert (remaining(book, first), remaining(book, second)) == (c("10"), c("10"))
    assert accounts(book)[f"hold:{result['hold_id']}"] == c("15")
    assert audit(book) == []


def test_reserve_refusal_states_available_and_required_and_changes_nothing() -> None:
    book = new_book()
    grant = add_grant(book, "10")
    book.reserve(c("7"), "inference", TTL, T0)
    before = (dict(book.grants), dict(book.holds), list(book.transactions), book.org)
    with pytest.raises(InsufficientCredits) as raised:
        book.reserve(c("3.5"), "inference", TTL, T0)
    assert raised.value.message == "insufficient credits: 3 available, 3.5 required"
    assert raised.value.to_dict()["error"]["available"] == "3"
    assert raised.value.to_dict()["error"]["required"] == "3.5"
    assert (dict(book.grants), dict(book.holds), list(book.transactions), book.org) == before
    assert held(book, grant) == c("7")


def test_post_less_than_held_debits_actual_and_releases_the_rest() -> None:
    book = new_book()
    first = add_grant(book, "10", priority=1)
    second = add_grant(book, "10", priority=2)
    hold_id = book.reserve(c("15"), "inference", TTL, T0)["hold_id"]
    result = book.post(hold_id, c("12"), T0 + SECOND)
    assert result["status"] == "posted"
    assert result["posted"] == c("12")
    assert result["released"] == c("3")
    # Consumption follows the legs in burn-down order; the last leg releases what was not used.
    assert result["paid"] == [[first, c("10")], [second, c("2")]]
    assert (remaining(book, first), remaining(book, second)) == (0, c("8"))
    assert (held(book, first), held(book, second)) == (0, 0)
    assert book.available("inference", (), T0 + SECOND) == c("8")
    assert book.holds[hold_id].posted == c("12")
    assert book.holds[hold_id].resolved_at_us == T0 + SECOND
    assert accounts(book) == {"issued": -c("20"), f"grant:{second}": c("8"), "usage": c("12")}
    assert audit(book) == []


@pytest.mark.parametrize("actual", ["0", "15"])
def test_post_zero_or_everything(actual: str) -> None:
    book = new_book()
    add_grant(book, "20")
    hold_id = book.reserve(c("15"), "inference", TTL, T0)["hold_id"]
    result = book.post(hold_id, c(actual), T0)
    assert result["posted"] + result["released"] == c("15")
    assert book.available("inference", (), T0) == c("20") - c(actual)
    assert audit(book) == []


def test_post_more_than_held_is_refused_and_the_hold_stays_pending() -> None:
    book = new_book()
    add_grant(book, "20")
    hold_id = book.reserve(c("5"), "inference", TTL, T0)["hold_id"]
    with pytest.raises(InvalidInput, match="between 0 and the held 5") as raised:
        book.post(hold_id, c("5.000001"), T0)
    assert raised.value.param == "actual"
    assert book.holds[hold_id].status == "pending"
    assert book.post(hold_id, c("5"), T0)["posted"] == c("5")


def test_void_releases_everything() -> None:
    book = new_book()
    grant = add_grant(book, "10")
    hold_id = book.reserve(c("4"), "inference", TTL, T0)["hold_id"]
    result = book.void(hold_id, T0)
    assert (result["status"], result["posted"], result["released"], result["paid"]) == ("voided", 0, c("4"), [])
    assert (remaining(book, grant), held(book, grant)) == (c("10"), 0)
    assert book.available("inference", (), T0) == c("10")
    assert audit(book) == []


@pytest.mark.parametrize("first", ["post", "void"])
@pytest.mark.parametrize("second", ["post", "void"])
def test_each_hold_resolves_exactly_once(first: str, second: str) -> None:
    book = new_book()
    add_grant(book, "10")
    hold_id = book.reserve(c("4"), "inference", TTL, T0)["hold_id"]
    resolve = {"post": lambda: book.post(hold_id, c("1"), T0), "void": lambda: book.void(hold_id, T0)}
    resolve[first]()
    transactions = len(book.transactions)
    with pytest.raises(HoldNotPending, match=f"already {'posted' if first == 'post' else 'voided'}"):
        resolve[second]()
    assert len(book.transactions) == transactions


def test_unknown_hold_is_not_found() -> None:
    book = new_book()
    with pytest.raises(NotFound, match="hold hld_nope not found"):
        book.post("hld_nope", 0, T0)


def test_a_hold_past_its_ttl_cannot_be_posted_and_its_credits_come_back() -> None:
    book = new_book()
    grant = add_grant(book, "10")
    hold_id = book.reserve(c("4"), "inference", TTL, T0)["hold_id"]
    # One microsecond before the ttl it is still pending.
    assert book.available("inference", (), T0 + TTL - 1) == c("6")
    with pytest.raises(HoldNotPending, match="already expired") as raised:
        book.post(hold_id, c("4"), T0 + TTL)
    assert raised.value.details["hold_status"] == "expired"
    assert book.holds[hold_id].status == "expired"
    assert (remaining(book, grant), held(book, grant)) == (c("10"), 0)
    assert book.transactions[-1].kind == "hold_expire"
    with pytest.raises(HoldNotPending):
        book.void(hold_id, T0 + TTL)
    assert audit(book) == []


def test_expire_due_holds_books_every_hold_past_its_ttl_only() -> None:
    book = new_book()
    add_grant(book, "10")
    short = book.reserve(c("1"), "inference", 10 * SECOND, T0)["hold_id"]
    long = book.reserve(c("2"), "inference", 20 * SECOND, T0)["hold_id"]
    assert book.expire_due_holds(T0 + 15 * SECOND) == 1
    assert (book.holds[short].status, book.holds[long].status) == ("expired", "pending")
    assert book.expire_due_holds(T0 + 15 * SECOND) == 0
    assert book.available("inference", (), T0 + 15 * SECOND) == c("8")


# ------------------------------------------------------------------ a grant ends under a pending hold
def test_grant_expiring_under_a_pending_hold_keeps_the_earmark_and_posting_consumes_it() -> None:
    book = new_book()
    grant = add_grant(book, "10", expires_at=T0 + 30 * SECOND, cost_basis="5")
    hold_id = book.reserve(c("4"), "inference", TTL, T0)["hold_id"]
    assert book.expire_due(T0 + 30 * SECOND) == 1
    expiry = orjson.loads(book.transactions[-1].result)
    # Only the free part is breakage; the earmarked 4 stay with the hold.
    assert (expiry["lost"], expiry["still_held"], expiry["cost_basis_lost"]) == (c("6"), c("4"), c("3"))
    assert book.grants[grant].status == "expired"
    assert (remaining(book, grant), held(book, grant)) == (c("4"), c("4"))
    result = book.post(hold_id, c("2.5"), T0 + 40 * SECOND)
    assert result["paid"] == [[grant, c("2.5")]]
    # The unused 1.5 cannot go back to an expired grant: it is breakage at once.
    assert (remaining(book, grant), held(book, grant)) == (0, 0)
    assert accounts(book) == {"issued": -c("10"), "usage": c("2.5"), "breakage": c("7.5")}
    assert audit(book) == []


def test_grant_voided_under_a_pending_hold_releases_to_forfeit() -> None:
    book = new_book()
    grant = add_grant(book, "10")
    hold_id = book.reserve(c("4"), "inference", TTL, T0)["hold_id"]
    voided = book.void_grant(grant, T0)
    assert (voided["lost"], voided["still_held"]) == (c("6"), c("4"))
    assert book.available("inference", (), T0) == 0
    book.void(hold_id, T0)
    assert accounts(book) == {"issued": -c("10"), "forfeit": c("10")}
    assert (remaining(book, grant), held(book, grant)) == (0, 0)
    assert audit(book) == []


def test_hold_expiring_after_its_grant_expired_releases_to_breakage() -> None:
    book = new_book()
    add_grant(book, "10", expires_at=T0 + 10 * SECOND)
    book.reserve(c("4"), "inference", TTL, T0)
    assert book.expire_due(T0 + TTL) == 2  # the hold and the grant
    assert accounts(book) == {"issued": -c("10"), "breakage": c("10")}
    assert audit(book) == []


def test_void_grant_twice_is_refused() -> None:
    book = new_book()
    grant = add_grant(book, "10")
    book.void_grant(grant, T0)
    with pytest.raises(InvalidInput, match="already voided"):
        book.void_grant(grant, T0)
    with pytest.raises(NotFound):
        book.void_grant("grt_nope", T0)


@pytest.mark.parametrize(("amount", "cost", "lost", "cost_lost"), [
    ("3", "1", "1", "0.333333"),   # 0.3333333 -> down
    ("3", "1", "2", "0.666667"),   # 0.6666667 -> up
    ("2", "0.000001", "1", "0.000001"),  # exactly half a micro-unit -> up
    ("10", "5", "10", "5"),
])
def test_cost_basis_of_breakage_is_pro_rata_rounded_half_up(amount: str, cost: str, lost: str, cost_lost: str) -> None:
    book = new_book()
    grant = add_grant(book, amount, cost_basis=cost, expires_at=T0 + DAY)
    if c(amount) > c(lost):
        book.debit(c(amount) - c(lost), "inference", T0)
    assert book.expire_due(T0 + DAY) == 1
    result = orjson.loads(book.transactions[-1].result)
    assert result["grant_id"] == grant
    assert (result["lost"], result["cost_basis_lost"]) == (c(lost), c(cost_lost))


# ------------------------------------------------------------------ debits and overdraft
def test_debit_is_all_or_nothing() -> None:
    book = new_book()
    grant = add_grant(book, "10")
    before = (dict(book.grants), list(book.transactions), book.org)
    with pytest.raises(InsufficientCredits, match="10 available, 10.5 required"):
        book.debit(c("10.5"), "inference", T0)
    assert (dict(book.grants), list(book.transactions), book.org) == before
    assert book.debit(c("10"), "inference", T0)["paid"] == [[grant, c("10")]]


def test_overdraft_limit_debt_and_payoff_by_the_next_grant() -> None:
    book = new_book(overdraft="10")
    first = add_grant(book, "5")
    result = book.debit(c("12"), "inference", T0)
    assert (result["debited"], result["overage"], result["paid"]) == (c("12"), c("7"), [[first, c("5")]])
    assert book.org.debt_inference == c("7")
    assert book.available("inference", (), T0) == -c("7")
    # Headroom left is 3: a debit of 4 would pass the overdraft limit and is refused whole.
    with pytest.raises(InsufficientCredits) as raised:
        book.debit(c("4"), "inference", T0)
    assert raised.value.details["overdraft_headroom"] == "3"
    assert book.org.debt_inference == c("7")
    # Nothing can be reserved while in debt.
    with pytest.raises(InsufficientCredits):
        book.reserve(c("1"), "inference", TTL, T0)
    # The next grant pays the debt first.
    second = add_grant(book, "20")
    assert orjson.loads(book.transactions[-1].result)["debt_paid"] == c("7")
    assert book.org.debt_inference == 0
    assert (book.grants[second].amount, remaining(book, second)) == (c("20"), c("13"))
    assert book.available("inference", (), T0) == c("13")
    assert accounts(book) == {"issued": -c("25"), f"grant:{second}": c("13"), "usage": c("12")}
    assert audit(book) == []


def test_debt_is_per_scope_and_only_unrestricted_live_grants_pay_it() -> None:
    book = new_book(overdraft="10")
    book.debit(c("4"), "inference", T0)
    training_only = add_grant(book, "5", scope="training")
    restricted = add_grant(book, "5", allow=["llama-3-8b"])
    future = add_grant(book, "5", effective_at=T0 + DAY)
    for grant in (training_only, restricted, future):
        assert remaining(book, grant) == c("5")
    assert book.org.debt_inference == c("4")
    paying = add_grant(book, "3", scope="inference")
    assert (remaining(book, paying), book.org.debt_inference) == (0, c("1"))
    assert audit(book) == []


def test_grant_smaller_than_the_debt_pays_what_it_can() -> None:
    book = new_book(overdraft="10")
    book.debit(c("6"), "training", T0)
    book.debit(c("3"), "inference", T0)
    grant = add_grant(book, "5")
    # Scope "any" pays inference debt first, then training.
    assert orjson.loads(book.transactions[-1].result)["debt_paid"] == c("5")
    assert (book.org.debt_inference, book.org.debt_training, remaining(book, grant)) == (0, c("4"), 0)
    assert audit(book) == []


# ------------------------------------------------------------------ the journal
def test_every_transaction_is_balanced_and_chained() -> None:
    book = new_book(overdraft="5")
    grant = add_grant(book, "10", expires_at=T0 + DAY)
    hold_a = book.reserve(c("3"), "inference", TTL, T0)["hold_id"]
    hold_b = book.reserve(c("3"), "training", TTL, T0)["hold_id"]
    book.post(hold_a, c("1"), T0 + SECOND)
    book.void(hold_b, T0 + SECOND)
    book.debit(c("9"), "inference", T0 + 2 * SECOND)
    add_grant(book, "1", now=T0 + 3 * SECOND)
    book.void_grant(grant, T0 + 4 * SECOND)
    previous = GENESIS_HASH
    for seq, tx in enumerate(book.transactions, start=1):
        assert tx.seq == seq
        assert tx.prev_hash == previous
        assert sum(entry.amount for entry in tx.entries) == 0
        recomputed = journal.transaction_hash(
            prev_hash=tx.prev_hash, org_id=tx.org_id, seq=tx.seq, kind=tx.kind, at_us=tx.at_us,
            ref=tx.ref, idempotency_key=tx.idempotency_key, fingerprint=tx.fingerprint,
            result=tx.result, entries=tx.entries)
        assert tx.hash == recomputed
        previous = tx.hash
    assert (book.org.chain_seq, book.org.chain_head) == (len(book.transactions), previous)
    assert [tx.kind for tx in book.transactions] == [
        "grant", "hold_reserve", "hold_reserve", "hold_post", "hold_void", "debit", "grant", "grant_void"]
    assert audit(book) == []


def test_the_hash_is_sha256_over_the_previous_hash_and_a_canonical_body() -> None:
    body = {"org": "o", "seq": 1, "kind": "debit", "at": 5, "ref": None, "key": "k", "fp": None,
            "result": "{}", "entries": [["usage", None, 3], ["grant:g", "g", -3]]}
    expected = hashlib.sha256(GENESIS_HASH.encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    from creditgate.ledger.records import Entry

    digest = journal.transaction_hash(prev_hash=GENESIS_HASH, org_id="o", seq=1, kind="debit", at_us=5,
                                      ref=None, idempotency_key="k", fingerprint=None, result="{}",
                                      entries=[Entry("usage", 3), Entry("grant:g", -3, "g")])
    assert digest == expected


@pytest.mark.parametrize("field", ["seq", "kind", "at_us", "ref", "idempotency_key", "result", "entries", "prev_hash"])
def test_changing_any_hashed_field_changes_the_hash(field: str) -> None:
    book = new_book()
    add_grant(book, "10")
    book.debit(c("1"), "inference", T0)
    tx = book.transactions[-1]
    changed = {"seq": 7, "kind": "grant", "at_us": tx.at_us + 1, "ref": "other", "idempotency_key": "k2",
               "result": tx.result.replace("1000000", "2000000"),
               "entries": tuple(entry._replace(amount=entry.amount * 2) for entry in tx.entries),
               "prev_hash": "f" * 64}[field]
    edited = tx._replace(**{field: changed})
    digest = journal.transaction_hash(
        prev_hash=edited.prev_hash, org_id=edited.org_id, seq=edited.seq, kind=edited.kind,
        at_us=edited.at_us, ref=edited.ref, idempotency_key=edited.idempotency_key,
        fingerprint=edited.fingerprint, result=edited.result, entries=edited.entries)
    assert digest != tx.hash


def test_each_organization_has_its_own_chain() -> None:
    first, second = new_book(org_id="org_a"), new_book(org_id="org_b")
    add_grant(first, "1")
    add_grant(second, "1")
    assert first.transactions[0].prev_hash == second.transactions[0].prev_hash == GENESIS_HASH
    assert first.transactions[0].seq == second.transactions[0].seq == 1
    assert first.transactions[0].hash != second.transactions[0].hash
