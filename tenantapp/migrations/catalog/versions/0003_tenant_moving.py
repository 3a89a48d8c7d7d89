"""A tenant's status may be 'moving': `tenant move` is copying its database.

While it copies, the tenant's reads go on and its writes answer 503 with
Retry-After (tenantapp.request); the status goes back to 'active' when the
catalog points at the new database, or when the move fails.

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def _replace_status_check(old_name, name, statuses):
    check = "status IN ({})".format(", ".join(f"'{status}'" for status in statuses))
    # op.f(): the names as they are. (0001 named its constraint
    # "ck_tenants_status", and the metadata's naming convention prefixed it
    # again: in every database it is ck_tenants_ck_tenants_status.)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a constraint: batch mode copies the table.
        with op.batch_alter_table("tenants", recreate="always") as batch:
            batch.drop_constraint(op.f(old_name), type_="check")
            batch.create_check_constraint(op.f(name), check)
        return
    op.drop_constraint(op.f(old_name), "tenants", type_="check")
    op.create_check_constraint(op.f(name), "tenants", check)


def upgrade():
    _replace_status_check(
        "ck_tenants_ck_tenants_status", "ck_tenants_status", ["active", "suspended", "moving"]
    )


def downgrade():
    op.execute("UPDATE tenants SET status = 'active' WHERE status = 'moving'")
    _replace_status_check(
        "ck_tenants_status", "ck_tenants_ck_tenants_status", ["active", "suspended"]
    )
