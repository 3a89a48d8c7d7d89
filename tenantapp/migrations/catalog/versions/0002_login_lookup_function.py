"""The login lookup as a PL/pgSQL function: PostgreSQL plans it once per connection.

Every request reads its login session, user, chosen tenant and membership with
one four-table join (tenantapp.auth.sessions). Planning that join cost
PostgreSQL more than running it, on every request. PL/pgSQL keeps the plans of
a function's statements for the life of the server connection, and unlike
PREPARE that works through PgBouncer's transaction pooling too: nothing is
tied to a client session. SQLite has no such functions; there the app sends
the join itself. tests/test_engines.py checks that both answer alike.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None

# The join of tenantapp.auth.sessions._LOGIN_QUERY; a change to one is a new
# migration for the other.
CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION tenantapp_login_lookup(p_token_hash text)
RETURNS TABLE (
    user_id integer,
    tenant_id integer,
    created_at timestamptz,
    last_used_at timestamptz,
    username text,
    display_name text,
    disabled boolean,
    tenant_name text,
    tenant_display_name text,
    tenant_status text,
    tenant_db_url text,
    role text
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.user_id, s.tenant_id, s.created_at, s.last_used_at,
           u.username::text, u.display_name::text, u.disabled,
           t.name::text, t.display_name::text, t.status::text, t.db_url,
           m.role::text
    FROM login_sessions s
    JOIN users u ON u.id = s.user_id
    LEFT JOIN tenants t ON t.id = s.tenant_id
    LEFT JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id
    WHERE s.token_hash = p_token_hash;
END
$$
"""


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(CREATE_FUNCTION)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP FUNCTION IF EXISTS tenantapp_login_lookup(text)")
