"""The usage hot path's plain-SQL helper: the ledger's driver wrapper plus bulk inserts.

A batch of a thousand events writes thousands of rows. On PostgreSQL, a multi-row ``VALUES``
list with one placeholder per value made psycopg spend more time scanning the statement text
for placeholders (not cached for long statements) than the server spent executing it, and
arrays of text (``unnest``) were little better, because psycopg quotes each element in Python.
So rows that only need inserting go through ``COPY`` (psycopg formats rows in C), and rows that
need ``ON CONFLICT`` or ``RETURNING`` travel as one JSON document that the server unpacks into
the table's own row type with ``json_populate_recordset``. On SQLite, ``executemany`` over one
prepared statement is already the fastest way.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final

import orjson

from creditgate.storage.driver import Driver

__all__ = ["Sql"]

# A statement's parameters on SQLite stay below its default limit of 32,766 variables.
SQLITE_VARIABLES_MAX: Final = 32_000


class Sql(Driver):
    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (tuples in ``columns`` order) that can conflict with nothing."""
        if not rows:
            return
        cursor = self._cursor()
        names = ", ".join(columns)
        try:
            if not self.postgres:
                cursor.executemany(_sqlite_insert(table, tuple(columns), ""), rows)
                return
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
        cursor = self._cursor()
        try:
            if self.postgres:
                document = orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows])
                cursor.execute(_postgres_insert(table, tuple(columns), tail), (document.decode(),))
                return list(cursor.fetchall()) if cursor.description is not None else []
            if "RETURNING" not in tail:
                cursor.executemany(_sqlite_insert(table, tuple(columns), tail), rows)
                return []
            # executemany cannot return rows, so RETURNING goes through multi-row statements.
            returned: list[Any] = []
            marks = "(" + ",".join(["?"] * len(columns)) + ")"
            names = ", ".join(columns)
            per_statement = SQLITE_VARIABLES_MAX // len(columns)
            for start in range(0, len(rows), per_statement):
                chunk = rows[start:start + per_statement]
                cursor.execute(f"INSERT INTO {table} ({names}) VALUES " + ",".join([marks] * len(chunk))
                               + f" {tail}", [value for row in chunk for value in row])
                returned.extend(cursor.fetchall())
            return returned
        finally:
            cursor.close()

    def _cursor(self) -> Any:
        assert self.raw is not None, "the SQLAlchemy connection is closed"
        return self.raw.cursor()


@cache
def _sqlite_insert(table: str, columns: tuple[str, ...], tail: str) -> str:
    marks = ",".join(["?"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) {tail}"


@cache
def _postgres_insert(table: str, columns: tuple[str, ...], tail: str) -> str:
    names = ", ".join(columns)
    return (f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{table}, %s::json) {tail}")
