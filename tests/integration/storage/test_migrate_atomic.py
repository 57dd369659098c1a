"""Migrations run as one transaction, and one process at a time."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import event, inspect

from creditgate.storage.database import Database
from creditgate.storage.migrate import SCHEMA_HEAD, current_revision, upgrade


def test_a_migration_that_fails_half_way_leaves_nothing_behind(database_url: str) -> None:
    database = Database(database_url)
    created = {"tables": 0}

    def crash_at_the_tenth_table(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            created["tables"] += 1
            if created["tables"] == 10:
                raise RuntimeError("the process died here")

    event.listen(database.engine, "before_cursor_execute", crash_at_the_tenth_table)
    try:
        with pytest.raises(RuntimeError, match="died"):
            upgrade(database)
        event.remove(database.engine, "before_cursor_execute", crash_at_the_tenth_table)
        assert inspect(database.engine).get_table_names() == []  # not nine tables and no version
        upgrade(database)  # the next start migrates from scratch
        assert current_revision(database) == SCHEMA_HEAD
    finally:
        database.dispose()


def test_two_processes_starting_on_a_new_database_both_get_the_schema(database_url: str) -> None:
    script = ("import sys; from creditgate.storage.database import Database; "
              "from creditgate.storage.migrate import upgrade; upgrade(Database(sys.argv[1]))")
    for _ in range(3):
        runs = [subprocess.Popen([sys.executable, "-c", script, database_url], stderr=subprocess.PIPE)
                for _ in range(2)]
        errors = [run.communicate(timeout=120)[1].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0], errors
    database = Database(database_url)
    try:
        assert current_revision(database) == SCHEMA_HEAD
    finally:
        database.dispose()
