"""Loading and saving ledger books: the only code that knows how ledger records map to rows.

This is the write hot path, so it talks to the database driver directly with plain SQL and
``executemany`` (the schema and migrations stay in SQLAlchemy); SQLAlchemy's per-statement
overhead was most of a batch's cost. Placeholders are written ``?`` and turned into ``%s`` for
psycopg.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from creditgate.errors import DamagedRow
from creditgate.ledger import journal
from creditgate.ledger.book import Book
from creditgate.ledger.records import GENESIS_HASH, Budget, Grant, Hold, Org
from creditgate.storage.driver import Driver

ORG_COLUMNS = "id, name, created_at_us, overdraft_limit, debt_inference, debt_training, chain_seq, chain_head"
GRANT_COLUMNS = ("id, org_id, kind, scope, priority, effective_at_us, expires_at_us, amount, remaining, "
                 "held, created_at_us, cost_basis, currency, status, allow, source_grant_id, rollover, metadata")
HOLD_COLUMNS = ("id, org_id, amount, scope, status, created_at_us, expires_at_us, legs, model, posted, "
                "resolved_at_us, metadata, budgets")
BUDGET_COLUMNS = "id, org_id, subject, cap, mode, period, spent, held, period_start_us, created_at_us"


def org_from_row(row: Sequence[Any]) -> Org:
    return Org(id=row[0], name=row[1], created_at_us=row[2], overdraft_limit=row[3],
               debt_inference=row[4], debt_training=row[5], chain_seq=row[6],
               chain_head=row[7] or GENESIS_HASH)


# What parsing a JSON column of the wrong shape raises: JSONDecodeError is a ValueError; a value
# of the wrong type (a number, an object, a short list) gives TypeError, IndexError or KeyError.
_UNREADABLE = (ValueError, TypeError, LookupError)


def _damaged(table: str, row_id: Any, column: str, error: Exception) -> DamagedRow:
    return DamagedRow(f"{table} {row_id}: column {column} is damaged ({error})", param=column)


# The try blocks below cost nothing while no exception is raised (Python 3.11's zero-cost
# exceptions): the writer's hot path parses rows with these functions too.
def grant_from_row(row: Sequence[Any]) -> Grant:
    try:
        allow = frozenset(orjson.loads(row[14])) if row[14] is not None else None
    except _UNREADABLE as error:
        raise _damaged("grant", row[0], "allow", error) from None
    return Grant(
        id=row[0], org_id=row[1], kind=row[2], scope=row[3], priority=row[4], effective_at_us=row[5],
        expires_at_us=row[6], amount=row[7], remaining=row[8], held=row[9], created_at_us=row[10],
        cost_basis=row[11], currency=row[12], status=row[13], allow=allow,
        source_grant_id=row[15], rollover=row[16], metadata=row[17])


def hold_from_row(row: Sequence[Any]) -> Hold:
    try:
        legs = tuple((leg[0], leg[1]) for leg in orjson.loads(row[7]))
    except _UNREADABLE as error:
        raise _damaged("hold", row[0], "legs", error) from None
    try:
        budgets = tuple(orjson.loads(row[12])) if row[12] and row[12] != "[]" else ()
    except _UNREADABLE as error:
        raise _damaged("hold", row[0], "budgets", error) from None
    return Hold(id=row[0], org_id=row[1], amount=row[2], scope=row[3], status=row[4],
                created_at_us=row[5], expires_at_us=row[6], legs=legs, model=row[8],
                posted=row[9], resolved_at_us=row[10], metadata=row[11], budgets=budgets)


def budget_from_row(row: Sequence[Any]) -> Budget:
    return Budget(*row)


def _marks(count: int) -> str:
    return ",".join("?" * count)


def load_books(connection: Connection, org_ids: Collection[str], *, hold_ids: Iterable[str],
               grant_ids: Iterable[str], now_us: int, lock: bool,
               cache: dict[str, Book] | None = None) -> dict[str, Book]:
    """Load the books of ``org_ids``; on PostgreSQL lock their rows (in id order, no deadlocks).

    A book in ``cache`` is reused when its organization row is unchanged: every ledger write
    advances the organization's chain, so an equal row (read under the lock) proves that no
    other process has touched the organization's grants or holds since. Any other book is loaded
    afresh: its grants and budgets in full, but of its pending holds only those the batch names
    and those past their ttl (which the batch expires). Nothing decides on the other pending
    holds (the grants carry what they earmark), so a process whose cache keeps going stale,
    because other processes write to the same organization, does not re-read them all on every
    batch.
    """
    driver = Driver(connection)
    ordered = sorted(org_ids)
    lock_clause = " FOR UPDATE" if lock else ""
    # Pending holds past their ttl are read for every organization, cached or not: a cached book
    # may lack one that another process created before this book was loaded, when it was not due
    # yet; ix_holds_pending_expiry makes that a short range scan, usually empty. On PostgreSQL
    # the query goes in the same round trip as the lock; it runs after the lock is granted (a
    # pipeline's statements run in order), so it sees every commit made before.
    org_answer, due_hold_rows = driver.all_each([
        (f"SELECT {ORG_COLUMNS} FROM orgs WHERE id IN ({_marks(len(ordered))}) ORDER BY id{lock_clause}",
         ordered),
        ((f"SELECT {HOLD_COLUMNS} FROM holds WHERE status = 'pending' AND expires_at_us <= ? "
          f"AND org_id IN ({_marks(len(ordered))})"), [now_us, *ordered])])
    org_rows = {row[0]: org_from_row(row) for row in org_answer}
    if not org_rows:
        return {}
    books: dict[str, Book] = {}
    missing: list[str] = []
    for org_id, org in org_rows.items():
        cached = cache.get(org_id) if cache is not None else None
        if cached is not None and cached.org == org:
            books[org_id] = cached
        else:
            missing.append(org_id)
    # Named records that no reused book has (one pass over each book, not one per id).
    wanted_grants, wanted_holds = set(grant_ids), set(hold_ids)
    for book in books.values():
        wanted_grants.difference_update(book.grants.keys())
        wanted_holds.difference_update(book.holds.keys())
    grant_rows: dict[str, dict[str, Grant]] = {org_id: {} for org_id in org_rows}
    hold_rows: dict[str, dict[str, Hold]] = {org_id: {} for org_id in org_rows}
    budget_rows: dict[str, list[Budget]] = {org_id: [] for org_id in org_rows}
    # Everything else the batch needs, in one round trip on PostgreSQL (the rows stay locked
    # meanwhile), and none when every book is cached and names nothing new.
    queries: list[tuple[str, Sequence[Any]]] = []
    if missing:
        queries.append((f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id IN ({_marks(len(missing))})",
                        missing))
        queries.append(((f"SELECT {GRANT_COLUMNS} FROM grants WHERE org_id IN ({_marks(len(missing))}) "
                         "AND (status = 'active' OR held > 0)"), missing))
    if wanted_grants:
        queries.append((f"SELECT {GRANT_COLUMNS} FROM grants WHERE id IN ({_marks(len(wanted_grants))})",
                        sorted(wanted_grants)))
    if wanted_holds:
        queries.append((f"SELECT {HOLD_COLUMNS} FROM holds WHERE id IN ({_marks(len(wanted_holds))})",
                        sorted(wanted_holds)))
    answers = iter(driver.all_each(queries))
    if missing:
        for row in next(answers):
            budget_rows[row[1]].append(budget_from_row(row))
        for row in next(answers):
            grant_rows[row[1]][row[0]] = grant_from_row(row)
    if wanted_grants:
        for row in next(answers):
            if row[1] in grant_rows and row[0] not in grant_rows[row[1]]:
                grant_rows[row[1]][row[0]] = grant_from_row(row)
    if wanted_holds:
        for row in next(answers):
            if row[1] in hold_rows:
                hold_rows[row[1]][row[0]] = hold_from_row(row)
    for row in due_hold_rows:
        if row[1] in hold_rows and row[0] not in hold_rows[row[1]]:
            hold_rows[row[1]][row[0]] = hold_from_row(row)
    for org_id in missing:
        grants, holds = grant_rows[org_id].values(), hold_rows[org_id].values()
        books[org_id] = Book(org_rows[org_id], grants, holds, budget_rows[org_id])
        books[org_id].visiting_ids.update(g.id for g in grants if g.status != "active" and g.held == 0)
        books[org_id].visiting_ids.update(h.id for h in holds if h.status != "pending")
    for org_id, book in books.items():
        if org_id in missing:
            continue
        for grant in grant_rows[org_id].values():
            book.grants.setdefault(grant.id, grant)
            book.visiting_ids.add(grant.id)
        for hold in hold_rows[org_id].values():
            book.holds.setdefault(hold.id, hold)
            book.visiting_ids.add(hold.id)
    return books


def find_replays(connection: Connection, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Earlier journal transactions written under these (org, idempotency key) pairs."""
    if not keys:
        return {}
    driver = Driver(connection)
    found: dict[tuple[str, str], Any] = {}
    by_org: dict[str, list[str]] = {}
    for org_id, key in keys:
        by_org.setdefault(org_id, []).append(key)
    for org_id, org_keys in by_org.items():
        for row in driver.all(
                "SELECT org_id, idempotency_key, kind, fingerprint, result FROM journal_transactions "
                f"WHERE org_id = ? AND idempotency_key IN ({_marks(len(org_keys))})", [org_id, *org_keys]):
            found[(row[0], row[1])] = _Replay(kind=row[2], fingerprint=row[3], result=row[4])
    return found


