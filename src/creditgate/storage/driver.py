"""Plain SQL on the DBAPI connection under a SQLAlchemy one, for the write hot paths.

The ledger and usage ingestion talk to the driver directly (the schema and migrations stay in
SQLAlchemy), because SQLAlchemy's per-statement overhead was most of a batch's cost. Statements
are written with ``?`` placeholders and rewritten to ``%s`` for psycopg. Bulk writes use
``executemany`` over one prepared statement on SQLite (a C loop), already its fastest way.

On PostgreSQL a multi-row ``VALUES`` list is a new statement for every row count, and psycopg
scans long statement texts for placeholders without caching them, which cost more than the
server's work. So every bulk write sends a statement whose text never changes:

- the ledger's ``insert_many``/``update_many``: every column travels as one typed array and
  ``unnest`` turns the arrays back into rows (a few columns of numbers and short text); one row,
  the usual case at low load, goes as a plain ``VALUES`` row or ``UPDATE ... WHERE id``, which
  costs the server about half as much as the same row through ``unnest``;
- usage rows, thousands per batch with JSON columns, where psycopg quoting each array element in
  Python was itself the cost: ``copy_rows`` goes through ``COPY`` (psycopg formats rows in C),
  and ``insert_rows``, which needs ``ON CONFLICT`` or ``RETURNING``, sends one JSON document that
  the server unpacks into the table's own row type with ``json_populate_recordset``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any, Final

import orjson
from sqlalchemy import Connection

# A statement's parameters on SQLite stay below its default limit of 32,766 variables.
SQLITE_VARIABLES_MAX: Final = 32_000
PIPELINE_OFF: Final = 0  # libpq's PQpipelineStatus when the connection is not in pipeline mode


class Driver:
    """The DBAPI connection under a SQLAlchemy connection, with our placeholder style."""

    def __init__(self, connection: Connection) -> None:
        raw: Any = connection.connection.driver_connection  # sqlite3 or psycopg: duck-typed
        self.raw = raw
        self.postgres = connection.dialect.name == "postgresql"
        # Inside Database.write(pipelined=True): statements are already pipelined, and a nested
        # pipeline block would cost a round trip (a sync) where it ends.
        self.pipelined = self.postgres and raw.pgconn.pipeline_status != PIPELINE_OFF

    def sql(self, text: str) -> str:
        return _to_format(text) if self.postgres else text

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.sql(text), tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def all_each(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The rows of each query, in order; on PostgreSQL all sent in one pipeline (one round
        trip instead of one per query); no queries, no round trip."""
        if not self.postgres or not queries:
            return [self.all(text, params) for text, params in queries]
        cursors = [self.raw.cursor() for _ in queries]
        try:
            with self.pipeline():
                for cursor, (text, params) in zip(cursors, queries, strict=True):
                    cursor.execute(self.sql(text), tuple(params))
            return [list(cursor.fetchall()) for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``text`` once per row (for rare, small statements such as deletes)."""
        if not rows:
            return
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self.sql(text), [tuple(row) for row in rows])
        finally:
            cursor.close()

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """On PostgreSQL, send the statements inside without waiting for each one's answer (one
        round trip for all of them); errors are raised when the block ends, or, inside a pipelined
        transaction, where a result is next read (by the COMMIT at the latest)."""
        with self.raw.pipeline() if self.postgres and not self.pipelined else nullcontext():
            yield

    def insert_many(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (tuples in the order of ``columns``, a comma-separated list)."""
        if not rows:
            return
        if not self.postgres:
            self.raw.executemany(_sqlite_insert(table, columns, ""), rows)
            return
        cursor = self.raw.cursor()
        try:
            if len(rows) == 1:  # most batches at low load: a plain row costs the server less
                cursor.execute(_to_format(_sqlite_insert(table, columns, "")), tuple(rows[0]))
                return
            arrays = ", ".join(f"%s::{kind}[]" for kind in _postgres_types(table, columns))
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})",
                           [list(column) for column in zip(*rows, strict=True)])
        finally:
            cursor.close()

    def update_many(self, table: str, assignments: tuple[tuple[str, str], ...],
                    rows: Sequence[Sequence[Any]]) -> None:
        """UPDATE table SET each assigned column WHERE id = the row's last value.

        ``assignments`` pairs each column with its PostgreSQL type (for the arrays of the unnest).
        """
        if not rows:
            return
        cursor = self.raw.cursor()
        try:
            if not self.postgres:
                cursor.executemany(_sqlite_update(table, assignments), rows)
                return
            if len(rows) == 1:  # most batches at low load: a plain row costs the server less
                cursor.execute(_to_format(_sqlite_update(table, assignments)), tuple(rows[0]))
                return
            names = [column for column, _ in assignments] + ["id"]
            arrays = ", ".join(f"%s::{kind}[]" for _, kind in assignments) + ", %s::text[]"
            setters = ", ".join(f"{column} = v.{column}" for column, _ in assignments)
            cursor.execute(
                f"UPDATE {table} AS t SET {setters} FROM unnest({arrays}) AS v({', '.join(names)}) "
                "WHERE t.id = v.id",
                [list(column) for column in zip(*rows, strict=True)])
        finally:
            cursor.close()

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (tuples in ``columns`` order) that can conflict with nothing."""
        if not rows:
            return
        names = ", ".join(columns)
        if not self.postgres:
            self.raw.executemany(_sqlite_insert(table, names, ""), rows)
            return
        if self.pipelined:  # COPY cannot run in pipeline mode; one JSON document can
            self.insert_rows(table, columns, rows)
            return
        cursor = self.raw.cursor()
        try:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    tail: str = "") -> list[Any]:
        """Insert ``rows`` (tuples in ``columns`` order); ``tail`` may hold ON CONFLICT and
        RETURNING clauses. Answer the returned rows, if any."""
        if not rows:
            return []
        names = ", ".join(columns)
        cursor = self.raw.cursor()
        try:
            if self.postgres:
                document = orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows])
                cursor.execute(_postgres_insert(table, names, tail), (document.decode(),))
                return list(cursor.fetchall()) if cursor.description is not None else []
            if "RETURNING" not in tail:
                cursor.executemany(_sqlite_insert(table, names, tail), rows)
                return []
            # executemany cannot return rows, so RETURNING goes through multi-row statements.
            returned: list[Any] = []
            marks = "(" + ",".join(["?"] * len(columns)) + ")"
            per_statement = SQLITE_VARIABLES_MAX // len(columns)
            for start in range(0, len(rows), per_statement):
                chunk = rows[start:start + per_statement]
                cursor.execute(f"INSERT INTO {table} ({names}) VALUES " + ",".join([marks] * len(chunk))
                               + f" {tail}", [value for row in chunk for value in row])
                returned.extend(cursor.fetchall())
            return returned
        finally:
            cursor.close()


@cache
def _sqlite_insert(table: str, names: str, tail: str) -> str:
    marks = ",".join(["?"] * len(names.split(",")))
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) {tail}"


@cache
def _sqlite_update(table: str, assignments: tuple[tuple[str, str], ...]) -> str:
    setters = ", ".join(f"{column} = ?" for column, _ in assignments)
    return f"UPDATE {table} SET {setters} WHERE id = ?"


@cache
def _postgres_insert(table: str, names: str, tail: str) -> str:
    return (f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{table}, %s::json) {tail}")


@cache
def _to_format(text: str) -> str:
    return text.replace("?", "%s")


@cache
def _postgres_types(table: str, columns: str) -> tuple[str, ...]:
    """The PostgreSQL type of each of ``columns``, from the schema, for the arrays of an unnest."""
    from sqlalchemy.dialects import postgresql

    from creditgate.storage.tables import metadata

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    known = metadata.tables[table].c
    return tuple(known[name.strip()].type.compile(dialect=dialect) for name in columns.split(","))
