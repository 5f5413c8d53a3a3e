"""per-node mirror quotas and usage

Revision ID: 0003_hubres
Revises: 0007_cliverbs
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_hubres"
down_revision = "0007_cliverbs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        # NULL: the hub-wide default (sync.quota_bytes / sync.quota_files); 0: no limit.
        batch.add_column(sa.Column("quota_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("quota_files", sa.BigInteger(), nullable=True))
        # What the node's mirror holds, kept on upload commit and on deletion.
        batch.add_column(
            sa.Column("mirror_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("mirror_files", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("mirror_files")
        batch.drop_column("mirror_bytes")
        batch.drop_column("quota_files")
        batch.drop_column("quota_bytes")
