"""Plain SQL on the DBAPI connection under a SQLAlchemy one, for the write hot paths.

The ledger and usage ingestion talk to the driver directly (the schema and migrations stay in
SQLAlchemy), because SQLAlchemy's per-statement overhead was most of a batch's cost. Statements
are written with ``?`` placeholders and rewritten to ``%s`` for psycopg. Bulk writes use
``executemany`` on SQLite (a C loop). On PostgreSQL :meth:`Driver.insert` sends one multi-row
statement per chunk, and the ledger's ``insert_many``/``update_many`` send one statement per
table whose text never changes: every column travels as one array and ``unnest`` turns the
arrays back into rows, so psycopg converts the text once and the server prepares it once,
however many rows a batch has (a multi-row VALUES list is a new statement for every row count).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any, Final

from sqlalchemy import Connection

# 2000 rows x 18 columns stays under psycopg's limit of 65535 parameters per statement.
POSTGRES_ROWS_PER_STATEMENT: Final = 2000


class Driver:
    """The DBAPI connection under a SQLAlchemy connection, with our placeholder style."""

    def __init__(self, connection: Connection) -> None:
        self.raw: Any = connection.connection.driver_connection  # sqlite3 or psycopg: duck-typed
        self.postgres = connection.dialect.name == "postgresql"

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
        trip instead of one per query)."""
        if not self.postgres:
            return [self.all(text, params) for text, params in queries]
        cursors = [self.raw.cursor() for _ in queries]
        try:
            with self.raw.pipeline():
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

    def insert(self, head: str, width: int, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        """``{head} VALUES (...), ... {tail}`` for every row; ``tail`` may be an ON CONFLICT clause."""
        if not rows:
            return
        marks = "(" + ",".join(["?"] * width) + ")"
        cursor = self.raw.cursor()
        try:
            if not self.postgres:
                cursor.executemany(f"{head} VALUES {marks} {tail}", rows)
                return
            for start in range(0, len(rows), POSTGRES_ROWS_PER_STATEMENT):
                chunk = rows[start:start + POSTGRES_ROWS_PER_STATEMENT]
                cursor.execute(self.sql(f"{head} VALUES " + ",".join([marks] * len(chunk)) + f" {tail}"),
                               [value for row in chunk for value in row])
        finally:
            cursor.close()

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """On PostgreSQL, send the statements inside without waiting for each one's answer (one
        round trip for all of them); errors are raised when the block ends."""
        with self.raw.pipeline() if self.postgres else nullcontext():
            yield

    def insert_many(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if not self.postgres:
            self.insert(f"INSERT INTO {table} ({columns})", len(columns.split(",")), rows)
            return
        if not rows:
            return
        arrays = ", ".join(f"%s::{kind}[]" for kind in _postgres_types(table, columns))
        cursor = self.raw.cursor()
        try:
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
                setters = ", ".join(f"{column} = ?" for column, _ in assignments)
                cursor.executemany(f"UPDATE {table} SET {setters} WHERE id = ?", rows)
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
