"""Server-side login sessions in the catalog.

One query per request reads the session, its user, the chosen tenant and the
user's membership in it (on a connection of its own, returned to the pool
before the view runs), so a logout, a revoked membership, a changed role, a
disabled user or a suspended tenant is seen on the very next request by every
process.

"Last used" is not written on every request: only when the stored value is
older than the touch interval (``session_touch_interval``, but at most a tenth
of ``session_idle_timeout``). So the stored value may lag the true last use by
up to that interval, and the idle test allows for it: a session is idle when
its stored "last used" is older than the idle timeout plus the touch interval.
A session used at least once per idle timeout therefore stays valid until its
maximum age, whatever the settings, and an unused one expires between the idle
timeout and the idle timeout plus the touch interval after its last use (at
most 1.1 times the idle timeout; 1800 to 1860 s by default). Exactness would
cost a write on every request.
"""

from collections import namedtuple
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import String, and_, bindparam, column, delete, func, select, update

from tenantapp.auth import tokens
from tenantapp.db.reads import fetch_all
from tenantapp.models.catalog import LoginSession, Membership, Tenant, User


@dataclass(frozen=True)
class TenantAccess:
    """The chosen tenant as this request may use it."""

    id: int
    name: str
    display_name: str
    status: str
    # May hold a database password: never in a repr (a Login's reaches logs).
    db_url: str | None = field(repr=False)
    role: str  # None is never stored here: no membership means no TenantAccess

    def as_json(self):
        return {"name": self.name, "display_name": self.display_name, "role": self.role}


@dataclass(frozen=True)
class Login:
    """The live login session behind the request's cookie (plain values, no ORM)."""

    token_hash: str
    user_id: int
    username: str
    display_name: str
    created_at: datetime
    last_used_at: datetime
    # The tenant the session chose, even if the membership has since gone...
    chosen_tenant_id: int | None
    # ...and the access that remains to it (None: not chosen, or revoked).
    tenant: TenantAccess | None


# Built once, on the tables (Core, not ORM): compiled once, then served from
# SQLAlchemy's cache on every request.
_sessions = LoginSession.__table__
_users = User.__table__
_tenants = Tenant.__table__
_memberships = Membership.__table__
_LOGIN_QUERY = (
    select(
        _sessions.c.user_id,
        _sessions.c.tenant_id,
        _sessions.c.created_at,
        _sessions.c.last_used_at,
        _users.c.username,
        _users.c.display_name,
        _users.c.disabled,
        _tenants.c.name.label("tenant_name"),
        _tenants.c.display_name.label("tenant_display_name"),
        _tenants.c.status.label("tenant_status"),
        _tenants.c.db_url.label("tenant_db_url"),
        _memberships.c.role,
    )
    .select_from(
        _sessions.join(_users, _users.c.id == _sessions.c.user_id)
        .outerjoin(_tenants, _tenants.c.id == _sessions.c.tenant_id)
        .outerjoin(
            _memberships,
            and_(
                _memberships.c.user_id == _sessions.c.user_id,
                _memberships.c.tenant_id == _sessions.c.tenant_id,
            ),
        )
    )
    .where(_sessions.c.token_hash == bindparam("token_hash"))
)
# On PostgreSQL the same join runs inside a PL/pgSQL function (catalog
# migration c0002), which keeps its plan per server connection instead of
# planning it on every request. Same columns, same types, same rows.
_LOGIN_FUNCTION = func.tenantapp_login_lookup(bindparam("token_hash", type_=String)).table_valued(
    *(column(c.key, c.type) for c in _LOGIN_QUERY.selected_columns)
)
_LOGIN_QUERY_POSTGRESQL = select(*_LOGIN_FUNCTION.c)
# A row of either query, by name (both select the same columns in one order).
_LoginRow = namedtuple("_LoginRow", [c.key for c in _LOGIN_QUERY.selected_columns])


@dataclass(frozen=True)
class _Lifetimes:
    touch_interval: timedelta  # "last used" is written when older than this
    idle_limit: timedelta  # stored "last used" older than this: idle
    max_age: timedelta


@lru_cache(maxsize=16)
def _lifetimes_of(idle_timeout, max_age, touch_interval):
    touch = timedelta(seconds=min(touch_interval, idle_timeout / 10))
    return _Lifetimes(
        touch_interval=touch,
        idle_limit=timedelta(seconds=idle_timeout) + touch,
        max_age=timedelta(seconds=max_age),
    )


