"""The WAL checkpoint thread: commits stay in the log until that thread copies them into the file."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from creditgate.storage.database import Database


def test_the_thread_copies_commits_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    database = Database(f"sqlite:///{path}")
    try:
        with database.engine.connect() as connection:
            # No commit checkpoints by itself any more...
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        with database.write() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
        for _ in range(50):
            with database.write() as connection:
                connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": "y" * 5000})
        # ...yet the rows reach the main file (which only a checkpoint writes) while the
        # database stays open.
        deadline = time.monotonic() + 10
        while path.stat().st_size < 50 * 5000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size >= 50 * 5000
        with database.read() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 50
    finally:
        database.dispose()

