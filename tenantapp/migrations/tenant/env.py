"""Alembic environment of the tenant schema; run by tenantapp.migrations with a connection."""

from alembic import context

from tenantapp.migrations import bound_migration_timeouts
from tenantapp.models.tenant import TenantBase

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tenantapp-admin, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=TenantBase.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    bound_migration_timeouts(connection)
    context.run_migrations()
