"""Shared fixtures: real SQLite files and real PostgreSQL databases, created and dropped per test.

PostgreSQL tests skip when no server answers, except under CI=true where they must run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from creditgate.clock import ManualClock
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade

POSTGRES_ADMIN_URL = os.environ.get("CREDITGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL must be reachable under CI=true: {error}")
        pytest.skip(f"PostgreSQL not reachable: {error}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _postgres_admin()
    name = f"creditgate_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/creditgate.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database: Database, clock: ManualClock) -> Iterator[Ledger]:
    book = Ledger(database, clock)
    yield book
    book.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real Redis database (number 15) for one test, emptied afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        if IN_CI:
            pytest.fail(f"Redis must be reachable under CI=true: {error}")
        pytest.skip(f"Redis not reachable: {error}")
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()
