"""PostgreSQL write transactions: the ledger's pipelined ones, and pooled connections that the
server dropped while they sat idle."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from creditgate.storage import database as database_module
from creditgate.storage.database import Database
from creditgate.storage.driver import Driver

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    with db.write() as connection:
        connection.execute(text("CREATE TABLE t (x TEXT PRIMARY KEY)"))
    yield db
    db.dispose()


def rows(database: Database) -> list[str]:
    with database.read() as connection:
        return [row[0] for row in connection.execute(text("SELECT x FROM t ORDER BY x"))]


def insert(connection: object, *values: str) -> None:
    Driver(connection).insert_many("t", "x", [(value,) for value in values])  # type: ignore[arg-type]


def test_a_pipelined_write_reports_the_refused_statement_and_writes_nothing(database: Database) -> None:
    with database.write(pipelined=True) as connection:
        assert Driver(connection).pipelined
        insert(connection, "a")
        # Reading waits for what was sent before it, in the same transaction.
        assert Driver(connection).all("SELECT count(*) FROM t") == [(1,)]
    assert rows(database) == ["a"]

    # The duplicate is only sent, not answered, until the COMMIT: the error must still be the
    # statement's own (not "pipeline aborted"), and nothing of the transaction may stay.
    with pytest.raises(psycopg.errors.UniqueViolation), database.write(pipelined=True) as connection:
        insert(connection, "b")
        insert(connection, "a")
        insert(connection, "c")
    with pytest.raises(RuntimeError), database.write(pipelined=True) as connection:
        insert(connection, "d")
        raise RuntimeError("the caller gave up half way")
    assert rows(database) == ["a"]

    with database.write(pipelined=True) as connection:  # the connection is ready for the next one
        insert(connection, "e")
        Driver(connection).copy_rows("t", ["x"], [("f",), ("g",)])  # COPY cannot be pipelined
    assert rows(database) == ["a", "e", "f", "g"]


def test_an_idle_connection_the_server_dropped_is_replaced(database: Database,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with database.write() as connection:  # a connection now idle in the pool
        insert(connection, "a")

    def drop_server_connections() -> None:
        with psycopg.connect(database.engine.url.set(drivername="postgresql").render_as_string(False),
                             autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")

    # Used again at once, the connection is not pinged (no round trip per transaction), so a
    # dropped one fails: this is what the ping below guards against.
    drop_server_connections()
    monkeypatch.setattr(database_module, "POSTGRES_PING_IDLE_S", 3600.0)
    with pytest.raises(Exception, match="terminat|closed|connection"), database.write() as connection:
        insert(connection, "b")

    # Idle past the threshold (0 here, instead of waiting), it is pinged and replaced.
    with database.write() as connection:
        insert(connection, "c")
    drop_server_connections()
    monkeypatch.setattr(database_module, "POSTGRES_PING_IDLE_S", 0.0)
    with database.write() as connection:
        insert(connection, "d")
    assert rows(database) == ["a", "c", "d"]


def test_a_pipelined_write_waits_for_the_server_twice(database: Database, tmp_path: Path) -> None:
    """BEGIN goes with the reads, COMMIT with the writes: two waits for the server, counted in
    libpq's protocol trace (a wait: the client sends a Flush or Sync, then reads answers)."""
    trace = tmp_path / "protocol.trace"
    with trace.open("w") as sink:
        with database.write(pipelined=True) as connection:
            raw = connection.connection.driver_connection
            raw.pgconn.trace(sink.fileno())  # from the first read on: BEGIN is queued, not yet sent
            driver = Driver(connection)
            assert driver.all_each([("SELECT count(*) FROM t", []), ("SELECT 1", [])]) == [[(0,)], [(1,)]]
            for value in ("a", "b", "c"):
                insert(connection, value)
        raw.pgconn.untrace()  # (flushes libpq's trace buffer while the file is still open)
    messages = [(line.split("\t") + [""])[1:5] for line in trace.read_text().splitlines()]
    waits = [index for index, (before, after) in enumerate(itertools.pairwise(messages))
             if before[0] == "F" and before[2].strip() in ("Flush", "Sync") and after[0] == "B"]
    assert len(waits) == 2, messages
    first_answers = [fields[3] for fields in messages[waits[0]:waits[1]] if fields[0] == "B"]
    last_answers = [fields[3] for fields in messages[waits[1]:] if fields[0] == "B"]
    assert ' "BEGIN"' in first_answers and ' "COMMIT"' in last_answers, messages
    assert rows(database) == ["a", "b", "c"]


def test_failed_pipelined_transactions_do_not_break_the_connections_they_ran_on(database: Database) -> None:
    """psycopg prepares a statement once it has run a few times; an aborted pipeline can lose
    that on the server while psycopg still counts it as prepared. The connection must not be
    reused then, or every later transaction on it fails ("prepared statement does not exist")."""
    with database.write(pipelined=True) as connection:
        insert(connection, "taken")
    for attempt in range(8):
        with pytest.raises(psycopg.errors.UniqueViolation), database.write(pipelined=True) as connection:
            insert(connection, f"fresh-{attempt}")
            insert(connection, "taken")
    for attempt in range(8):
        with database.write(pipelined=True) as connection:
            insert(connection, f"later-{attempt}")
    assert rows(database) == ["later-0", "later-1", "later-2", "later-3", "later-4", "later-5", "later-6",
                              "later-7", "taken"]
