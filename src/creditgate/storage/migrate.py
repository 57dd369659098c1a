"""Schema migrations with Alembic, run from inside the package (no alembic.ini to find)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from creditgate.storage.database import Database

MIGRATIONS_PATH = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    config = _config()
    with database.engine.begin() as connection:
        if database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        if database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def is_current(database: Database) -> bool:
    return current_revision(database) == head_revision()
