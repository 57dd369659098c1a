from creditgate.storage.migrate import SCHEMA_HEAD, head_revision


def test_the_fast_schema_check_knows_alembics_head() -> None:
    # upgrade() skips Alembic when the stored revision equals SCHEMA_HEAD; a new migration must
    # move SCHEMA_HEAD too, or databases would silently stay on the old schema.
    assert head_revision() == SCHEMA_HEAD
