"""Plain SQL on the DBAPI connection under a SQLAlchemy one, for the usage hot path.

Statements are written with ``?`` placeholders and rewritten to ``%s`` for psycopg. Bulk inserts
use ``executemany`` on SQLite (a C loop) and multi-row ``VALUES`` on PostgreSQL, where psycopg's
``executemany`` would cost a round trip per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection

POSTGRES_ROWS_PER_STATEMENT: Final = 1_000


class Sql:
    def __init__(self, connection: Connection) -> None:
        self.raw = connection.connection.driver_connection
        self.postgres = connection.dialect.name == "postgresql"

    def _text(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(self._text(text), tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``text`` once per row (for rare, small statements such as deletes)."""
        if not rows:
            return
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self._text(text), [tuple(row) for row in rows])
        finally:
            cursor.close()

    def insert(self, head: str, width: int, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        """``{head} VALUES (...), ... {tail}`` for every row; ``tail`` may be an ON CONFLICT clause."""
        if not rows:
            return
        cursor = self.raw.cursor()
        marks = "(" + ",".join(["?"] * width) + ")"
        try:
            if not self.postgres:
                cursor.executemany(f"{head} VALUES {marks} {tail}", rows)
                return
            for start in range(0, len(rows), POSTGRES_ROWS_PER_STATEMENT):
                chunk = rows[start:start + POSTGRES_ROWS_PER_STATEMENT]
                cursor.execute(self._text(f"{head} VALUES " + ",".join([marks] * len(chunk)) + f" {tail}"),
                               [value for row in chunk for value in row])
        finally:
            cursor.close()