class _Replay:
    __slots__ = ("fingerprint", "kind", "result")

    def __init__(self, *, kind: str, fingerprint: str | None, result: str) -> None:
        self.kind = kind
        self.fingerprint = fingerprint
        self.result = result


TRANSACTION_COLUMNS = ("org_id, seq, kind, at_us, ref, idempotency_key, fingerprint, result, entries, "
                       "prev_hash, hash")
_GRANT_UPDATE = (("remaining", "bigint"), ("held", "bigint"), ("status", "text"))
# Most changes move only a grant's balance. Leaving status out of the SET list spares SQLite the
# two indexes on status (half the cost of the statement, and two fewer pages per commit).
_GRANT_BALANCE_UPDATE = (("remaining", "bigint"), ("held", "bigint"))
_HOLD_UPDATE = (("status", "text"), ("posted", "bigint"), ("resolved_at_us", "bigint"))
_BUDGET_UPDATE = (("cap", "bigint"), ("mode", "text"), ("period", "text"), ("spent", "bigint"),
                  ("held", "bigint"), ("period_start_us", "bigint"))
_ORG_UPDATE = (("chain_seq", "bigint"), ("chain_head", "text"), ("debt_inference", "bigint"),
               ("debt_training", "bigint"))


def save_books(connection: Connection, books: Iterable[Book]) -> None:
    """Write what the batch changed: new rows inserted, changed rows updated, all in one go."""
    new_grants: list[Sequence[Any]] = []
    changed_grants: list[Sequence[Any]] = []
    changed_balances: list[Sequence[Any]] = []  # grants whose status stays: no index to touch
    new_holds: list[Sequence[Any]] = []
    changed_holds: list[Sequence[Any]] = []
    changed_orgs: list[Sequence[Any]] = []
    new_budgets: list[Sequence[Any]] = []
    changed_budgets: list[Sequence[Any]] = []
    transactions: list[Sequence[Any]] = []
    for book in books:
        if not book.transactions:
            continue
        for grant_id in book.new_grant_ids:
            new_grants.append(grant_row(book.grants[grant_id]))
        for grant_id in book.changed_grant_ids:
            grant = book.grants[grant_id]
            if grant.status == "active":  # statuses only ever leave "active": this one is unchanged
                changed_balances.append((grant.remaining, grant.held, grant.id))
            else:
                changed_grants.append((grant.remaining, grant.held, grant.status, grant.id))
        for hold_id in book.new_hold_ids:
            new_holds.append(hold_row(book.holds[hold_id]))
        for hold_id in book.changed_hold_ids - book.new_hold_ids:
            hold = book.holds[hold_id]
            changed_holds.append((hold.status, hold.posted, hold.resolved_at_us, hold.id))
        for budget_id in book.new_budget_ids:
            new_budgets.append(tuple(book.budgets[budget_id]))
        for budget_id in book.changed_budget_ids:
            b = book.budgets[budget_id]
            changed_budgets.append((b.cap, b.mode, b.period, b.spent, b.held, b.period_start_us, b.id))
        org = book.org
        changed_orgs.append((org.chain_seq, org.chain_head, org.debt_inference, org.debt_training, org.id))
        for tx in book.transactions:
            transactions.append((tx.org_id, tx.seq, tx.kind, tx.at_us, tx.ref, tx.idempotency_key,
                                 tx.fingerprint, tx.result, tx.entries_text, tx.prev_hash,
                                 tx.hash))
    driver = Driver(connection)
    # Order matters for foreign keys: grants and holds before the entries that name them. Holds
    # resolved in the batch that created them are inserted already resolved. On PostgreSQL the
    # statements go out in one pipeline: one round trip while the organization rows are locked.
    with driver.pipeline():
        driver.insert_many("grants", GRANT_COLUMNS, new_grants)
        driver.update_many("grants", _GRANT_UPDATE, changed_grants)
        driver.update_many("grants", _GRANT_BALANCE_UPDATE, changed_balances)
        driver.insert_many("holds", HOLD_COLUMNS, new_holds)
        driver.update_many("holds", _HOLD_UPDATE, changed_holds)
        driver.insert_many("budgets", BUDGET_COLUMNS, new_budgets)
        driver.update_many("budgets", _BUDGET_UPDATE, changed_budgets)
        driver.insert_many("journal_transactions", TRANSACTION_COLUMNS, transactions)
        driver.update_many("orgs", _ORG_UPDATE, changed_orgs)

