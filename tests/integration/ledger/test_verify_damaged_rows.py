"""Rows ``verify`` could not read, or did not compare: a damaged JSON column (or, on SQLite, a
value of the wrong type) is reported by id instead of raising; a budget's cap, mode, period or
subject edited, or its row deleted, fails like any other edit of a row the journal created."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from creditgate.errors import CreditgateError
from creditgate.ledger import journal
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database

from .helpers import c, execute, scalar


@dataclass(frozen=True)
class Rows:
    org: str
    grant: str      # restricted to a model, so its allow column is set
    hold: str       # pending, counted against the budget
    budget: str


@pytest.fixture
def rows(ledger: Ledger, database: Database) -> Rows:
    org = ledger.create_org("acme", overdraft_limit=c("5")).id
    grant = ledger.grant(org, c("100"), allow=["m1"])["grant_id"]
    budget = ledger.set_budget(org, "project:abc", c("50"))["budget_id"]
    hold = ledger.reserve(org, c("10"), model="m1", budget_subjects=["project:abc"])["hold_id"]
    report = verify(database)
    assert report.ok, report.problems
    return Rows(org, grant, hold, budget)


def first_problem(database: Database) -> str:
    report = verify(database)  # returns a report: it must not raise
    assert not report.ok, "verify passed after an edit"
    return report.problems[0]


# ------------------------------------------------------------------ damaged JSON columns
@pytest.mark.parametrize(("table", "row", "column", "value"), [
    ("grants", "grant", "allow", "garbage"),
    ("grants", "grant", "allow", "5"),            # JSON, but not a list
    ("grants", "grant", "allow", "[[1]]"),        # a list of lists: unhashable
    ("grants", "grant", "allow", "[1]"),          # parses, but a model is not a number
    ("holds", "hold", "legs", "garbage"),
    ("holds", "hold", "legs", "[5]"),            # a leg that is not a pair
    ("holds", "hold", "legs", "[[\"x\"]]"),       # a leg without its amount
    ("holds", "hold", "legs", "[[\"x\", \"ten\"]]"),  # an amount that is not a number
    ("holds", "hold", "budgets", "{"),
    ("holds", "hold", "budgets", "[[1]]"),
])
def test_a_damaged_json_column_is_reported_naming_the_row(database: Database, rows: Rows, table: str,
                                                          row: str, column: str, value: str) -> None:
    row_id = getattr(rows, row)
    execute(database, f"UPDATE {table} SET {column} = :v WHERE id = :i", v=value, i=row_id)
    first = first_problem(database)
    assert first.startswith(f"org {rows.org} {table[:-1]} {row_id}: column {column} "), first
    # The row exists: it must not also be reported as deleted.
    assert not any("row is missing" in problem for problem in verify(database).problems)


def test_a_damaged_row_fails_a_read_with_an_error_naming_it(ledger: Ledger, database: Database,
                                                            rows: Rows) -> None:
    execute(database, "UPDATE grants SET allow = 'garbage' WHERE id = :g", g=rows.grant)
    with pytest.raises(CreditgateError) as raised:
        ledger.list_grants(rows.org)
    assert raised.value.code == "damaged_row"
    assert rows.grant in raised.value.message and "allow" in raised.value.message
    execute(database, "UPDATE holds SET legs = 'garbage' WHERE id = :h", h=rows.hold)
    with pytest.raises(CreditgateError, match=rows.hold):
        ledger.get_hold(rows.org, rows.hold)


@pytest.mark.parametrize(("table", "row", "column"), [
    ("holds", "hold", "amount"),     # CHECK (amount > 0) holds for text on SQLite
    ("budgets", "budget", "cap"),
    ("grants", "grant", "priority"),
    ("orgs", "org", "debt_training"),
])
def test_a_value_of_the_wrong_type_is_reported_naming_the_row(database: Database, rows: Rows, table: str,
                                                              row: str, column: str) -> None:
    row_id = getattr(rows, row)
    if not database.is_sqlite:
        # PostgreSQL refuses text in an integer column: there, this damage cannot be stored.
        with pytest.raises(DBAPIError, match="invalid input syntax"):
            execute(database, f"UPDATE {table} SET {column} = 'lots' WHERE id = :i", i=row_id)
        return
    execute(database, f"UPDATE {table} SET {column} = 'lots' WHERE id = :i", i=row_id)
    first = first_problem(database)
    assert row_id in first and f"column {column} holds 'lots'" in first, first


def test_a_forged_result_with_a_recomputed_hash_is_reported(database: Database, rows: Rows) -> None:
    """The chain proves contents are as written, not that creditgate wrote them: anyone can
    recompute it. A result without the fields the verifier reads is a problem, not a crash."""
    last = scalar(database, "SELECT chain_seq FROM orgs WHERE id = :o", o=rows.org)
    with database.read() as connection:
        stored = connection.execute(text(
            "SELECT kind, at_us, ref, idempotency_key, fingerprint, entries, prev_hash "
            "FROM journal_transactions WHERE org_id = :o AND seq = :s"), {"o": rows.org, "s": last}).one()
    assert stored.kind == "hold_reserve"
    forged = "{}"  # no amount, expiry or legs
    digest = journal.transaction_hash(
        prev_hash=stored.prev_hash, org_id=rows.org, seq=last, kind=stored.kind, at_us=stored.at_us,
        ref=stored.ref, idempotency_key=stored.idempotency_key, fingerprint=stored.fingerprint,
        result=forged, entries_text=stored.entries.encode())
    execute(database, "UPDATE journal_transactions SET result = :r, hash = :h WHERE org_id = :o AND seq = :s",
            r=forged, h=digest, o=rows.org, s=last)
    execute(database, "UPDATE orgs SET chain_head = :h WHERE id = :o", h=digest, o=rows.org)
    assert first_problem(database) == f"org {rows.org} journal entry {last}: result is not readable"


# ------------------------------------------------------------------ budgets
@pytest.mark.parametrize(("column", "value", "fragment"), [
    ("cap", "cap * 100", "cap 5000000000 differs from the journal"),
    ("mode", "'off'", "mode off differs from the journal"),
    ("mode", "'soft'", "mode soft differs from the journal"),
    ("period", "'day'", "period day differs from the journal"),
    ("subject", "'project:xyz'", "subject project:xyz differs from the journal"),
])
def test_a_budget_edit_fails(database: Database, rows: Rows, column: str, value: str, fragment: str) -> None:
    execute(database, f"UPDATE budgets SET {column} = {value} WHERE id = :b", b=rows.budget)
    assert first_problem(database) == f"org {rows.org} budget {rows.budget}: {fragment}"


def test_a_deleted_budget_fails(database: Database, rows: Rows) -> None:
    execute(database, "DELETE FROM budgets WHERE id = :b", b=rows.budget)
    assert first_problem(database) == f"org {rows.org} budget {rows.budget}: in the journal but its row is missing"


def test_a_budget_the_journal_never_created_fails(database: Database, rows: Rows) -> None:
    execute(database, "INSERT INTO budgets (id, org_id, subject, cap, mode, period, spent, held, period_start_us, "
                      "created_at_us) SELECT 'bdg_forged', org_id, 'key:k1', cap, mode, period, 0, 0, "
                      "period_start_us, created_at_us FROM budgets WHERE id = :b", b=rows.budget)
    assert first_problem(database) == f"org {rows.org} budget bdg_forged: not in the journal (no budget_set entry created it)"


def test_a_budget_changed_through_the_ledger_still_verifies(ledger: Ledger, database: Database, rows: Rows) -> None:
    """The control: a row must match the latest budget_set entry, not the first."""
    ledger.set_budget(rows.org, "project:abc", c("80"), mode="soft", period="day")
    report = verify(database)
    assert report.ok, report.problems
    assert scalar(database, "SELECT cap FROM budgets WHERE id = :b", b=rows.budget) == c("80")
