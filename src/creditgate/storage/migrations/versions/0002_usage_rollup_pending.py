"""usage records whose rollups are pending

Revision ID: 0002
Revises: 0001

Gateway requests store their usage record with the charge and leave its hourly rollups to a
background pass (creditgate.usage.records.roll_up_pending); the flag marks the records not yet
folded in, and the partial index finds them (and the usage queries' tail of them) directly.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('usage_records', sa.Column('rollup_pending', sa.SmallInteger(), server_default='0',
                                             nullable=False))
    op.create_index('ix_usage_records_rollup_pending', 'usage_records', ['org_id', 'at_us'], unique=False,
                    sqlite_where=sa.text('rollup_pending = 1'), postgresql_where=sa.text('rollup_pending = 1'))


def downgrade() -> None:
    op.drop_index('ix_usage_records_rollup_pending', table_name='usage_records')
    with op.batch_alter_table('usage_records') as batch:
        batch.drop_column('rollup_pending')
