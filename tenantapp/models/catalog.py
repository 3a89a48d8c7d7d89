"""The catalog schema: users, tenants, memberships, login sessions, throttling."""

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tenantapp.models.types import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("viewer", "editor", "admin")
TENANT_STATUSES = ("active", "suspended", "moving")
#: A moving tenant (``tenant move`` is copying its database) is in use: its
#: reads go on, its writes answer 503 until the move ends.
USABLE_STATUSES = frozenset({"active", "moving"})


class CatalogBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(CatalogBase):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    memberships: Mapped[list["Membership"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Tenant(CatalogBase):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint(f"status IN {TENANT_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="active")
    # NULL: the database is where tenantapp.tenant_url_template says.
    db_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Membership(CatalogBase):
    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="role"),
        Index("ix_memberships_tenant_id", "tenant_id"),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20))

    user: Mapped[User] = relationship(back_populates="memberships")
    tenant: Mapped[Tenant] = relationship()


class LoginSession(CatalogBase):
    """A server-side login session; the cookie carries its token, the table
    only the token's SHA-256 (a copy of the table opens no session)."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user_id", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="SET NULL"), nullable=True
    )
    created_at = mapped_column(UTCDateTime, nullable=False)
    last_used_at = mapped_column(UTCDateTime, nullable=False)


class LoginFailure(CatalogBase):
    """One failed login attempt, kept for the throttling window."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_username_attempted_at", "username", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    attempted_at = mapped_column(UTCDateTime, nullable=False)


class MoveDecision(CatalogBase):
    """The decision of one move of a project between tenants (its two-phase commit).

    Committed after both tenant databases prepared: that commit is the
    decision point. 'abort' rows are written by the resolver only, before it
    rolls back a move nobody decided (tenantapp.db.recovery).
    """

    __tablename__ = "move_decisions"
    __table_args__ = (CheckConstraint("outcome IN ('commit', 'abort')", name="outcome"),)

    move_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(10))
    # Which process decided: host/pid/start time (see tenantapp.db.recovery).
    coordinator: Mapped[str] = mapped_column(Text)
    # What moved where (SQLite's recovery reads them; on PostgreSQL, for the logs).
    source_tenant: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source_project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_tenant: Mapped[str | None] = mapped_column(String(40), nullable=True)
    target_project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
