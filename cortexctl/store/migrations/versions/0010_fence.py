"""fencing: the epoch under which a hub claimed each task; the epoch a hub process joined at

Revision ID: 0010_fence
Revises: 0009_admin
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_fence"
down_revision = "0009_admin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain column adds (no batch rebuild: a rebuild of a table with FKs can cascade).
    op.add_column("tasks", sa.Column("hub_epoch", sa.BigInteger(), nullable=True))
    op.add_column(
        "hubs",
        sa.Column("registered_epoch", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("hubs", "registered_epoch")
    op.drop_column("tasks", "hub_epoch")
