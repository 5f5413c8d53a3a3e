"""everyday verbs: cordoned nodes, task expiry

Revision ID: 0007_cliverbs
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_cliverbs"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("cordoned_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.create_index("ix_tasks_state_expires", "tasks", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_state_expires", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("cordoned_at")
