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
SCHEMA_HEAD: Final = "0003"


def _config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    return config


# Any constant: PostgreSQL's advisory lock that serializes migrations across processes.
MIGRATION_LOCK_KEY: Final = 0x63726564  # "cred"


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction: a crash leaves the old schema whole,
    and two processes starting on a new database migrate one after the other (the second then
    finds nothing to do) instead of racing to create the same tables."""
    if revision == "head" and stored_revision(database) == SCHEMA_HEAD:
        return
    from alembic import command

    config = _config()
    if not database.is_sqlite:
        with database.engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return
    with database.engine.connect() as connection:
        # creditgate's SQLite connections send their own BEGINs (the driver is in autocommit
        # mode), so without this one every DDL statement would commit alone. IMMEDIATE takes the
        # write lock first: a second process waits here, then finds the schema current. Foreign
        # keys are switched off before it, because inside a transaction the pragma does nothing.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        except BaseException:
            connection.exec_driver_sql("ROLLBACK")
            raise
        else:
            connection.exec_driver_sql("COMMIT")
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()  # SQLAlchemy's own view of the connection: nothing left open


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