def entries_text(entries: Iterable[Any]) -> str:
    return journal.entries_json(entries).decode()


def grant_row(grant: Grant) -> tuple[Any, ...]:
    return (grant.id, grant.org_id, grant.kind, grant.scope, grant.priority, grant.effective_at_us,
            grant.expires_at_us, grant.amount, grant.remaining, grant.held, grant.created_at_us,
            grant.cost_basis, grant.currency, grant.status,
            orjson.dumps(sorted(grant.allow)).decode() if grant.allow is not None else None,
            grant.source_grant_id, grant.rollover, grant.metadata)


def hold_row(hold: Hold) -> tuple[Any, ...]:
    return (hold.id, hold.org_id, hold.amount, hold.scope, hold.status, hold.created_at_us,
            hold.expires_at_us, orjson.dumps([list(leg) for leg in hold.legs]).decode(), hold.model,
            hold.posted, hold.resolved_at_us, hold.metadata, orjson.dumps(list(hold.budgets)).decode())


def _columns(table: Any, names: str) -> list[Any]:
    return [table.c[name.strip()] for name in names.split(",")]


def org_select() -> Any:
    """A SQLAlchemy select whose rows :func:`org_from_row` reads."""
    from sqlalchemy import select

    from creditgate.storage.schema import orgs
    return select(*_columns(orgs, ORG_COLUMNS))


def grant_select() -> Any:
    from sqlalchemy import select

    from creditgate.storage.schema import grants
    return select(*_columns(grants, GRANT_COLUMNS))


def budget_select() -> Any:
    from sqlalchemy import select

    from creditgate.storage.schema import budgets
    return select(*_columns(budgets, BUDGET_COLUMNS))


def hold_select() -> Any:
    from sqlalchemy import select

    from creditgate.storage.schema import holds
    return select(*_columns(holds, HOLD_COLUMNS))
