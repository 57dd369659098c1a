"""One migrated database per backend for the whole module, emptied after every test.

Creating and migrating a PostgreSQL database costs seconds; these tests only need an empty ledger
each, so they share one database per module and delete every row afterwards. This overrides the
root ``database`` fixture here, so the root ``ledger`` fixture runs on it too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade
from creditgate.storage.tables import metadata
from tests.conftest import POSTGRES_ADMIN_URL, _postgres_admin


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path_factory.mktemp('ledger')}/creditgate.db")
        upgrade(database)
        yield database
        database.dispose()
        return
    admin = _postgres_admin()
    name = f"creditgate_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    database = Database(f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    try:
        upgrade(database)
        yield database
    finally:
        database.dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def database(shared_database: Database) -> Iterator[Database]:
    yield shared_database
    with shared_database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(text(f"DELETE FROM {table.name}"))
