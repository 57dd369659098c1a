"""SQLite writes share one connection (under the process's write turn): a failed write must
leave nothing behind, neither rows nor an open transaction, for the write after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from creditgate.storage.database import Database


def rows(database: Database) -> list[str]:
    with database.read() as connection:
        return [row[0] for row in connection.execute(text("SELECT x FROM t ORDER BY x"))]


def test_a_failed_write_is_rolled_back_and_the_next_one_commits(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with database.write() as connection:
            connection.execute(text("CREATE TABLE t (x TEXT PRIMARY KEY)"))
        with pytest.raises(IntegrityError), database.write() as connection:
            connection.execute(text("INSERT INTO t VALUES ('a')"))
            connection.execute(text("INSERT INTO t VALUES ('a')"))  # refused: the whole write goes
        with pytest.raises(RuntimeError), database.write() as connection:
            connection.execute(text("INSERT INTO t VALUES ('b')"))
            raise RuntimeError("the caller gave up half way")
        assert rows(database) == []
        with database.write() as connection:
            assert connection.connection.driver_connection.in_transaction  # a fresh BEGIN ran
            connection.execute(text("INSERT INTO t VALUES ('c')"))
        assert rows(database) == ["c"]
    finally:
        database.dispose()
