"""usage event claims keyed by organization

Revision ID: 0003
Revises: 0002

A usage event is a duplicate of another with the same (source, id) in the same organization
(creditgate.usage.ingest._claim_key). Keyed by (source, id) alone, one tenant's events made
another tenant's events with the same source and ids count as duplicates, uncharged. Changing a
primary key means rebuilding the table on SQLite; the table is rebuilt the same way on both
databases, its claims kept.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _rebuild(key: list[str]) -> None:
    op.create_table(
        'usage_event_keys_new',
        sa.Column('org_id', sa.String(length=40), nullable=False),
        sa.Column('source', sa.String(length=256), nullable=False),
        sa.Column('event_id', sa.String(length=128), nullable=False),
        sa.Column('received_at_us', sa.BigInteger(), nullable=False),
        # The old table still holds the name pk_usage_event_keys (unique per schema on PostgreSQL).
        sa.PrimaryKeyConstraint(*key, name='pk_usage_event_keys_new'),
    )
    op.execute('INSERT INTO usage_event_keys_new (org_id, source, event_id, received_at_us) '
               'SELECT org_id, source, event_id, received_at_us FROM usage_event_keys')
    op.drop_index('ix_usage_event_keys_received', table_name='usage_event_keys')
    op.drop_table('usage_event_keys')
    op.rename_table('usage_event_keys_new', 'usage_event_keys')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE usage_event_keys RENAME CONSTRAINT pk_usage_event_keys_new TO pk_usage_event_keys')
    op.create_index('ix_usage_event_keys_received', 'usage_event_keys', ['received_at_us'], unique=False)


def upgrade() -> None:
    _rebuild(['org_id', 'source', 'event_id'])


def downgrade() -> None:
    # Claims that differ only by organization cannot both stay under the old key: keep the first.
    op.execute('DELETE FROM usage_event_keys WHERE EXISTS (SELECT 1 FROM usage_event_keys AS other '
               'WHERE other.source = usage_event_keys.source AND other.event_id = usage_event_keys.event_id '
               'AND other.org_id < usage_event_keys.org_id)')
    _rebuild(['source', 'event_id'])
