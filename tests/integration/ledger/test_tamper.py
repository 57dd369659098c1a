"""Tampering: any single edit of a stored value, or deleting or reordering a journal entry, makes
``verify`` fail and name the problem. Each edit is one committed SQL statement (or, for a swap,
the smallest set of statements that the primary key allows), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from creditgate.clock import ManualClock
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database

from .helpers import c, execute, scalar

DAY_US = 86_400 * 10**6


@dataclass(frozen=True)
class Books:
    """A small history: every kind of transaction, and rows in every state."""

    org: str
    empty_org: str
    used_up: str        # grant fully consumed (priority 0)
    main: str           # grant paying most of it (priority 1)
    expiring: str       # untouched grant with an expiry (priority 2)
    posted: str         # hold posted for 7 of 10
    voided: str         # hold voided
    pending: str        # hold still pending
    last_seq: int


@pytest.fixture
def books(ledger: Ledger, database: Database, clock: ManualClock) -> Books:
    org = ledger.create_org("acme", overdraft_limit=c("5")).id
    empty_org = ledger.create_org("empty").id
    used_up = ledger.grant(org, c("2"), priority=0, kind="trial")["grant_id"]                       # 1
    main = ledger.grant(org, c("100"), priority=1, cost_basis=c("10"))["grant_id"]                  # 2
    expiring = ledger.grant(org, c("50"), priority=2, expires_at_us=clock.now_us() + DAY_US)["grant_id"]  # 3
    posted = ledger.reserve(org, c("10"), model="llama-3-8b")["hold_id"]                            # 4
    clock.advance(seconds=1)
    ledger.post(org, posted, c("7"), idempotency_key="post-1")                                       # 5
    voided = ledger.reserve(org, c("5"))["hold_id"]                                                 # 6
    ledger.void(org, voided)                                                                        # 7
    pending = ledger.reserve(org, c("20"), ttl_s=3600)["hold_id"]                                   # 8
    ledger.debit(org, c("3"), ref="usage-batch-1")                                                  # 9
    report = verify(database)
    assert report.ok, report.problems
    assert report.transactions == 9
    return Books(org, empty_org, used_up, main, expiring, posted, voided, pending, last_seq=9)


def entries_of(database: Database, org: str, seq: int) -> list[list[object]]:
    return orjson.loads(scalar(database, "SELECT entries FROM journal_transactions WHERE org_id = :o AND seq = :s",
                               o=org, s=seq))  # type: ignore[no-any-return]


def assert_fails(database: Database, *fragments: str) -> str:
    report = verify(database)
    assert not report.ok, "verify passed after an edit"
    first = report.problems[0]
    for fragment in fragments:
        assert fragment in first, f"{fragment!r} not in the first problem: {first!r} (all: {report.problems})"
    return first


# ------------------------------------------------------------------ grants
def test_grant_amount(database: Database, books: Books) -> None:
    execute(database, "UPDATE grants SET amount = amount + 1 WHERE id = :g", g=books.expiring)
    assert_fails(database, f"grant {books.expiring}", "amount")


def test_grant_remaining(database: Database, books: Books) -> None:
    execute(database, "UPDATE grants SET remaining = remaining + 1000000 WHERE id = :g", g=books.main)
    assert_fails(database, f"grant {books.main}", "remaining")


def test_grant_held(database: Database, books: Books) -> None:
    execute(database, "UPDATE grants SET held = held - 1 WHERE id = :g", g=books.main)
    assert_fails(database, f"grant {books.main}")


def test_grant_status_of_a_used_up_grant(database: Database, books: Books) -> None:
    # Nothing free is lost by this edit, but the journal never voided the grant.
    execute(database, "UPDATE grants SET status = 'voided' WHERE id = :g", g=books.used_up)
    assert_fails(database, f"grant {books.used_up}", "status")


def test_grant_status_with_free_credits(database: Database, books: Books) -> None:
    execute(database, "UPDATE grants SET status = 'expired' WHERE id = :g", g=books.expiring)
    assert_fails(database, f"grant {books.expiring}")


@pytest.mark.parametrize(("column", "value"), [
    ("expires_at_us", "expires_at_us + 86400000000"),  # a longer life for the credits
    ("expires_at_us", "NULL"),
    ("priority", "0"),
    ("scope", "'training'"),
    ("kind", "'promotional'"),
    ("cost_basis", "cost_basis + 1"),
    ("currency", "'EUR'"),
    ("allow", "'[\"gpt-4o\"]'"),
    ("effective_at_us", "effective_at_us - 1"),
    ("created_at_us", "created_at_us - 1"),
])
def test_grant_terms(database: Database, books: Books, column: str, value: str) -> None:
    execute(database, f"UPDATE grants SET {column} = {value} WHERE id = :g", g=books.expiring)
    assert_fails(database, f"grant {books.expiring}", column.removesuffix("_us").split("_")[0])


# ------------------------------------------------------------------ holds
def test_hold_amount(database: Database, books: Books) -> None:
    execute(database, "UPDATE holds SET amount = amount + 1 WHERE id = :h", h=books.pending)
    assert_fails(database, f"hold {books.pending}", "amount")


def test_hold_posted(database: Database, books: Books) -> None:
    execute(database, "UPDATE holds SET posted = posted - 1 WHERE id = :h", h=books.posted)
    assert_fails(database, f"hold {books.posted}", "posted")


@pytest.mark.parametrize(("hold", "status"), [("pending", "voided"), ("posted", "voided"), ("voided", "expired")])
def test_hold_status(database: Database, books: Books, hold: str, status: str) -> None:
    hold_id = getattr(books, hold)
    execute(database, "UPDATE holds SET status = :s WHERE id = :h", s=status, h=hold_id)
    assert_fails(database, f"hold {hold_id}", "status")


def test_hold_expiry_extended(database: Database, books: Books) -> None:
    execute(database, "UPDATE holds SET expires_at_us = expires_at_us + 1 WHERE id = :h", h=books.pending)
    assert_fails(database, f"hold {books.pending}", "expires_at_us")


def test_hold_legs_moved_to_another_grant(database: Database, books: Books) -> None:
    legs = orjson.dumps([[books.expiring, c("20")]]).decode()
    execute(database, "UPDATE holds SET legs = :l WHERE id = :h", l=legs, h=books.pending)
    assert_fails(database, f"hold {books.pending}")


def test_legs_of_a_resolved_hold(database: Database, books: Books) -> None:
    legs = orjson.dumps([[books.main, c("10")]]).decode()
    execute(database, "UPDATE holds SET legs = :l WHERE id = :h", l=legs, h=books.posted)
    assert_fails(database, f"hold {books.posted}", "legs")


# ------------------------------------------------------------------ the journal
@pytest.mark.parametrize("seq", [1, 5, 9])
def test_journal_hash(database: Database, books: Books, seq: int) -> None:
    execute(database, "UPDATE journal_transactions SET hash = :h WHERE org_id = :o AND seq = :s",
            h="f" * 64, o=books.org, s=seq)
    assert_fails(database, f"journal entry {seq}")


def test_journal_result(database: Database, books: Books) -> None:
    result = scalar(database, "SELECT result FROM journal_transactions WHERE org_id = :o AND seq = 5", o=books.org)
    assert '"posted":7000000' in result
    execute(database, "UPDATE journal_transactions SET result = :r WHERE org_id = :o AND seq = 5",
            r=result.replace('"posted":7000000', '"posted":6000000'), o=books.org)
    assert_fails(database, "journal entry 5", "hash does not match")


def test_journal_entries(database: Database, books: Books) -> None:
    # A balanced edit: both legs of the usage move by the same amount, so only the hash can tell.
    entries = entries_of(database, books.org, 9)
    edited = [[account, grant, amount // 3 if isinstance(amount, int) else amount]
              for account, grant, amount in entries]
    assert sum(leg[2] for leg in edited) == 0  # type: ignore[misc]
    execute(database, "UPDATE journal_transactions SET entries = :e WHERE org_id = :o AND seq = 9",
            e=orjson.dumps(edited).decode(), o=books.org)
    assert_fails(database, "journal entry 9")


@pytest.mark.parametrize(("column", "value"), [("at_us", "at_us + 1"), ("kind", "'debit'"), ("ref", "'other'"),
                                               ("idempotency_key", "'forged'"), ("prev_hash", "hash")])
def test_journal_other_columns(database: Database, books: Books, column: str, value: str) -> None:
    execute(database, f"UPDATE journal_transactions SET {column} = {value} WHERE org_id = :o AND seq = 5",
            o=books.org)
    assert_fails(database, "journal entry 5")


def test_delete_the_last_transaction(database: Database, books: Books) -> None:
    execute(database, "DELETE FROM journal_transactions WHERE org_id = :o AND seq = :s", o=books.org, s=books.last_seq)
    assert_fails(database, f"org {books.org}", "chain head")


def test_delete_a_middle_transaction(database: Database, books: Books) -> None:
    execute(database, "DELETE FROM journal_transactions WHERE org_id = :o AND seq = 5", o=books.org)
    assert_fails(database, "journal entry 6", "expected sequence number 5")


def test_swap_two_transactions(database: Database, books: Books) -> None:
    for old, new in ((4, 1000), (7, 4), (1000, 7)):
        execute(database, "UPDATE journal_transactions SET seq = :n WHERE org_id = :o AND seq = :s",
                n=new, o=books.org, s=old)
    assert_fails(database, "journal entry 4")


def test_move_a_transaction_to_another_organization(database: Database, books: Books) -> None:
    execute(database, "UPDATE journal_transactions SET org_id = :e WHERE org_id = :o AND seq = 9",
            e=books.empty_org, o=books.org)
    assert not verify(database).ok


# ------------------------------------------------------------------ organizations
@pytest.mark.parametrize(("column", "value"), [("chain_head", "'" + "a" * 64 + "'"), ("chain_seq", "chain_seq - 1"),
                                               ("chain_seq", "chain_seq + 1")])
def test_chain_head(database: Database, books: Books, column: str, value: str) -> None:
    execute(database, f"UPDATE orgs SET {column} = {value} WHERE id = :o", o=books.org)
    assert_fails(database, f"org {books.org}", "chain head")


def test_chain_head_of_an_organization_without_entries(database: Database, books: Books) -> None:
    execute(database, "UPDATE orgs SET chain_head = :h WHERE id = :o", h="b" * 64, o=books.empty_org)
    assert_fails(database, f"org {books.empty_org}", "chain head")


def test_debt(database: Database, books: Books) -> None:
    execute(database, "UPDATE orgs SET debt_training = 1 WHERE id = :o", o=books.org)
    assert_fails(database, f"org {books.org}", "training debt")


@pytest.mark.parametrize(("table", "row"), [("grants", "expiring"), ("grants", "used_up"), ("holds", "posted"),
                                          ("holds", "voided"), ("holds", "pending")])
def test_a_row_deleted(database: Database, books: Books, table: str, row: str) -> None:
    # Nothing references these rows by foreign key, so they can go; the journal remembers them.
    row_id = getattr(books, row)
    execute(database, f"DELETE FROM {table} WHERE id = :i", i=row_id)
    assert_fails(database, row_id)


def test_verify_is_still_clean_after_the_fixture(database: Database, books: Books) -> None:
    """The control: the untouched history verifies, so each failure above is the edit's doing."""
    report = verify(database)
    assert report.ok and report.organizations == 2 and report.grants == 3 and report.holds == 3
