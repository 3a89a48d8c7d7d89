"""Decision records of moves between tenants (two-phase commit across databases).

A move prepares both tenant databases, then commits one row here: that commit
is the decision point. The resolver (tenantapp.db.recovery) commits the
prepared transactions of a move that has a 'commit' row, rolls back those of
a move without one (after writing an 'abort' row first, so that a coordinator
still alive can no longer decide otherwise) and deletes the row once nothing
of the move is left.

Revision ID: c0004
Revises: c0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from tenantapp.models.types import UTCDateTime

revision = "c0004"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "move_decisions",
        sa.Column("move_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("coordinator", sa.Text, nullable=False),
        sa.Column("source_tenant", sa.String(40), nullable=True),
        sa.Column("source_project_id", sa.Integer, nullable=True),
        sa.Column("target_tenant", sa.String(40), nullable=True),
        sa.Column("target_project_id", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("move_id", name="pk_move_decisions"),
        sa.CheckConstraint("outcome IN ('commit', 'abort')", name="ck_move_decisions_outcome"),
    )


def downgrade():
    op.drop_table("move_decisions")
