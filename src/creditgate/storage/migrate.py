"""Schema migrations with Alembic, run from inside the package (no alembic.ini to find).

Alembic is imported only when a migration may be needed: every CLI command opens the database,
and reading the one-row ``alembic_version`` table is enough to see that the schema is current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from creditgate.storage.database import Database

MIGRATIONS_PATH = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; a test pins it to Alembic's own view of the head.
SCHEMA_HEAD: Final = "0002"


def _config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    if revision == "head" and stored_revision(database) == SCHEMA_HEAD:
        return
    from alembic import command

    config = _config()
    with database.engine.begin() as connection:
        if database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        if database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def stored_revision(database: Database) -> str | None:
    """The revision recorded in the database, or None for a new database."""
    try:
        with database.engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()
