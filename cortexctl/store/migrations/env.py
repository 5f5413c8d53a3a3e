"""Alembic environment: runs on the connection cortexctl hands in (no alembic.ini)."""

from alembic import context

from cortexctl.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - cortexctl always passes its connection
    raise RuntimeError("run migrations with `cortexctl db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
