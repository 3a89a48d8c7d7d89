"""A user's own account: the password and the login sessions.

Shared by the API (:mod:`tenantapp.views.account`) and the Account page. A
session is shown under a public id (:func:`tenantapp.auth.tokens.session_public_id`),
an HMAC of its token hash: never the token, never the hash, so the list
opens nothing, and no column or migration is needed for it.
"""

import hmac

from sqlalchemy import delete, select, update

from tenantapp.auth import throttle, tokens

# The expiry rule of the login lookup itself, so the list shows exactly the
# sessions that still open something.
from tenantapp.auth.sessions import is_expired
from tenantapp.errors import Forbidden, NotFound, TooManyRequests, ValidationFailed
from tenantapp.models.catalog import LoginSession, User

NEW_PASSWORD_MIN = 12
NEW_PASSWORD_MAX = 1024
WRONG_PASSWORD = "the current password is wrong"
NO_SUCH_SESSION = "no such session"


def check_new_password(current_password, new_password):
    """The message of what is wrong with ``new_password``, or None."""
    if not NEW_PASSWORD_MIN <= len(new_password) <= NEW_PASSWORD_MAX:
        return f"must be {NEW_PASSWORD_MIN}–{NEW_PASSWORD_MAX} characters"
    if new_password == current_password:
        return "must differ from the current password"
    return None


def change_password(catalog, passwords, login, current_password, new_password, now, settings):
    """Replace the password of ``login``'s user; end every other session of theirs.

    ``catalog`` is the catalog DBFactory, ``passwords`` the registry's
    :class:`~tenantapp.auth.passwords.Passwords`, ``login`` the request's
    :class:`~tenantapp.auth.sessions.Login`. The current password is checked
    as a login checks it: the attempt is counted first (in a transaction of
    its own, committed before argon2 runs), a wrong password stays counted as
    a failed login of the username (403 ``forbidden``; 429 once throttled,
    even for the right password), a right one is taken back. Then
    ``new_password`` must be 12–1024 characters and differ from the current
    one (422 ``fields.new_password``). The new hash and the end of the other
    sessions are committed together, in a transaction of their own (so the
    caller must not hold a writing catalog transaction: SQLite has one writer).
    """
    with catalog.transaction() as reservation:
        wait, attempt_id = throttle.reserve_attempt(reservation, login.username, now, settings)
        password_hash = None
        if not wait:
            password_hash = reservation.execute(
                select(User.password_hash).where(User.id == login.user_id)
            ).scalar_one_or_none()
    if wait:
        raise TooManyRequests(wait)
    if not passwords.verify(password_hash, current_password):
        raise Forbidden(WRONG_PASSWORD)
    throttle.release_attempt(catalog, attempt_id)
    problem = check_new_password(current_password, new_password)
    if problem is not None:
        raise ValidationFailed({"new_password": problem})
    new_hash = passwords.hash(new_password)  # slow: no connection is held meanwhile
    with catalog.transaction() as db:
        db.execute(
            update(User)
            .where(User.id == login.user_id)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        db.execute(
            delete(LoginSession)
            .where(
                LoginSession.user_id == login.user_id,
                LoginSession.token_hash != login.token_hash,
            )
            .execution_options(synchronize_session=False)
        )
        # The right password was given, as at a successful login.
        throttle.clear_failures(db, login.username)


def _live_sessions(db, user_id, now, settings):
    """The user's sessions that still open something, newest first."""
    rows = db.execute(
        select(LoginSession.token_hash, LoginSession.created_at, LoginSession.last_used_at)
        .where(LoginSession.user_id == user_id)
        .order_by(LoginSession.created_at.desc(), LoginSession.token_hash)
    ).all()
    return [row for row in rows if not is_expired(row.created_at, row.last_used_at, now, settings)]


def list_sessions(db, user_id, current_token_hash, now, settings):
    """The user's live login sessions, newest first:
    ``[{"id", "created_at", "last_used_at", "current"}]``; ``current`` marks
    ``current_token_hash``'s. Timestamps are aware UTC datetimes (the JSON
    writes them with +00:00)."""
    return [
        {
            "id": tokens.session_public_id(settings.secret, row.token_hash),
            "created_at": row.created_at,
            "last_used_at": row.last_used_at,
            "current": row.token_hash == current_token_hash,
        }
        for row in _live_sessions(db, user_id, now, settings)
    ]


def end_session(db, user_id, public_id, secret, now, settings):
    """End the user's live session shown as ``public_id``; return its token hash
    (the caller's own: then it is a logout). NotFound for an id that is not
    one of the user's live sessions (someone else's included)."""
    if not isinstance(public_id, str) or not public_id.isascii() or len(public_id) > 100:
        raise NotFound(NO_SUCH_SESSION)
    for row in _live_sessions(db, user_id, now, settings):
        if hmac.compare_digest(tokens.session_public_id(secret, row.token_hash), public_id):
            deleted = db.execute(
                delete(LoginSession)
                .where(LoginSession.token_hash == row.token_hash)
                .execution_options(synchronize_session=False)
            )
            if deleted.rowcount == 0:  # ended meanwhile by a concurrent request
                break
            return row.token_hash
    raise NotFound(NO_SUCH_SESSION)
