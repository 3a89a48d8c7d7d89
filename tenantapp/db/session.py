"""The request's database sessions: the whole lifecycle in one place.

A session is made when a view first touches ``request.catalog_db`` or
``request.tenant_db`` and closed by a finished callback whatever happened, so
its connection is back in the pool when the request ends. For a request that
may write (POST, PUT, PATCH, DELETE) it is joined to the request's transaction:
pyramid_tm commits it before the response leaves, or aborts it on an
exception or an error status. A GET only reads: its session joins nothing
(on PostgreSQL it runs in autocommit, see DBFactory), which spares the
transaction machinery and two round trips per database. Nothing is kept on a
thread or a module: two requests never share a session or an ORM object.
"""

import logging

import psycopg2.extensions
import zope.sqlalchemy
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tenantapp.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: SQLSTATEs of a transaction rolled back for a concurrent one (see is_conflict).
CONFLICT_CODES = frozenset({"40001", "40P01"})


def may_write(request):
    """True for a request whose sessions join its transaction (pyramid_tm's hook)."""
    return request.method not in SAFE_METHODS


def open_request_session(request, factory):
    """A Session on ``factory``'s database for this request only."""
    write = may_write(request)
    session = factory.session(write=write)
    # Close even if connecting fails below: the callback runs on every outcome.
    request.add_finished_callback(lambda request: session.close())
    if write:
        zope.sqlalchemy.register(session, transaction_manager=request.tm)
    try:
        # Connect now, so an unreachable database is a 503 here, not a 500 later.
        session.connection()
    except (DBAPIError, PoolTimeoutError) as exc:
        if isinstance(exc, DBAPIError) and (exc.connection_invalidated or not is_unavailable(exc)):
            # A pooled connection the server had dropped: the exception view
            # has the request retried on a fresh one (or answers 503).
            raise
        log.warning("database %s unavailable: %s", factory.name, _first_line(exc))
        raise DatabaseUnavailable(
            retry_after=request.registry.tenantapp_settings.retry_after
        ) from exc
    return session


def is_unavailable(exc):
    """True for an error that means "the database did not answer" (503), not a bug.

    A conflict between transactions (:func:`is_conflict`) is no outage,
    though psycopg2 raises it as an OperationalError. SQLite's "database is
    locked" is: the busy timeout ran out.
    """
    if isinstance(exc, (PoolTimeoutError, DisconnectionError)):
        return True
    return (
        isinstance(exc, DBAPIError)
        and (exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)))
        and not is_conflict(exc)
    )


def is_conflict(exc) -> bool:
    """True for a transaction PostgreSQL rolled back because it conflicted with
    a concurrent one: a serialization failure (40001) or a deadlock (40P01),
    both raised by psycopg2 as a TransactionRollbackError. Worth running again,
    and no outage."""
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "pgcode", None)
    if code is not None:
        # Not the whole class 40: 40003 (statement completion unknown) is no conflict.
        return code in CONFLICT_CODES
    return isinstance(exc.orig, psycopg2.extensions.TransactionRollbackError)


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