def _lifetimes(settings):
    return _lifetimes_of(
        settings.session_idle_timeout, settings.session_max_age, settings.session_touch_interval
    )


def is_expired(created_at, last_used_at, now, settings):
    """True for a session past its idle or its maximum age (the rule above)."""
    lifetimes = _lifetimes(settings)
    return now - last_used_at > lifetimes.idle_limit or now - created_at > lifetimes.max_age


def load_login(connection, token_hash, now, settings):
    """The live :class:`Login` for ``token_hash``, or None; one SELECT on ``connection``.

    None for an unknown, logged-out, idle, too old or disabled user's session.
    """
    query = _LOGIN_QUERY_POSTGRESQL if connection.dialect.name == "postgresql" else _LOGIN_QUERY
    # At most one row: token_hash is the primary key.
    rows = fetch_all(connection, query, {"token_hash": token_hash})
    if not rows:
        return None
    row = _LoginRow._make(rows[0])
    if row.disabled:
        return None
    if is_expired(row.created_at, row.last_used_at, now, settings):
        return None
    tenant = None
    if row.role is not None and row.tenant_name is not None:
        tenant = TenantAccess(
            id=row.tenant_id,
            name=row.tenant_name,
            display_name=row.tenant_display_name,
            status=row.tenant_status,
            db_url=row.tenant_db_url,
            role=row.role,
        )
    return Login(
        token_hash=token_hash,
        user_id=row.user_id,
        username=row.username,
        display_name=row.display_name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        chosen_tenant_id=row.tenant_id,
        tenant=tenant,
    )


def touch_login(login, now, settings):
    """The UPDATE that records this use of ``login``, or None when "last used"
    is more recent than the touch interval (most requests write nothing): the
    smaller of ``session_touch_interval`` and a tenth of the idle timeout."""
    if now - login.last_used_at < _lifetimes(settings).touch_interval:
        return None
    return (
        update(LoginSession)
        .where(LoginSession.token_hash == login.token_hash)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def start_login_session(db, user_id, tenant_id, now, settings):
    """Open a new session for ``user_id``; return its (unhashed) token.

    Also removes the user's sessions that have expired, so the table does
    not grow without bound.
    """
    lifetimes = _lifetimes(settings)
    db.execute(
        delete(LoginSession)
        .where(
            LoginSession.user_id == user_id,
            (LoginSession.last_used_at < now - lifetimes.idle_limit)
            | (LoginSession.created_at < now - lifetimes.max_age),
        )
        .execution_options(synchronize_session=False)
    )
    token = tokens.new_token()
    db.add(
        LoginSession(
            token_hash=tokens.token_hash(token),
            user_id=user_id,
            tenant_id=tenant_id,
            created_at=now,
            last_used_at=now,
        )
    )
    db.flush()
    return token


def end_login_session(db, token_hash):
    """Delete a session on the server: its cookie is refused from now on."""
    db.execute(
        delete(LoginSession)
        .where(LoginSession.token_hash == token_hash)
        .execution_options(synchronize_session=False)
    )


def choose_tenant(db, token_hash, tenant_id):
    """Record ``tenant_id`` as the session's chosen tenant."""
    db.execute(
        update(LoginSession)
        .where(LoginSession.token_hash == token_hash)
        .values(tenant_id=tenant_id)
        .execution_options(synchronize_session=False)
    )


_MEMBERSHIPS_QUERY = (
    select(
        Tenant.id, Tenant.name, Tenant.display_name, Tenant.status, Tenant.db_url, Membership.role
    )
    .join(Membership, Membership.tenant_id == Tenant.id)
    .where(Membership.user_id == bindparam("user_id"))
    .order_by(Tenant.name)
)


def memberships(db, user_id):
    """Every tenant ``user_id`` is a member of, as :class:`TenantAccess`, by name."""
    return [
        TenantAccess(**row._mapping) for row in db.execute(_MEMBERSHIPS_QUERY, {"user_id": user_id})
    ]


def membership(db, user_id, tenant_name):
    """The user's :class:`TenantAccess` to ``tenant_name``, or None."""
    row = db.execute(
        _MEMBERSHIPS_QUERY.where(Tenant.name == tenant_name), {"user_id": user_id}
    ).first()
    return TenantAccess(**row._mapping) if row is not None else None
