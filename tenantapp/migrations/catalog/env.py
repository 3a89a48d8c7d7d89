"""Alembic environment of the catalog schema; run by tenantapp.migrations with a connection."""

from alembic import context

from tenantapp.migrations import bound_migration_timeouts
from tenantapp.models.catalog import CatalogBase

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tenantapp-admin, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=CatalogBase.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    bound_migration_timeouts(connection)
    context.run_migrations()
