"""Opening a database from a URL: SQLite (embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode with a busy timeout so that several processes can share one file; every
write transaction starts with ``BEGIN IMMEDIATE`` so that the write lock is taken before any read
that a decision depends on (no lost updates between processes). Checkpoints of the log run on a
thread of their own (see ``storage.checkpoint``), not inside the writer's commits.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError

from creditgate.storage.checkpoint import WalCheckpointer

DEFAULT_SQLITE_PATH: Final = "creditgate.db"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
POSTGRES_POOL_SIZE: Final = 8
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
POSTGRES_LOCK_TIMEOUT_MS: Final = 30_000
# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out (the
# server may have restarted or dropped it meanwhile); one in steady use is not, because a ping per
# checkout is a round trip per transaction.
POSTGRES_PING_IDLE_S: Final = 1.0


def database_url_from_env(explicit: str | None = None) -> str:
    if explicit:
        return normalize_url(explicit)
    env = os.environ.get("CREDITGATE_DATABASE_URL")
    if env:
        return normalize_url(env)
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and route them to psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class Database:
    """An engine plus the two kinds of transaction the rest of the code asks for."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        # SQLite has one write lock per file. This process's threads queue for it here and are
        # woken the moment it is free, instead of polling in SQLite's busy handler, which sleeps
        # up to 100 ms between tries and leaves the lock idle meanwhile. Other processes still
        # meet at SQLite's lock.
        self._sqlite_write_turn = threading.Lock()
        # ...and, holding the turn, all write on one connection: no pool checkout per
        # transaction, and one page cache that stays current because its own commits changed it.
        self._sqlite_writer: Connection | None = None
        self._sqlite_writer_waits = True
        self._checkpointer: WalCheckpointer | None = None
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                self._checkpointer = WalCheckpointer(parsed.database)
            self.engine = _sqlite_engine(self.url, checkpoint_thread=self._checkpointer is not None)
        elif self.dialect == "postgresql":
            self.engine = _postgres_engine(self.url)
        else:
            raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self, *, wait: bool = True, pipelined: bool = False) -> Iterator[Connection]:
        """A write transaction. On SQLite it holds the file's write lock from its first statement.

        ``wait=False`` (SQLite only) raises :class:`WriteBusy` at once instead of waiting when
        another thread or process holds the write lock, for callers on an event loop that must
        not block.

        ``pipelined`` (PostgreSQL; ignored on SQLite): the whole transaction runs in psycopg's
        pipeline mode, for callers that use only :class:`~creditgate.storage.driver.Driver`
        statements (the ledger's writer). Statements are sent without waiting for each one's
        answer; only reading rows waits. BEGIN goes out with the first reads and the writes with
        COMMIT, so a ledger batch waits for the server twice instead of seven times.
        """
        if not self.is_sqlite:
            assert wait, "only SQLite writes can refuse to wait"
            if pipelined:
                with self.engine.connect() as connection, _pipelined_transaction(connection):
                    yield connection
                return
            with self.engine.connect() as connection, connection.begin():
                yield connection
            return
        if not wait:
            if not self._sqlite_write_turn.acquire(blocking=False):
                raise WriteBusy()
        elif not self._sqlite_write_turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            # What SQLite itself raises when its busy timeout runs out; callers retry on it.
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
        try:
            connection, driver = self._writer(wait)
            _begin(driver, wait)
            try:
                yield connection
            except BaseException:
                self._reset_writer(connection, driver)
                raise
            _control(driver, "COMMIT")
        finally:
            self._sqlite_write_turn.release()
        if self._checkpointer is not None:
            self._checkpointer.wake()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot: every statement inside sees the same committed state."""
        with self.engine.connect() as connection:
            if self.is_sqlite:
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            try:
                yield connection
            finally:
                if self.is_sqlite:
                    connection.exec_driver_sql("ROLLBACK")
                else:
                    connection.rollback()

    def _writer(self, wait: bool) -> tuple[Connection, sqlite3.Connection]:
        """The connection this process's SQLite writes share (the caller holds the write turn),
        with the busy timeout that ``wait`` asks for. Transaction control goes straight to the
        driver: through SQLAlchemy's statement machinery it cost more than the commit itself."""
        connection = self._sqlite_writer
        if connection is None or connection.closed or connection.invalidated:
            connection = self._sqlite_writer = self.engine.connect()
            self._sqlite_writer_waits = True  # the engine's busy timeout
        driver = cast(sqlite3.Connection, connection.connection.driver_connection)
        if wait != self._sqlite_writer_waits:
            # Set only when the kind of caller changes, not for every write.
            driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS if wait else 0}")
            self._sqlite_writer_waits = wait
        return connection, driver

    def _reset_writer(self, connection: Connection, driver: sqlite3.Connection) -> None:
        """After a failed write: roll back, and start the next one on a fresh connection if this
        one may be unusable."""
        try:
            if driver.in_transaction:
                _control(driver, "ROLLBACK")
            connection.rollback()  # SQLAlchemy's own view of the connection, too
        except Exception:  # noqa: BLE001 - the write's own error is the one to report; this connection is done
            self._sqlite_writer = None
            connection.invalidate()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._sqlite_write_turn:
            if self._sqlite_writer is not None:
                self._sqlite_writer.close()
                self._sqlite_writer = None
        self.engine.dispose()


