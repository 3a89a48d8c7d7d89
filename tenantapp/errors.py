"""The project's own errors, one per code of the JSON error contract.

Views and services raise these; infrastructure errors (the router's 404, a
database that does not answer) are translated into them once, at the edge, by
the exception views in :mod:`tenantapp.views.errors`.
"""


class APIError(Exception):
    """An error answer: HTTP status, stable code, message, optional fields."""

    status = 500
    code = "internal_error"
    message = "internal error"

    def __init__(self, message=None, *, fields=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.fields = fields
        self.headers = dict(headers or {})

    def body(self):
        error = {"code": self.code, "message": self.message}
        if self.fields is not None:
            error["fields"] = self.fields
        return {"error": error}


class InvalidJSON(APIError):
    status, code, message = 400, "invalid_json", "the body is not a JSON object"


class BadRequest(APIError):
    status, code, message = 400, "bad_request", "a query parameter is malformed"


class Unauthenticated(APIError):
    status, code, message = 401, "unauthenticated", "log in first"


class Forbidden(APIError):
    status, code, message = 403, "forbidden", "not allowed"


class CSRFFailed(APIError):
    status, code, message = 403, "csrf_failed", "missing or wrong X-CSRF-Token header"


class TenantRequired(APIError):
    status, code, message = 403, "tenant_required", "choose a tenant first"


class TenantSuspended(APIError):
    status, code, message = 403, "tenant_suspended", "this tenant is suspended"


class NotFound(APIError):
    status, code, message = 404, "not_found", "not found"


class MethodNotAllowed(APIError):
    status, code, message = 405, "method_not_allowed", "method not allowed"

    def __init__(self, allow, message=None):
        super().__init__(message, headers={"Allow": ", ".join(allow)})


class PreconditionFailed(APIError):
    status, code = 412, "precondition_failed"
    message = "If-Match does not match the current version"


class PayloadTooLarge(APIError):
    status, code, message = 413, "payload_too_large", "the body is larger than 1 MiB"


class UnsupportedMediaType(APIError):
    status, code, message = 415, "unsupported_media_type", "send application/json"


class Conflict(APIError):
    status, code = 409, "conflict"
    message = "the change would break a rule of the tenant"


class ValidationFailed(APIError):
    status, code, message = 422, "validation_failed", "the body is not valid"

    def __init__(self, fields, message=None):
        super().__init__(message, fields=fields)


class TooManyRequests(APIError):
    status, code, message = 429, "too_many_requests", "too many failed logins; try later"

    def __init__(self, retry_after, message=None):
        super().__init__(message, headers={"Retry-After": str(int(retry_after))})


class ServiceUnavailable(APIError):
    status, code = 503, "service_unavailable"
    message = "a database is not available; try again shortly"

    def __init__(self, message=None, retry_after=5):
        super().__init__(message, headers={"Retry-After": str(int(retry_after))})


class TenantMoving(ServiceUnavailable):
    """A write to a tenant whose database ``tenant move`` is copying."""

    message = (
        "this tenant is moving to another database: it can be read but not changed; "
        "try again shortly"
    )


class DatabaseUnavailable(ServiceUnavailable):
    """A database did not answer (connect failed, pool or budget timed out)."""


class TransactionConflict(ServiceUnavailable):
    """The transaction conflicted with a concurrent one (a deadlock, a
    serialization failure) on every attempt: nothing of it was written."""

    message = "the change conflicted with a concurrent change; try again"
