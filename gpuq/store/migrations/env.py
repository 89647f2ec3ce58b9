"""Alembic environment: runs on the connection `gpuq.store.migrate` hands over.

`render_as_batch` lets the same migration scripts alter tables on SQLite.
"""

from alembic import context

from gpuq.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
