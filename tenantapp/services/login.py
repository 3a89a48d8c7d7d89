"""Logging in, shared by the JSON login (:mod:`tenantapp.views.auth`) and the
login page (:mod:`tenantapp.views.pages`): one throttle, one password check,
one way to open a login session and to hand its cookie to the browser.
"""

from sqlalchemy import select

from tenantapp.auth import throttle, tokens
from tenantapp.auth.sessions import end_login_session, membership, start_login_session
from tenantapp.db.directory import is_valid_tenant_name
from tenantapp.errors import Forbidden, TenantSuspended, TooManyRequests, Unauthenticated
from tenantapp.models.catalog import User

NOT_A_MEMBER = "you are not a member of this tenant"
WRONG_CREDENTIALS = "wrong username or password"


def check_credentials(catalog, passwords, username, password, now, settings):
    """The id of the user whose ``password`` this is.

    Raises :class:`TooManyRequests` while ``username`` is throttled (even for
    the right password) and :class:`Unauthenticated` for an unknown user, a
    wrong password and a disabled user alike (same message, same cost).
    ``catalog`` is the catalog DBFactory. The attempt is counted before the
    password is checked, in a short transaction of its own that also reads
    the user (so at most ``login_max_attempts`` passwords are checked per
    window, however many attempts arrive at once); the password hash is
    computed while no connection is held; a right password takes the
    attempt back, a wrong one leaves it as the failure.
    """
    with catalog.transaction() as reservation:
        wait, attempt_id = throttle.reserve_attempt(reservation, username, now, settings)
        user = None
        if not wait:
            user = reservation.execute(
                select(User.id, User.password_hash, User.disabled).where(User.username == username)
            ).first()
    if wait:
        raise TooManyRequests(wait)
    password_ok = passwords.verify(user.password_hash if user else None, password)
    if not password_ok or user.disabled:
        raise Unauthenticated(WRONG_CREDENTIALS)
    throttle.release_attempt(catalog, attempt_id)
    return user.id


def find_access(db, user_id, tenant_name):
    """The user's usable access to ``tenant_name``: 403 ``forbidden`` when there is
    none (not a member, no such tenant, not a tenant name: one answer), 403
    ``tenant_suspended`` when the tenant is suspended."""
    access = membership(db, user_id, tenant_name) if is_valid_tenant_name(tenant_name) else None
    if access is None:
        raise Forbidden(NOT_A_MEMBER)
    if access.status == "suspended":  # a moving tenant is usable: it reads
        raise TenantSuspended()
    return access


def open_login_session(db, user_id, username, tenant_id, now, settings, replaces=None):
    """After a successful login: clear the username's failures, end the session
    the browser had (``replaces``, its token hash), and start a new one (a new
    session id on every login). Returns the new session's token."""
    throttle.clear_failures(db, username)
    if replaces is not None:
        end_login_session(db, replaces)
    return start_login_session(db, user_id, tenant_id, now, settings)


def set_session_cookie(response, settings, token):
    """Give the browser the signed cookie of session ``token``."""
    response.set_cookie(
        settings.cookie_name,
        tokens.sign_token(settings.secret, token),
        max_age=settings.session_max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )


def delete_session_cookie(response, settings):
    """Tell the browser to forget its session cookie."""
    response.delete_cookie(settings.cookie_name, path="/")
