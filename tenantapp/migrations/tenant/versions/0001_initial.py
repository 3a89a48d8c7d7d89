"""A tenant's data: projects and tasks.

Revision ID: t0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from tenantapp.models.types import UTCDateTime

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        # Never reuse the id of a deleted row (SQLite would, without this).
        sqlite_autoincrement=True,
    )
    op.create_index("uq_projects_name_key", "projects", ["name_key"], unique=True)
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("title_key", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("assignee", sa.String(150), nullable=True),
        sa.Column("due_date", sa.Date, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], ondelete="CASCADE", name="fk_tasks_project_id_projects"
        ),
        sa.CheckConstraint("status IN ('open', 'in_progress', 'done')", name="ck_tasks_status"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tasks_project_id_id", "tasks", ["project_id", "id"])


def downgrade():
    op.drop_table("tasks")
    op.drop_table("projects")
