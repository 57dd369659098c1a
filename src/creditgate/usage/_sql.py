"""The usage hot path's plain-SQL helper: the ledger's driver wrapper plus column-wise bulk inserts.

A batch of a thousand events writes thousands of rows. On PostgreSQL, a multi-row ``VALUES``
list with one placeholder per value made psycopg spend more time parsing the statement text
(its placeholder scan is not cached for long statements) than the server spent executing it.
Sending one array per column and unpacking it with ``unnest`` keeps the statement short and
constant, so psycopg parses it once and the arrays travel in binary.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final

from creditgate.storage.driver import Driver

__all__ = ["Column", "Sql"]

# (column name, PostgreSQL array element type) — the type tells ``unnest`` what each array holds.
Column = tuple[str, str]

# A statement's parameters on SQLite stay below its default limit of 32,766 variables.
SQLITE_VARIABLES_MAX: Final = 32_000


class Sql(Driver):
    def insert_columns(self, table: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]],
                       tail: str = "") -> list[Any]:
        """Insert ``rows`` (tuples in ``columns`` order); ``tail`` may hold ON CONFLICT and
        RETURNING clauses. Answer the returned rows, if any."""
        if not rows:
            return []
        assert self.raw is not None, "the SQLAlchemy connection is closed"
        cursor = self.raw.cursor()
        try:
            if self.postgres:
                cursor.execute(_unnest_insert(table, tuple(columns), tail),
                               [list(values) for values in zip(*rows, strict=True)])
                return list(cursor.fetchall()) if cursor.description is not None else []
            names = ", ".join(name for name, _ in columns)
            marks = "(" + ",".join(["?"] * len(columns)) + ")"
            if "RETURNING" not in tail:
                # A C loop over one prepared statement: SQLite's fastest bulk insert.
                cursor.executemany(f"INSERT INTO {table} ({names}) VALUES {marks} {tail}", rows)
                return []
            # executemany cannot return rows, so RETURNING goes through multi-row statements.
            returned: list[Any] = []
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
def _unnest_insert(table: str, columns: tuple[Column, ...], tail: str) -> str:
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {tail}"