class WriteBusy(Exception):
    """The SQLite write lock is taken (by this process or another) and the caller would not wait."""


def _control(driver: sqlite3.Connection, statement: str) -> None:
    """A transaction-control statement, its errors shaped as SQLAlchemy's (callers catch those)."""
    try:
        driver.execute(statement)
    except sqlite3.Error as error:
        raise OperationalError(statement, None, error) from error


def _begin(driver: sqlite3.Connection, wait: bool) -> None:
    """``BEGIN IMMEDIATE``. Without ``wait`` the busy timeout is 0, so another process's lock
    fails at once, as WriteBusy."""
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:
        if not wait and ("locked" in str(error).lower() or "busy" in str(error).lower()):
            raise WriteBusy() from None
        raise OperationalError("BEGIN IMMEDIATE", None, error) from error


@contextmanager
def _pipelined_transaction(connection: Connection) -> Iterator[None]:
    """A transaction on the psycopg connection under ``connection``, in pipeline mode.

    BEGIN and COMMIT are sent as statements of the pipeline (the connection in autocommit mode
    meanwhile): psycopg's own BEGIN and commit() each wait for a round trip of their own. So a
    ledger batch costs two round trips: the lock and reads with BEGIN, the writes with COMMIT.
    The first error a statement meets is raised where its result is read, at the latest when the
    pipeline ends; the connection is then closed, which rolls the transaction back.
    """
    raw: Any = connection.connection.driver_connection
    raw.autocommit = True
    try:
        with raw.pipeline():
            raw.execute("BEGIN")
            yield
            raw.execute("COMMIT")
    except BaseException:
        # Closed, not rolled back and reused: psycopg prepares statements that run often, and an
        # aborted pipeline can lose them on the server while psycopg still counts them as
        # prepared, so every later transaction on this connection would fail ("prepared
        # statement does not exist"). Closing rolls the transaction back; the pool opens another.
        connection.invalidate()
        raise
    finally:
        if not raw.closed:
            raw.autocommit = False


def _postgres_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_POOL_SIZE,
        connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
                      "options": f"-c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS}"},
    )

    # SQLAlchemy's pool_pre_ping pings on every checkout. This pings only a connection that sat
    # idle in the pool (SQLAlchemy's documented "pessimistic" pattern: DisconnectionError makes
    # the pool drop the connection and hand out a fresh one).
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < POSTGRES_PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure means: not this connection
            raise DisconnectionError(str(error)) from error

    return engine


def _sqlite_engine(url: str, *, checkpoint_thread: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # A pool keeps connections (and SQLite's page cache) open between transactions; each
        # connection is used by one thread at a time.
        pool_size=8,
        max_overflow=16,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                      "isolation_level": None},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives any process crash (SIGKILL) without losing a commit; only
        # an operating-system crash or power loss can drop the last transactions.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if checkpoint_thread:
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's job
        cursor.close()

    return engine
