"""Login throttling, shared by every process through the catalog.

After ``login_max_attempts`` failures for one username (known or not) within
``login_window`` seconds, every login for it is refused with 429 until the
oldest of those failures leaves the window. Failures are written in their own
transaction: the failed login's request is rolled back, its count must stay.
"""

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


def record_failure(catalog, username, now, settings):
    """Count one failed login, committed at once in its own transaction."""
    with catalog.transaction() as db:
        db.add(LoginFailure(username=_key(username), attempted_at=now))
        # Keep the table small: what left the window counts no more.
        db.execute(
            delete(LoginFailure)
            .where(
                LoginFailure.username == _key(username),
                LoginFailure.attempted_at <= now - timedelta(seconds=settings.login_window),
            )
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
