"""uploads across hubs: a record of each mirrored file; upload leases with an expiry

Revision ID: 0012_mirrorfiles
Revises: 0011_onestream
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_mirrorfiles"
down_revision = "0011_onestream"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_files",
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "path", name=op.f("pk_mirror_files")),
    )
    op.create_index("ix_mirror_files_hub", "mirror_files", ["hub_id", "node_id"])
    # Plain column adds: NULL expiry (a lease from before) is judged by its hub's liveness.
    op.add_column("sync_leases", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.add_column("sync_leases", sa.Column("hub_epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_leases", "hub_epoch")
    op.drop_column("sync_leases", "expires_at")
    op.drop_index("ix_mirror_files_hub", table_name="mirror_files")
    op.drop_table("mirror_files")
