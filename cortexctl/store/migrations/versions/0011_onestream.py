"""one stream per node across hubs: the presence row records the stream that owns it

Revision ID: 0011_onestream
Revises: 0010_fence
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_onestream"
down_revision = "0010_fence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: presence rows hang off nodes; no table rebuild.
    op.add_column(
        "presence",
        sa.Column("stream_id", sa.String(length=32), nullable=False, server_default=""),
    )
    op.add_column(
        "presence",
        sa.Column("stream_gen", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("presence", "stream_gen")
    op.drop_column("presence", "stream_id")
