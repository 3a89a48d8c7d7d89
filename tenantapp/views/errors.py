"""Exception views: every error, whoever raised it, becomes the JSON error body.

Infrastructure errors are translated here, once: the router's 404 and 405, a
database that does not answer (503 with Retry-After), a concurrent change that
won the race (412), and anything unexpected (500, logged with a request id,
never shown).
"""

import logging
import uuid

from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPException, HTTPMethodNotAllowed
from pyramid.view import exception_view_config, notfound_view_config
from pyramid_retry import mark_error_retryable
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError

from tenantapp.db.session import is_unavailable, may_write
from tenantapp.errors import (
    APIError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
)
from tenantapp.routes import allowed_methods
from tenantapp.views.contract import json_response

log = logging.getLogger(__name__)


def error_response(request, error):
    response = json_response(request, error.body(), status=error.status, headers=error.headers)
    return response


@exception_view_config(APIError)
def api_error(exc, request):
    return error_response(request, exc)


@notfound_view_config()
def not_found(request):
    # The route exists but not for this method: 405 with Allow.
    allow = allowed_methods(request)
    if allow:
        return error_response(request, MethodNotAllowed(allow))
    return error_response(request, NotFound("no such route"))


@exception_view_config(HTTPMethodNotAllowed)
def method_not_allowed(exc, request):
    return error_response(request, MethodNotAllowed(allowed_methods(request) or ["GET"]))


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


@exception_view_config(DBAPIError)
@exception_view_config(PoolTimeoutError)
@exception_view_config(DisconnectionError)
def database_error(exc, request):
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
    response = error_response(request, APIError(f"internal error (request id {request_id})"))
    response.headers["X-Request-Id"] = request_id
    return response
