"""Migration 0002 (usage records' pending-rollup flag) on a database that already holds records."""

from __future__ import annotations

from sqlalchemy import text

from creditgate.storage.database import Database
from creditgate.storage.migrate import current_revision, upgrade


def test_existing_records_count_as_rolled_up_and_the_flag_can_be_dropped_again(database_url: str) -> None:
    from alembic import command

    from creditgate.storage.migrate import _config

    database = Database(database_url)
    try:
        upgrade(database, "0001")
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO orgs (id, name, created_at_us) VALUES ('org_m', 'm', 1)"))
            connection.execute(text(
                "INSERT INTO usage_records (org_id, model, meters, tags, credits, at_us) "
                "VALUES ('org_m', 'x', '{}', '{}', 5, 1)"))
        upgrade(database, "0002")
        assert current_revision(database) == "0002"
        with database.engine.connect() as connection:
            # Their rollups were written with them (0001 had no other way): nothing is pending.
            assert connection.execute(text("SELECT rollup_pending FROM usage_records")).scalar() == 0
        with database.engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        assert current_revision(database) == "0001"
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT credits FROM usage_records")).scalar() == 5
    finally:
        database.dispose()
