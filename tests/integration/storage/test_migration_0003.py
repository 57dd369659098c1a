"""Migration 0003 (usage event claims keyed by organization) on a database that already holds claims."""

from __future__ import annotations

from sqlalchemy import text

from creditgate.storage.database import Database
from creditgate.storage.migrate import current_revision, upgrade


def claims(database: Database) -> list[tuple[str, str, str]]:
    with database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(  # type: ignore[misc]
            text("SELECT org_id, source, event_id FROM usage_event_keys ORDER BY org_id, event_id"))]


def test_claims_are_kept_and_two_organizations_may_then_claim_the_same_pair(database_url: str) -> None:
    from alembic import command

    from creditgate.storage.migrate import _config

    database = Database(database_url)
    try:
        upgrade(database, "0002")
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO usage_event_keys (source, event_id, org_id, received_at_us) "
                                    "VALUES ('src', '1', 'org_a', 5)"))
        upgrade(database)
        assert current_revision(database) == "0003"
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO usage_event_keys (org_id, source, event_id, received_at_us) "
                                    "VALUES ('org_b', 'src', '1', 6)"))
        assert claims(database) == [("org_a", "src", "1"), ("org_b", "src", "1")]
        with database.engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")
        assert current_revision(database) == "0002"
        assert claims(database) == [("org_a", "src", "1")]  # the first organization's claim stays
        upgrade(database)
        assert claims(database) == [("org_a", "src", "1")]
    finally:
        database.dispose()
