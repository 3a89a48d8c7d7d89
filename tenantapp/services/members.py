"""A tenant's members, shared by the API (:mod:`tenantapp.views.members`), the
pages and the admin command line (``user grant`` / ``user revoke``), so the
rule that a tenant keeps an admin holds for all of them.

Plain functions on a catalog Session; a change needs a writing one (it joins
the caller's transaction, which commits it). A change takes effect on the
member's very next request on every process: the login lookup reads the
membership on every request.

The last-admin rule under concurrency: every change first locks the tenant's
row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite a writing transaction
starts with BEGIN IMMEDIATE and holds the only write lock), so two admins
demoting each other at the same moment are serialized, and the second one
counts the admins the first one left.
"""

from dataclasses import dataclass

from sqlalchemy import func, select

from tenantapp.errors import Conflict, NotFound
from tenantapp.models.catalog import ROLES, Membership, Tenant, User

LAST_ADMIN = "that would leave the tenant without an admin"
NO_SUCH_USER = "no such user"
NOT_A_MEMBER = "not a member of this tenant"

# users.username is String(150); a longer name, an empty one or one holding
# U+0000 (which PostgreSQL cannot even compare) names nobody.
_MAX_USERNAME = 150


@dataclass(frozen=True)
class Member:
    """A member of a tenant, as the API shows it."""

    username: str
    display_name: str
    role: str

    def as_json(self):
        return {"username": self.username, "display_name": self.display_name, "role": self.role}


def list_members(db, tenant_id):
    """Every member of the tenant, in username order."""
    rows = db.execute(
        select(User.username, User.display_name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id)
        .order_by(User.username)
    ).all()
    return [Member(row.username, row.display_name, row.role) for row in rows]


def could_exist(username):
    """False for a string that no stored username can equal (no query needed)."""
    return (
        isinstance(username, str) and 0 < len(username) <= _MAX_USERNAME and "\x00" not in username
    )


def find_user(db, username):
    """The :class:`User` called ``username``, disabled or not; NotFound otherwise."""
    user = None
    if could_exist(username):
        user = db.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound(NO_SUCH_USER)
    return user


def _lock_tenant(db, tenant_id):
    # Serializes every membership change of the tenant until the commit.
    # SQLite ignores FOR UPDATE; its writing transaction already is exclusive.
    locked = db.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    if locked.first() is None:
        raise NotFound("no such tenant")


def _refuse_last_admin(db, tenant_id, user_id):
    """Conflict unless another admin (an enabled user) stays in the tenant."""
    others = db.execute(
        select(func.count())
        .select_from(Membership)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.tenant_id == tenant_id,
            Membership.role == "admin",
            Membership.user_id != user_id,
            User.disabled.is_(False),
        )
    ).scalar_one()
    if others == 0:
        raise Conflict(LAST_ADMIN)


def set_role(db, tenant_id, username, role, *, force=False):
    """Make ``username`` a member of the tenant with ``role``, or change their role.

    Returns ``(member, created)``; ``created`` is True when the user was not a
    member. NotFound for a user that does not exist or is disabled; Conflict
    when it would demote the tenant's last admin (oneself included), unless
    ``force``; ValueError for a role outside :data:`ROLES` (the caller
    validates it first).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    _lock_tenant(db, tenant_id)
    user = find_user(db, username)
    if user.disabled:
        raise NotFound(NO_SUCH_USER)
    membership = db.get(Membership, (user.id, tenant_id))
    created = membership is None
    if created:
        db.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role))
    elif membership.role != role:
        if membership.role == "admin" and not force:
            _refuse_last_admin(db, tenant_id, user.id)
        membership.role = role
    db.flush()
    return Member(user.username, user.display_name, role), created


def remove_member(db, tenant_id, username, *, force=False):
    """End ``username``'s membership of the tenant.

    NotFound when they are not a member (or do not exist); Conflict when they
    are its last admin, unless ``force``.
    """
    _lock_tenant(db, tenant_id)
    user = None
    if could_exist(username):
        user = db.execute(select(User).where(User.username == username)).scalar_one_or_none()
    membership = db.get(Membership, (user.id, tenant_id)) if user is not None else None
    if membership is None:
        raise NotFound(NOT_A_MEMBER)
    if membership.role == "admin" and not force:
        _refuse_last_admin(db, tenant_id, user.id)
    db.delete(membership)
    db.flush()
