"""names decided by the operator: invites may fix a node's name or a prefix; labels a node
reports about itself are kept apart from the trusted ones (the invite's, the operator's)

Revision ID: 0004_secrets
Revises: 0002_strict
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_secrets"
down_revision = "0002_strict"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): a batch table rebuild would DROP the nodes table,
    # and with foreign keys on, that deletes every task and presence row of every node.
    op.add_column("invites", sa.Column("node_name", sa.String(length=128), nullable=True))
    op.add_column("invites", sa.Column("name_prefix", sa.String(length=64), nullable=True))
    op.add_column(
        "nodes",
        sa.Column("self_labels", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    # Until now a node's labels mixed the invite's with its own. Keep as trusted only what
    # its invite gave; everything else (all of it when the invite is gone) becomes
    # self-reported, so no label a node chose is trusted by mistake.
    invites = sa.table("invites", sa.column("id", sa.String), sa.column("labels", sa.JSON))
    nodes = sa.table(
        "nodes",
        sa.column("id", sa.String),
        sa.column("invite_id", sa.String),
        sa.column("labels", sa.JSON),
        sa.column("self_labels", sa.JSON),
    )
    connection = op.get_bind()
    given = {row.id: row.labels or {} for row in connection.execute(sa.select(invites))}
    for row in connection.execute(sa.select(nodes.c.id, nodes.c.invite_id, nodes.c.labels)):
        labels = dict(row.labels or {})
        if not labels:
            continue
        from_invite = given.get(row.invite_id, {})
        trusted = {k: v for k, v in labels.items() if from_invite.get(k) == v}
        reported = {k: v for k, v in labels.items() if k not in trusted}
        connection.execute(
            sa.update(nodes)
            .where(nodes.c.id == row.id)
            .values(labels=trusted, self_labels=reported)
        )


def downgrade() -> None:
    op.drop_column("nodes", "self_labels")
    op.drop_column("invites", "name_prefix")
    op.drop_column("invites", "node_name")
