"""Exception views: every error, whoever raised it, becomes one error answer.

Infrastructure errors are translated here, once: the router's 404 and 405, a
database that does not answer (503 with Retry-After), a transaction that
conflicted with a concurrent one (retried, then 503 with Retry-After), a
concurrent change that won the race (412), and anything unexpected (500,
logged with a request id, never shown).

The path decides the form, never ``Accept``: under ``/api`` and on
``/healthz`` and ``/readyz`` (what programs call) the JSON error body of the
contract; everywhere else (the pages, the static files, a mistyped URL: what a
person reads) the HTML error page, with the same status and headers.
"""

import logging
import uuid

from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPException, HTTPMethodNotAllowed
from pyramid.view import exception_view_config, notfound_view_config
from pyramid_retry import is_last_attempt, mark_error_retryable
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError

from tenantapp.db.relocation import is_moved_error
from tenantapp.db.session import is_conflict, is_unavailable, may_write
from tenantapp.errors import (
    APIError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    TenantMoving,
    TransactionConflict,
)
from tenantapp.routes import allowed_methods
from tenantapp.views.contract import json_response
from tenantapp.views.pages import error_page

log = logging.getLogger(__name__)

#: Outside /api, the paths that programs call: their errors stay JSON.
MACHINE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def wants_json(request):
    """True when an error is answered with the JSON body rather than a page:
    ``/api...`` (the prefix the security headers use too), ``/healthz`` and
    ``/readyz``. The raw path decides (it may not be UTF-8); ``Accept`` does not."""
    path = request.environ.get("PATH_INFO", "")
    return path.startswith("/api") or path in MACHINE_PATHS


def error_response(request, error, page_message=None):
    """``error`` as the JSON error body, or as the HTML error page (with
    ``page_message`` when a person should read other words than a program)."""
    if wants_json(request):
        return json_response(request, error.body(), status=error.status, headers=error.headers)
    return error_page(request, error.status, page_message or error.message, error.headers)


@exception_view_config(APIError)
def api_error(exc, request):
    return error_response(request, exc)


@notfound_view_config()
def not_found(request):
    # The route exists but not for this method: 405 with Allow.
    allow = allowed_methods(request)
    if allow:
        return method_not_allowed(None, request)
    return error_response(
        request, NotFound("no such route"), page_message="there is no page at this address"
    )


@exception_view_config(HTTPMethodNotAllowed)
def method_not_allowed(exc, request):
    return error_response(
        request,
        MethodNotAllowed(allowed_methods(request) or ["GET"]),
        page_message="this address does not take this kind of request",
    )


@exception_view_config(HTTPException)
def http_exception(exc, request):
    # Anything else Pyramid raises by status (rare: 400 for a bad URL encoding).
    error = APIError(exc.title)
    error.status = exc.code
    error.code = {400: "bad_request", 403: "forbidden", 404: "not_found"}.get(
        exc.code, "internal_error" if exc.code >= 500 else "bad_request"
    )
    return error_response(request, error)


@exception_view_config(URLDecodeError)
def undecodable_url(exc, request):
    return error_response(request, BadRequest("the URL is not valid UTF-8"))


@exception_view_config(StaleDataError)
def stale_data(exc, request):
    # The row changed between our read and our write, even after the retries.
    # (Writes lock the row they read, so this is rare.) With If-Match the
    # client's copy is out of date: 412. Without, the write may be tried again.
    if "If-Match" in request.headers:
        return error_response(
            request,
            PreconditionFailed("the object was changed by someone else; read it again"),
        )
    return error_response(
        request,
        ServiceUnavailable(
            "the object is being changed by others; try again",
            retry_after=request.registry.tenantapp_settings.retry_after,
        ),
    )


def _died_before_commit(exc, request):
    # A read has nothing to commit. For a write, pyramid_tm clears tm.active
    # before it commits: a disconnect during COMMIT might have committed, and
    # is not retried.
    return (
        isinstance(exc, DBAPIError)
        and exc.connection_invalidated
        and (not may_write(request) or bool(request.environ.get("tm.active")))
    )


def _conflict(exc, request):
    """A deadlock or serialization failure: retried while attempts are left,
    then a 503 that says what happened (it is no outage)."""
    kind = "deadlock" if getattr(exc.orig, "pgcode", None) == "40P01" else "serialization failure"
    attempt = request.environ.get("retry.attempt", 0) + 1
    attempts = request.environ.get("retry.attempts", 1)
    # PostgreSQL has rolled the transaction back, so running the request again
    # is safe, unless this happened while committing: another database of the
    # request may have committed already.
    before_commit = not may_write(request) or bool(request.environ.get("tm.active"))
    if before_commit:
        # Marked here: pyramid_tm's own marking (zope.sqlalchemy knows
        # psycopg2's TransactionRollbackError) never runs for a response
        # rendered by this view, as its commit veto comes first.
        mark_error_retryable(exc)
    if before_commit and not is_last_attempt(request):
        log.info(
            "%s during %s %s (attempt %d of %d): conflicted with a concurrent "
            "transaction, retrying",
            kind,
            request.method,
            request.path,
            attempt,
            attempts,
        )
    else:
        log.warning(
            "%s during %s %s (attempt %d of %d%s): conflicted with a concurrent "
            "transaction, answered 503",
            kind,
            request.method,
            request.path,
            attempt,
            attempts,
            "" if before_commit else ", at commit: not retried",
        )
    return error_response(
        request, TransactionConflict(retry_after=request.registry.tenantapp_settings.retry_after)
    )


def _moved(exc, request):
    """A write that reached the database its tenant moved away from (it read
    the old URL just before the catalog changed): nothing was written, and
    running the request again finds the new database."""
    before_commit = bool(request.environ.get("tm.active"))
    if before_commit:
        mark_error_retryable(exc)
    log.info(
        "%s %s reached the old database of a moved tenant (attempt %d)%s",
        request.method,
        request.path,
        request.environ.get("retry.attempt", 0) + 1,
        ", retrying" if before_commit and not is_last_attempt(request) else "",
    )
    return error_response(
        request, TenantMoving(retry_after=request.registry.tenantapp_settings.retry_after)
    )


@exception_view_config(DBAPIError)
@exception_view_config(PoolTimeoutError)
@exception_view_config(DisconnectionError)
def database_error(exc, request):
    if is_conflict(exc):
        return _conflict(exc, request)
    if is_moved_error(exc):
        return _moved(exc, request)
    if is_unavailable(exc):
        if _died_before_commit(exc, request):
            # The server dropped this connection (a restart, a terminated
            # backend) before anything was committed: SQLAlchemy has already
            # invalidated the pool, and pyramid_retry runs the request again
            # on a fresh connection. The answer below is only used when this
            # was the last attempt.
            mark_error_retryable(exc)
        log.warning(
            "database unavailable during %s %s: %s",
            request.method,
            request.path,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return error_response(
            request, ServiceUnavailable(retry_after=request.registry.tenantapp_settings.retry_after)
        )
    return internal_error(exc, request)


@exception_view_config(Exception)
def internal_error(exc, request):
    request_id = uuid.uuid4().hex
    log.error(
        "internal error %s during %s %s", request_id, request.method, request.path, exc_info=exc
    )
    response = error_response(
        request,
        APIError(f"internal error (request id {request_id})"),
        page_message=f"something went wrong on our side; it has been logged "
        f"(request id {request_id})",
    )
    response.headers["X-Request-Id"] = request_id
    return response
