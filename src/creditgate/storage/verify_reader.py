"""Reads everything the verifier needs, one organization at a time (memory stays bounded)."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from sqlalchemy import Connection, select, text

from creditgate.errors import DamagedRow
from creditgate.ledger.records import Budget, Grant, Hold, Org
from creditgate.ledger.verify import StoredTransaction
from creditgate.storage import ledger_store
from creditgate.storage.schema import budgets, grants, holds, journal_transactions, orgs

_Record = TypeVar("_Record")

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


class OrgRows(NamedTuple):
    """One organization's rows as the verifier sees them. ``damaged`` maps the id of each row
    that could not be read (a JSON column that does not parse, or, on SQLite, which stores any
    value in any column, a value of the wrong type) to the problem; such rows are left out of
    ``grants``, ``holds`` and ``budgets``. ``org`` is None when the organization's own row is
    damaged."""

    org: Org | None
    transactions: list[StoredTransaction]
    grants: list[Grant]
    holds: list[Hold]
    budgets: list[Budget]
    damaged: dict[str, str]


def iter_orgs(connection: Connection) -> Iterator[OrgRows]:
    org_ids = [row[0] for row in connection.execute(select(orgs.c.id).order_by(orgs.c.id))]
    for org_id in org_ids:
        damaged: dict[str, str] = {}
        org_row = connection.execute(ledger_store.org_select().where(orgs.c.id == org_id)).one()
        transactions = [StoredTransaction(*row) for row in connection.execute(
            select(journal_transactions.c.org_id, journal_transactions.c.seq, journal_transactions.c.kind,
                   journal_transactions.c.at_us, journal_transactions.c.ref,
                   journal_transactions.c.idempotency_key, journal_transactions.c.fingerprint,
                   journal_transactions.c.result, journal_transactions.c.entries,
                   journal_transactions.c.prev_hash, journal_transactions.c.hash)
            .where(journal_transactions.c.org_id == org_id).order_by(journal_transactions.c.seq))]
        grant_rows = _readable(connection.execute(ledger_store.grant_select().where(grants.c.org_id == org_id)),
                               ledger_store.grant_from_row, org_id, "grant", damaged)
        hold_rows = _readable(connection.execute(ledger_store.hold_select().where(holds.c.org_id == org_id)),
                              ledger_store.hold_from_row, org_id, "hold", damaged)
        budget_rows = _readable(connection.execute(ledger_store.budget_select().where(budgets.c.org_id == org_id)),
                                ledger_store.budget_from_row, org_id, "budget", damaged)
        org_list = _readable([org_row], ledger_store.org_from_row, None, "org", damaged)
        yield OrgRows(org_list[0] if org_list else None, transactions, grant_rows, hold_rows, budget_rows,
                      damaged)


def _readable(rows: Any, parse: Callable[[Sequence[Any]], _Record], org_id: str | None, table: str,
              damaged: dict[str, str]) -> list[_Record]:
    """The rows that parse into well-typed records; each other one is added to ``damaged``.

    The parsers are the writer's, which trust the row's types: checking them here keeps the
    audit from failing on a value that no arithmetic or comparison expects."""
    owner = f"org {org_id} " if org_id is not None else ""
    found = []
    for row in rows:
        try:
            record = parse(row)
        except DamagedRow as error:
            damaged[row[0]] = owner + error.message
            continue
        wrong = _wrongly_typed(record)
        if wrong is not None:
            damaged[row[0]] = (f"{owner}{table} {row[0]}: column {wrong} holds {getattr(record, wrong)!r}, "
                               f"not a value of type {_hint_name(record, wrong)}")
            continue
        found.append(record)
    return found


def _wrongly_typed(record: Any) -> str | None:
    """The first field of ``record`` whose value does not have its annotated type, or None.
    Strict: a bool is not an int, a list not a tuple."""
    adapter = _ADAPTERS.get(type(record))
    if adapter is None:
        adapter = _ADAPTERS[type(record)] = TypeAdapter(type(record), config=ConfigDict(strict=True))
    try:
        adapter.validate_python(record)
    except ValidationError as error:
        return str(error.errors()[0]["loc"][0])
    return None


# Per record class, built once: a verify reads every row.
_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _hint_name(record: Any, name: str) -> str:
    hint = typing.get_type_hints(type(record))[name]
    return hint.__name__ if isinstance(hint, type) else str(hint)


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
