"""STRICT policy fields: argv pins, env allow-list, network switch, rlimits

Revision ID: 0002_strict
Revises: 0008_multihub
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_strict"
down_revision = "0008_multihub"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_prefixes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("allowed_env", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("deny_network", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("limits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("limits")
        batch_op.drop_column("deny_network")
        batch_op.drop_column("allowed_env")
        batch_op.drop_column("allowed_prefixes")
