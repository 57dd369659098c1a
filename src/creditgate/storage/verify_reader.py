"""Reads everything the verifier needs, one organization at a time (memory stays bounded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select, text

from creditgate.ledger.records import Budget, Grant, Hold, Org
from creditgate.ledger.verify import StoredTransaction
from creditgate.storage import ledger_store
from creditgate.storage.schema import budgets, grants, holds, journal_transactions, orgs

# Rows that break a constraint can only exist if constraints were bypassed (for example an edit
# with foreign keys or checks off); the verifier looks for them anyway.
_INVARIANT_QUERIES = {
    "grant remaining outside 0 <= held <= remaining <= amount":
        "SELECT id FROM grants WHERE NOT (0 <= held AND held <= remaining AND remaining <= amount)",
    "hold posted outside 0 <= posted <= amount":
        "SELECT id FROM holds WHERE NOT (0 <= posted AND posted <= amount)",
    "grant of an unknown organization":
        "SELECT g.id FROM grants g LEFT JOIN orgs o ON o.id = g.org_id WHERE o.id IS NULL",
    "hold of an unknown organization":
        "SELECT h.id FROM holds h LEFT JOIN orgs o ON o.id = h.org_id WHERE o.id IS NULL",
    "journal entry of an unknown organization":
        "SELECT t.org_id FROM journal_transactions t LEFT JOIN orgs o ON o.id = t.org_id WHERE o.id IS NULL",
    "duplicate idempotency key":
        "SELECT org_id FROM journal_transactions WHERE idempotency_key IS NOT NULL "
        "GROUP BY org_id, idempotency_key HAVING COUNT(*) > 1",
}


def iter_orgs(connection: Connection) -> Iterator[
        tuple[Org, list[StoredTransaction], list[Grant], list[Hold], list[Budget]]]:
    org_ids = [row[0] for row in connection.execute(select(orgs.c.id).order_by(orgs.c.id))]
    for org_id in org_ids:
        org_row = connection.execute(ledger_store.org_select().where(orgs.c.id == org_id)).one()
        transactions = [StoredTransaction(*row) for row in connection.execute(
            select(journal_transactions.c.org_id, journal_transactions.c.seq, journal_transactions.c.kind,
                   journal_transactions.c.at_us, journal_transactions.c.ref,
                   journal_transactions.c.idempotency_key, journal_transactions.c.fingerprint,
                   journal_transactions.c.result, journal_transactions.c.entries,
                   journal_transactions.c.prev_hash, journal_transactions.c.hash)
            .where(journal_transactions.c.org_id == org_id).order_by(journal_transactions.c.seq))]
        grant_rows = [ledger_store.grant_from_row(row) for row in connection.execute(
            ledger_store.grant_select().where(grants.c.org_id == org_id))]
        hold_rows = [ledger_store.hold_from_row(row) for row in connection.execute(
            ledger_store.hold_select().where(holds.c.org_id == org_id))]
        budget_rows = [ledger_store.budget_from_row(row) for row in connection.execute(
            ledger_store.budget_select().where(budgets.c.org_id == org_id))]
        yield ledger_store.org_from_row(org_row), transactions, grant_rows, hold_rows, budget_rows


def schema_problems(connection: Connection) -> list[str]:
    problems: list[str] = []
    for label, query in _INVARIANT_QUERIES.items():
        bad: Any = connection.execute(text(query)).first()
        if bad is not None:
            problems.append(f"schema invariant broken: {label} ({bad[0]})")
    if connection.dialect.name == "sqlite":
        integrity = connection.exec_driver_sql("PRAGMA integrity_check").scalar()
        if integrity != "ok":
            problems.append(f"SQLite integrity check: {integrity}")
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            problems.append(f"foreign key broken in table {broken[0]}")
    return problems
