"""Alembic environment: runs migrations on the connection that creditgate hands over."""

from __future__ import annotations

from alembic import context

from creditgate.storage.tables import metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through creditgate.storage.migrate.upgrade"
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
