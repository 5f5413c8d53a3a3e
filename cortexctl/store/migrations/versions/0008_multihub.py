"""hubs as members: epoch (fencing token), version, nodes connected, who recovered a hub

Revision ID: 0008_multihub
Revises: 0003_hubres
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_multihub"
down_revision = "0003_hubres"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hubs") as batch:
        batch.add_column(sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("version", sa.String(64), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("nodes_connected", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("recovered_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("recovered_epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hubs") as batch:
        batch.drop_column("recovered_epoch")
        batch.drop_column("recovered_by")
        batch.drop_column("nodes_connected")
        batch.drop_column("version")
        batch.drop_column("epoch")
