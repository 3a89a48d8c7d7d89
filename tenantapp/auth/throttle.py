"""Login throttling, shared by every process through the catalog.

After ``login_max_attempts`` failures for one username (known or not) within
``login_window`` seconds, every login for it is refused with 429 until the
oldest of those failures leaves the window.

The limit holds however many attempts arrive at once: an attempt is counted
*before* its password is checked (:func:`reserve_attempt`), in a short
transaction of its own that is serialized per username, and committed before
the slow argon2 check starts. A wrong password leaves that row as its failure
(the failed login's request is rolled back, its count must stay); a right one
takes it back (:func:`release_attempt`), and a successful login then clears
the count.
"""

import hashlib
from datetime import timedelta

from sqlalchemy import delete, func, select

from tenantapp.models.catalog import LoginFailure

# Usernames are compared as typed, but bounded: a megabyte of name is not stored.
_MAX_USERNAME = 150


def _key(username):
    return username[:_MAX_USERNAME]


def retry_after(db, username, now, settings):
    """Seconds until ``username`` may try again, or 0 when not throttled."""
    window_start = now - timedelta(seconds=settings.login_window)
    times = (
        db.execute(
            select(LoginFailure.attempted_at)
            .where(
                LoginFailure.username == _key(username), LoginFailure.attempted_at > window_start
            )
            .order_by(LoginFailure.attempted_at.desc())
            .limit(settings.login_max_attempts)
        )
        .scalars()
        .all()
    )
    if len(times) < settings.login_max_attempts:
        return 0
    # Throttled until the max-th most recent failure leaves the window.
    until = times[-1] + timedelta(seconds=settings.login_window)
    return max(1, int((until - now).total_seconds() + 0.999))


# The first key of the two-int advisory locks taken here ("tapp"), so that
# they cannot collide with another user of advisory locks on the catalog.
_ADVISORY_LOCK_CLASS = 0x74617070


def _advisory_lock_key(username):
    # The (class, key) pair of ``username``'s PostgreSQL advisory lock.
    digest = hashlib.sha256(_key(username).encode("utf-8")).digest()
    return _ADVISORY_LOCK_CLASS, int.from_bytes(digest[:4], "big", signed=True)


def reserve_attempt(db, username, now, settings):
    """Count one login attempt for ``username`` before its password is checked.

    ``db`` is a writing transaction of its own, committed by the caller before
    the check. Returns ``(retry_after, attempt_id)``: when throttled, the
    seconds to wait and None (nothing is stored: a refused attempt does not
    extend the lockout); otherwise 0 and the id of the stored attempt.

    Attempts for one username are serialized from the count to the commit, so
    two of them never both see room for one more: on PostgreSQL by a
    transaction-level advisory lock on the username; on SQLite a writing
    transaction starts with BEGIN IMMEDIATE and holds the only write lock.
    """
    if db.get_bind().dialect.name == "postgresql":
        db.execute(select(func.pg_advisory_xact_lock(*_advisory_lock_key(username))))
    wait = retry_after(db, username, now, settings)
    if wait:
        return wait, None
    attempt = LoginFailure(username=_key(username), attempted_at=now)
    db.add(attempt)
    # Keep the table small: what left the window counts no more.
    db.execute(
        delete(LoginFailure)
        .where(
            LoginFailure.username == _key(username),
            LoginFailure.attempted_at <= now - timedelta(seconds=settings.login_window),
        )
        .execution_options(synchronize_session=False)
    )
    db.flush()
    return 0, attempt.id


def release_attempt(catalog, attempt_id):
    """The password was right: the attempt reserved as ``attempt_id`` is no
    failure. Committed at once, in its own transaction (``catalog`` is the
    catalog DBFactory), whatever becomes of the login afterwards."""
    with catalog.transaction() as db:
        db.execute(
            delete(LoginFailure)
            .where(LoginFailure.id == attempt_id)
            .execution_options(synchronize_session=False)
        )


def clear_failures(db, username):
    """A successful login clears the count."""
    db.execute(
        delete(LoginFailure)
        .where(LoginFailure.username == _key(username))
        .execution_options(synchronize_session=False)
    )


def failure_count(db, username):
    """How many failures are stored for ``username`` (for the CLI and tests)."""
    return db.execute(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.username == _key(username))
    ).scalar_one()
