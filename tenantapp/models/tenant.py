"""The tenant schema, the same in every tenant's own database: projects and tasks."""

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from tenantapp.models.catalog import NAMING_CONVENTION
from tenantapp.models.types import UTCDateTime, utcnow

TASK_STATUSES = ("open", "in_progress", "done")


class TenantBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Project(TenantBase):
    __tablename__ = "projects"
    __table_args__ = (
        # Names are unique within the tenant, ignoring case (any script).
        Index("uq_projects_name_key", "name_key", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # name.casefold(), kept by the model: SQLite's lower() and PostgreSQL's
    # under the C locale only fold ASCII; Python folds every script alike.
    name_key: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    # The ORM checks and bumps the version on every UPDATE and DELETE
    # (UPDATE ... WHERE version = :seen): a concurrent change is never lost.
    __mapper_args__ = {"version_id_col": version}

    @validates("name")
    def _fold_name(self, key, value):
        self.name_key = value.casefold()
        return value


class Task(TenantBase):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'in_progress', 'done')", name="status"),
        Index("ix_tasks_project_id_id", "project_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(500))
    # title.casefold(), what the case-insensitive search ``q`` looks in.
    title_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open")
    assignee: Mapped[str | None] = mapped_column(String(150), nullable=True)
    due_date = mapped_column(Date, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}

    @validates("title")
    def _fold_title(self, key, value):
        self.title_key = value.casefold()
        return value
