"""The OpenAPI 3.1 document of the JSON API under ``/api``, built from the app.

One source of truth, read where it is decided:

- paths and methods: the routes and the views registered for them;
- what an operation needs before its view runs (a login, the CSRF header, a
  JSON body, query parameters, a role in the chosen tenant), and so the errors
  that can come of it: the ``Endpoint`` the view declares
  (:mod:`tenantapp.views.contract`);
- request bodies: the pydantic models the views validate with, as their own
  JSON Schema (:mod:`tenantapp.schemas`);
- error bodies and their codes: the classes of :mod:`tenantapp.errors`.

What only a view knows — which model it validates, what it answers, which
errors it raises itself — is the table :data:`OPERATIONS`. ``tests/test_openapi.py``
fails when an ``/api`` route and method has no operation here or the other way
round; the schemathesis run checks a live server against the document.
"""

import base64
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from pydantic.json_schema import GenerateJsonSchema
from pyramid.interfaces import IRoutesMapper

from tenantapp import errors, schemas
from tenantapp.db.session import SAFE_METHODS
from tenantapp.models.catalog import ROLES
from tenantapp.models.tenant import TASK_STATUSES
from tenantapp.views.project_move import MoveBody

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
MAX_ID = 2**31 - 1  # ids are 32-bit integers in both databases


def _ref(name, kind="schemas"):
    return {"$ref": f"#/components/{kind}/{name}"}


# --- operations ---------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """What the document says of one view beyond its ``Endpoint``.

    - ``response``: the success body (a schema name, or a schema); ``None`` for
      no body;
    - ``body``: the pydantic model the view validates its body with (422);
    - ``raises``: errors the view raises itself, beyond those its Endpoint,
      path, body and ``if_match`` imply;
    - ``one_object``: the answer is one object, with ``ETag`` (and ``Location``
      on 201);
    - ``if_match``: honours ``If-Match`` (412);
    - ``database``: needs a database (503 when it does not answer);
    - ``also``: other success statuses with the same body (a PUT that may
      create: 201 as well as 200).
    """

    summary: str
    tag: str
    description: str = ""
    status: int = 200
    response: object = None
    media_type: str = JSON
    body: type | None = None
    example: dict | None = None
    raises: tuple = ()
    one_object: bool = False
    if_match: bool = False
    database: bool = True
    also: tuple = ()


_PATCH = (
    "Only the fields sent change; a field left out keeps its value. `{}` changes "
    "nothing and keeps the version."
)

#: (route name, request method) -> Operation, in the document's order.
OPERATIONS = {
    ("login", "POST"): Operation(
        "Log in",
        "session",
        description=(
            "Starts a login session: a new HttpOnly `session` cookie (a new session id on every "
            "login) and, in the answer, the `csrf_token` that every unsafe request must send in "
            "`X-CSRF-Token`. A user with exactly one tenant has it chosen; `tenant` chooses one "
            "now. The body is validated (422) before the credentials are checked (401: wrong "
            "password, unknown and disabled user alike). After 5 failed attempts for a username "
            "within 15 minutes every login for it answers 429 until the window has passed."
        ),
        response="Me",
        body=schemas.LoginBody,
        example={"username": "alice", "password": "alice-demo-password"},
        raises=(
            errors.Unauthenticated,
            errors.Forbidden,
            errors.TenantSuspended,
            errors.TooManyRequests,
        ),
    ),
    ("me", "GET"): Operation(
        "The logged-in user",
        "session",
        description="The user, their tenants, the chosen tenant and the CSRF token.",
        response="Me",
    ),
    ("session_tenant", "PUT"): Operation(
        "Choose the tenant",
        "session",
        description=(
            "403 `forbidden` alike for a tenant the user is not a member of, one that does not "
            "exist and a string that is no tenant name (no enumeration)."
        ),
        response="Me",
        body=schemas.ChooseTenantBody,
        example={"tenant": "acme"},
        raises=(errors.Forbidden, errors.TenantSuspended),
    ),
    ("logout", "POST"): Operation(
        "Log out",
        "session",
        description="Deletes the login session on the server: its cookie is refused from then on.",
        status=204,
    ),
    ("members", "GET"): Operation(
        "Members of the chosen tenant",
        "tenant",
        description="Needs the `admin` role.",
        response={"type": "array", "items": _ref("Member")},
    ),
    ("member", "PUT"): Operation(
        "Add a member, or change a member's role",
        "tenant",
        description=(
            "Needs the `admin` role. 201 when the user was not a member, 200 when the role "
            "changed or stayed. 404 for a user that does not exist or is disabled. Demoting the "
            "tenant's last admin (oneself included) answers 409 `conflict` and changes nothing. "
            "The member sees the change on their very next request."
        ),
        response="Member",
        also=(201,),
        body=schemas.MemberRoleBody,
        example={"role": "editor"},
        raises=(errors.Conflict,),
    ),
    ("member", "DELETE"): Operation(
        "Remove a member",
        "tenant",
        description=(
            "Needs the `admin` role. 404 when the user is not a member; removing the tenant's "
            "last admin (oneself included) answers 409 `conflict` and changes nothing."
        ),
        status=204,
        raises=(errors.Conflict,),
    ),
    ("me_password", "PUT"): Operation(
        "Change your password",
        "account",
        description=(
            "Every other login session of the user ends (their cookies answer 401); this one "
            "stays. A wrong `current_password` answers 403 `forbidden` and counts as a failed "
            "login for throttling (429 past the limit, even with the right password). "
            "`new_password`: 12–1024 characters, different from the current one (422)."
        ),
        status=204,
        body=schemas.PasswordChangeBody,
        example={
            "current_password": "alice-demo-password",
            "new_password": "a much longer passphrase",
        },
        raises=(errors.Forbidden, errors.TooManyRequests),
    ),
    ("me_sessions", "GET"): Operation(
        "Your login sessions",
        "account",
        description=(
            "The user's live login sessions, newest first; `current` marks the one of this "
            "request. `id` is an opaque string that opens nothing."
        ),
        response={"type": "array", "items": _ref("LoginSession")},
    ),
    ("me_session", "DELETE"): Operation(
        "End one of your login sessions",
        "account",
        description=(
            "The session ends on every process; ending the current one is a logout. 404 for an "
            "id that is not one of the user's live sessions."
        ),
        status=204,
    ),
    ("projects", "GET"): Operation(
        "List projects",
        "projects",
        description="A page of the tenant's projects in id order.",
        response="ProjectPage",
    ),
    ("projects", "POST"): Operation(
        "Create a project",
        "projects",
        status=201,
        response="Project",
        body=schemas.ProjectCreate,
        example={"name": "Launch", "description": "Go live"},
        one_object=True,
    ),
    ("project", "GET"): Operation(
        "Read a project", "projects", response="Project", one_object=True
    ),
    ("project", "PUT"): Operation(
        "Replace a project",
        "projects",
        description="Every writable field.",
        response="Project",
        body=schemas.ProjectReplace,
        example={"name": "Launch", "description": "Go live on Monday"},
        one_object=True,
        if_match=True,
    ),
    ("project", "PATCH"): Operation(
        "Change a project",
        "projects",
        description=_PATCH,
        response="Project",
        body=schemas.ProjectPatch,
        example={"description": "Go live on Tuesday"},
        one_object=True,
        if_match=True,
    ),
    ("project", "DELETE"): Operation(
        "Delete a project",
        "projects",
        description="Its tasks go with it.",
        status=204,
        if_match=True,
    ),
    ("project_move", "POST"): Operation(
        "Move a project to another tenant",
        "projects",
        description=(
            "Moves the project and its tasks to `tenant`, in one request that writes to both "
            "tenants' databases, all or nothing (two-phase commit on PostgreSQL). Needs `editor` "
            "or `admin` in the chosen tenant and in the target: 403 `forbidden` alike for a "
            "target the user is not a member of, one that does not exist and a string that is "
            "no tenant name, and for `viewer` in the target; 403 `tenant_suspended` for a "
            "suspended target; 422 `fields.tenant` for the chosen tenant itself; 422 "
            "`fields.name` when the target has a project of that name (ignoring case). In the "
            "target the project and its tasks get new ids and version 1, every other field is "
            "kept; `Location` is the project's URL there (choose that tenant to read it). "
            "In the chosen tenant they are gone (404). Concurrent moves of one project: one 201, "
            "the others 404 or 412."
        ),
        status=201,
        response="ProjectMove",
        body=MoveBody,
        example={"tenant": "globex"},
        if_match=True,
    ),
    ("project_tasks", "GET"): Operation(
        "List a project's tasks",
        "tasks",
        description=(
            "The filters of `GET /api/tasks`; a `project_id` naming another project gives an "
            "empty page."
        ),
        response="TaskPage",
    ),
    ("tasks", "GET"): Operation(
        "List tasks",
        "tasks",
        description="A page of the tenant's tasks in id order; the filters combine.",
        response="TaskPage",
    ),
    ("tasks", "POST"): Operation(
        "Create a task",
        "tasks",
        status=201,
        response="Task",
        body=schemas.TaskCreate,
        example={"project_id": 1, "title": "Write the announcement", "due_date": "2026-12-01"},
        one_object=True,
    ),
    ("task", "GET"): Operation("Read a task", "tasks", response="Task", one_object=True),
    ("task", "PUT"): Operation(
        "Replace a task",
        "tasks",
        description="Every writable field; `null` for the nullable ones.",
        response="Task",
        body=schemas.TaskReplace,
        example={
            "project_id": 1,
            "title": "Write the announcement",
            "status": "in_progress",
            "assignee": "alice",
            "due_date": None,
        },
        one_object=True,
        if_match=True,
    ),
    ("task", "PATCH"): Operation(
        "Change a task",
        "tasks",
        description=_PATCH,
        response="Task",
        body=schemas.TaskPatch,
        example={"status": "done"},
        one_object=True,
        if_match=True,
    ),
    ("task", "DELETE"): Operation("Delete a task", "tasks", status=204, if_match=True),
    ("api_openapi", "GET"): Operation(
        "This document",
        "documentation",
        response={
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": {"const": OPENAPI_VERSION}},
        },
        database=False,
    ),
    ("api_docs", "GET"): Operation(
        "Interactive documentation",
        "documentation",
        description="Swagger UI over this document, from assets the app serves itself.",
        response={"type": "string"},
        media_type="text/html",
        database=False,
    ),
}

TAGS = [
    {"name": "session", "description": "Login, the current user, tenant choice, logout."},
    {"name": "projects", "description": "Projects of the chosen tenant."},
    {"name": "tasks", "description": "Tasks of the chosen tenant."},
    {"name": "tenant", "description": "The chosen tenant itself: its members (admins only)."},
    {"name": "account", "description": "Your own password and login sessions."},
    {"name": "documentation", "description": "This document and its interactive page."},
]


# --- parameters ---------------------------------------------------------------


def cursor_pattern():
    """A pattern for exactly the cursors :func:`schemas.encode_cursor` writes and
    :func:`schemas.decode_cursor` takes back: unpadded base64url of ``id:<n>``,
    ``<n>`` being ``0`` or up to 18 digits without a leading zero.

    ``id:`` is three bytes, so the digits are encoded three at a time, and in
    each group the first two characters depend only on the first digit, the
    third only on the second digit and the fourth only on the third.
    """

    def b64(text):
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def either(strings):
        return "(?:" + "|".join(strings) + ")"

    def first(digits):  # the two characters of a group's (or a tail's) first digit
        return either(b64(d + "00")[:2] for d in digits)

    all_digits, nonzero = "0123456789", "123456789"
    second = "[" + "".join(b64("0" + d + "0")[2] for d in all_digits) + "]"
    third = "[" + "".join(b64("00" + d)[3] for d in all_digits) + "]"
    group = f"(?:{first(all_digits)}{second}{third})"
    lead = first(nonzero) + second + third
    tail = either([either(b64(d) for d in all_digits), first(all_digits) + second])
    short = either(
        [b64("0"), either(b64(d) for d in nonzero), first(nonzero) + second]  # 1 or 2 digits
    )
    # 3 to 18 digits: whole groups, or whole groups and a tail of one or two.
    long = either([f"{lead}{group}{{0,5}}", f"{lead}{group}{{0,4}}{tail}"])
    return f"^{b64('id:')}{either([short, long])}$"


CURSOR_PATTERN = cursor_pattern()
NO_NUL = "^[^\\x00]*$"

QUERY_PARAMETERS = {
    "limit": {
        "description": "Items per page.",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": schemas.MAX_LIMIT,
            "default": schemas.DEFAULT_LIMIT,
        },
    },
    "after": {
        "description": "The `next` cursor of the previous page (anything else is 400).",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
    },
    "project_id": {
        "description": "Only tasks of this project.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    },
    "status": {
        "description": "Only tasks with this status.",
        "schema": {"type": "string", "enum": list(TASK_STATUSES)},
    },
    "assignee": {
        "description": "Only tasks assigned to exactly this name.",
        "schema": {"type": "string", "maxLength": 500, "pattern": NO_NUL},
    },
    "q": {
        "description": (
            "Only tasks whose title contains this text, ignoring case; `%` and `_` are plain "
            "characters."
        ),
        "schema": {"type": "string", "maxLength": 500, "pattern": NO_NUL},
    },
}

#: The query parser an Endpoint names -> the parameters it reads.
QUERY_PARSERS = {
    schemas.parse_page: ("limit", "after"),
    schemas.parse_task_filters: ("limit", "after", "project_id", "status", "assignee", "q"),
}

PATH_PARAMETERS = {
    "id": {
        "description": "The object's id in the chosen tenant (other ids answer 404).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    },
    "username": {
        "description": "A username (404 for one that does not exist).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 150, "pattern": NO_NUL},
    },
    "session_id": {
        "description": "The `id` of one of your sessions in `GET /api/me/sessions` (else 404).",
        "schema": {"type": "string", "minLength": 1},
    },
}

_ETAG = '(?:W/)?"[\\x21\\x23-\\x7e\\x80-\\xff]*"'  # RFC 9110 entity-tag
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": (
        'Apply only if the object\'s version is this ETag: `"<version>"`, `W/"<version>"` or '
        "`*` (412 otherwise, and nothing changes)."
    ),
    "schema": {
        "type": "string",
        "pattern": f"^(?:\\*|{_ETAG}(?:[ \\t]*,[ \\t]*{_ETAG})*)$",
    },
}


# --- response schemas -----------------------------------------------------------

TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "pattern": "\\+00:00$",
    "description": "ISO 8601, UTC, written with +00:00.",
}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
VERSION = {
    "type": "integer",
    "minimum": 1,
    "description": "1 at creation, one more on each change of a stored value.",
}


def _object(properties, description=None):
    schema = {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _page(item):
    return _object(
        {
            "items": {"type": "array", "items": _ref(item), "maxItems": schemas.MAX_LIMIT},
            "next": {
                "type": ["string", "null"],
                "pattern": CURSOR_PATTERN,
                "description": "`after` for the next page; null after the last one.",
            },
        },
        f"A page of {item.lower()}s in id order.",
    )


TENANT_ACCESS = _object(
    {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,39}$"},
        "display_name": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLES)},
    },
    "A tenant and the user's role in it.",
)

RESPONSE_SCHEMAS = {
    "User": _object({"id": ID, "username": {"type": "string"}, "display_name": {"type": "string"}}),
    "TenantAccess": TENANT_ACCESS,
    "Me": _object(
        {
            "user": _ref("User"),
            "tenants": {
                "type": "array",
                "items": _ref("TenantAccess"),
                "description": "Every tenant the user is a member of, suspended ones too.",
            },
            "tenant": {
                "anyOf": [_ref("TenantAccess"), {"type": "null"}],
                "description": "The chosen tenant; null until one is chosen.",
            },
            "csrf_token": {
                "type": "string",
                "description": "Send it as `X-CSRF-Token` with every unsafe request.",
            },
        },
        "The logged-in user.",
    ),
    "Member": _object(
        {
            "username": {"type": "string"},
            "display_name": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES)},
        },
        "A member of the chosen tenant.",
    ),
    "Project": _object(
        {
            "id": ID,
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": 10000},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "version": VERSION,
        },
        "A project of the chosen tenant.",
    ),
    "Task": _object(
        {
            "id": ID,
            "project_id": ID,
            "title": {"type": "string", "minLength": 1, "maxLength": 500},
            "status": {"type": "string", "enum": list(TASK_STATUSES)},
            "assignee": {"type": ["string", "null"], "maxLength": 150},
            "due_date": {"type": ["string", "null"], "format": "date"},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "version": VERSION,
        },
        "A task of the chosen tenant.",
    ),
    "LoginSession": _object(
        {
            "id": {"type": "string", "description": "Opaque; opens nothing."},
            "created_at": TIMESTAMP,
            "last_used_at": TIMESTAMP,
            "current": {"type": "boolean", "description": "The session of this request."},
        },
        "One of the user's live login sessions.",
    ),
    "ProjectMove": _object(
        {
            "tenant": _ref("TenantAccess"),
            "project": _ref("Project"),
            "tasks": {"type": "integer", "minimum": 0, "description": "How many tasks moved."},
        },
        "A project moved to another tenant: the target, the project there, its task count.",
    ),
    "ProjectPage": _page("Project"),
    "TaskPage": _page("Task"),
}

#: Field descriptions of the request bodies, by field name.
FIELD_DESCRIPTIONS = {
    "username": "The login name.",
    "password": "The password.",
    "tenant": "A tenant name the user is a member of.",
    "name": "1–200 characters after trimming, stored trimmed; unique in the tenant ignoring case.",
    "description": "Up to 10000 characters.",
    "project_id": "An existing project of the chosen tenant; an integer (`7.0` is refused).",
    "title": "1–500 characters after trimming, stored trimmed.",
    "status": "The task's status.",
    "assignee": "Up to 150 characters, or null.",
    "due_date": "`YYYY-MM-DD`, or null.",
    "role": "The member's role in the chosen tenant.",
    "current_password": "The password the user has now.",
    "new_password": "12–1024 characters, different from the current password.",
}


class _BodySchema(GenerateJsonSchema):
    """Request bodies as JSON Schema, without a title on every field."""

    def field_title_should_be_set(self, schema):
        return False


def body_schema(model, partial=False):
    """The JSON Schema of a request body model, as the model writes it.

    ``partial`` (PATCH) drops the defaults: a field left out is not set to a
    default, it keeps its value.
    """
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}", schema_generator=_BodySchema
    )
    for name, field in schema.get("properties", {}).items():
        if partial:
            field.pop("default", None)
        field.setdefault("description", FIELD_DESCRIPTIONS[name])
    return schema


# --- errors ---------------------------------------------------------------------

#: When each error code is answered (API.md, "Errors").
ERROR_MEANINGS = {
    "invalid_json": "the body is not valid JSON, or not a JSON object",
    "bad_request": "a query parameter is malformed",
    "unauthenticated": "no valid login session (none, expired, logged out, user disabled)",
    "forbidden": "logged in, but the role or membership does not allow it",
    "csrf_failed": "an unsafe method without the right `X-CSRF-Token` header",
    "tenant_required": "a tenant data URL was called before a tenant was chosen",
    "tenant_suspended": "the chosen tenant is suspended",
    "not_found": "no such route, or no such object in the chosen tenant",
    "method_not_allowed": "the route exists, the method does not (`Allow` lists the methods)",
    "precondition_failed": "`If-Match` does not match the object's current `ETag`",
    "conflict": "the change would break a rule of the tenant (leave it without an admin)",
    "payload_too_large": "body over 1 MiB",
    "unsupported_media_type": "a body that is not `application/json`",
    "validation_failed": "well-formed JSON with wrong, missing or unknown fields",
    "too_many_requests": "login throttled; `Retry-After` says for how long",
    "service_unavailable": (
        "a database is unreachable; `Retry-After` set; other tenants keep working"
    ),
    "internal_error": "a bug; logged with a request id, never shown",
}


def error_classes():
    """Every error of the contract, one class per code (the first class of a code)."""
    found, pending = {}, [errors.APIError]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return sorted(found.values(), key=lambda cls: (cls.status, cls.code))


def error_name(cls):
    """The schema name of an error: its class name (the base class is InternalError)."""
    return "InternalError" if cls is errors.APIError else cls.__name__


def error_schema(cls):
    """The body of one error code; ``fields`` only (and always) for validation_failed."""
    properties = {"code": {"const": cls.code}, "message": {"type": "string", "minLength": 1}}
    if cls.code == errors.ValidationFailed.code:
        properties["fields"] = {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string", "minLength": 1},
            "description": "A message per field (`_body` for the body as a whole).",
        }
    return _object(
        {"error": _object(properties)},
        f"{cls.status} `{cls.code}`: {ERROR_MEANINGS[cls.code]}.",
    )


RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
ERROR_HEADERS = {
    errors.TooManyRequests.code: {"Retry-After": RETRY_AFTER},
    errors.ServiceUnavailable.code: {"Retry-After": RETRY_AFTER},
    errors.MethodNotAllowed.code: {
        "Allow": {
            "description": "The methods of this path.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}


def error_response(classes):
    """The response object for errors of one status (one class or several)."""
    refs = [_ref(error_name(cls)) for cls in classes]
    response = {
        "description": "; ".join(f"`{cls.code}`: {ERROR_MEANINGS[cls.code]}" for cls in classes),
        "content": {JSON: {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}},
    }
    headers = {}
    for cls in classes:
        headers.update(ERROR_HEADERS.get(cls.code, {}))
    if headers:
        response["headers"] = headers
    return response


# --- the document ---------------------------------------------------------------

# A marker's regex may hold one level of braces, as Pyramid reads it (routes.OBJECT_ID).
_PLACEHOLDER = re.compile(r"\{(\w+)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")


def openapi_path(pattern):
    """A route pattern as an OpenAPI path: ``/api/projects/{id:\\d+}`` -> ``/api/projects/{id}``."""
    return "/" + _PLACEHOLDER.sub(r"{\1}", pattern).lstrip("/")


def view_endpoints(registry):
    """``{(route name, method): Endpoint}`` of every view registered for a route."""
    endpoints = {}
    for item in registry.introspector.get_category("views") or ():
        view = item["introspectable"]
        methods = view.get("request_methods")
        if not view.get("route_name") or not methods:
            continue
        for method in (methods,) if isinstance(methods, str) else methods:
            endpoints[(view["route_name"], method)] = view.get("api")
    return endpoints


def operation_errors(method, path, endpoint, operation):
    """The error classes an operation can answer, in the contract's order."""
    unsafe = method not in SAFE_METHODS
    found = []
    if unsafe:
        found.append(errors.PayloadTooLarge)
    if endpoint.login:
        found.append(errors.Unauthenticated)
    if endpoint.csrf and unsafe:
        found.append(errors.CSRFFailed)
    if endpoint.body or unsafe:
        found.append(errors.UnsupportedMediaType)
    if endpoint.body:
        found.append(errors.InvalidJSON)
    if endpoint.query is not None:
        found.append(errors.BadRequest)
    if endpoint.permission is not None:
        found += [errors.TenantRequired, errors.TenantSuspended, errors.Forbidden]
    if "{" in path:
        found.append(errors.NotFound)
    if operation.if_match:
        found.append(errors.PreconditionFailed)
    if operation.body is not None:
        found.append(errors.ValidationFailed)
    found += operation.raises
    if operation.database:
        found.append(errors.ServiceUnavailable)
    found.append(errors.APIError)
    return list(dict.fromkeys(found))


def _security(method, endpoint):
    if not endpoint.login:
        return []
    if endpoint.csrf and method not in SAFE_METHODS:
        return [{"session": [], "csrf": []}]
    return [{"session": []}]


def _success(operation):
    if operation.response is None:
        return {"description": "Done; no body."}
    schema = operation.response
    if isinstance(schema, str):
        schema = _ref(schema)
    response = {"description": "OK", "content": {operation.media_type: {"schema": schema}}}
    if operation.one_object:
        headers = {
            "ETag": {
                "description": 'The object\'s version, `"<version>"`, for `If-Match`.',
                "required": True,
                "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
            }
        }
        if operation.status == 201:
            headers["Location"] = {
                "description": "The URL of the new object.",
                "required": True,
                "schema": {"type": "string", "format": "uri"},
            }
        response["headers"] = headers
    return response


def _operation(route_name, method, path, endpoint, operation, components):
    operation_id = f"{method.lower()}_{route_name}"
    document = {
        "operationId": operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": _security(method, endpoint),
    }
    if operation.description:
        document["description"] = operation.description
    parameters = [
        dict(PATH_PARAMETERS[name], name=name, **{"in": "path", "required": True})
        for name in _PLACEHOLDER.findall(path)
    ]
    if endpoint.query is not None:
        parameters += [_ref(name, "parameters") for name in QUERY_PARSERS[endpoint.query]]
    if operation.if_match:
        parameters.append(IF_MATCH)
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        name = operation.body.__name__
        schema = body_schema(operation.body, partial=method == "PATCH")
        components["schemas"].update(schema.pop("$defs", {}))
        components["schemas"][name] = schema
        media = {"schema": _ref(name)}
        if operation.example is not None:
            media["example"] = operation.example
        document["requestBody"] = {"required": True, "content": {JSON: media}}
    responses = {str(operation.status): _success(operation)}
    for status in operation.also:
        responses[str(status)] = _success(operation)
    by_status = {}
    for cls in operation_errors(method, path, endpoint, operation):
        by_status.setdefault(cls.status, []).append(cls)
    for status in sorted(by_status):
        responses[str(status)] = error_response(by_status[status])
    document["responses"] = responses
    return document


DESCRIPTION = """\
The JSON API of tenantapp: log in, choose one of your tenants, and read and
change that tenant's projects and tasks.

- **Session**: `POST /api/login` sets an HttpOnly `session` cookie and answers
  a `csrf_token`; every unsafe request (POST, PUT, PATCH, DELETE) except the
  login must send it in the `X-CSRF-Token` header. On the interactive page,
  a login (or `GET /api/me`) made from the page is remembered and the header
  is sent for you.
- **Errors** are `{"error": {"code", "message", "fields"?}}`; `fields` only for
  `validation_failed`. When several apply, the first of this order wins: 404/405
  (no such route or method; a 405 carries `Allow`), 413, 401, 403 `csrf_failed`,
  415, 400, 403 `tenant_required`/`tenant_suspended`/`forbidden`, 404 for an
  object, 412, 409, 422.
- **Lists** are pages `{"items", "next"}`, walked with `?after=<next>`.
- **Objects** carry `ETag: "<version>"`; PUT, PATCH and DELETE honour
  `If-Match` (412 when stale).
- Everything under `/api` is `application/json; charset=utf-8` and
  `Cache-Control: no-store`.
"""


def build_document(registry):
    """The OpenAPI document of the app whose registry this is.

    Raises :class:`LookupError` when an operation of :data:`OPERATIONS` has no
    route or view, or a view names a query parser this module does not know.
    """
    routes = {
        route.name: route.pattern for route in registry.getUtility(IRoutesMapper).get_routes()
    }
    endpoints = view_endpoints(registry)
    components = {
        "schemas": {},
        "parameters": {
            name: dict(parameter, name=name, **{"in": "query", "required": False})
            for name, parameter in QUERY_PARAMETERS.items()
        },
        "responses": {
            "MethodNotAllowed": error_response([errors.MethodNotAllowed]),
        },
        "securitySchemes": {
            "session": {
                "type": "apiKey",
                "in": "cookie",
                "name": registry.tenantapp_settings.cookie_name,
                "description": "The login session cookie set by `POST /api/login` (HttpOnly).",
            },
            "csrf": {
                "type": "apiKey",
                "in": "header",
                "name": "X-CSRF-Token",
                "description": (
                    "The `csrf_token` of `POST /api/login` or `GET /api/me`; required on every "
                    "unsafe method except the login."
                ),
            },
        },
    }
    paths = {}
    for (route_name, method), operation in OPERATIONS.items():
        if route_name not in routes or (route_name, method) not in endpoints:
            raise LookupError(f"OpenAPI: {method} of route {route_name!r} has no view")
        endpoint = endpoints[(route_name, method)]
        if endpoint is None:
            raise LookupError(f"OpenAPI: {method} of route {route_name!r} declares no Endpoint")
        if endpoint.query is not None and endpoint.query not in QUERY_PARSERS:
            raise LookupError(f"OpenAPI: unknown query parser {endpoint.query!r}")
        path = openapi_path(routes[route_name])
        paths.setdefault(path, {})[method.lower()] = _operation(
            route_name, method, path, endpoint, operation, components
        )
    for cls in error_classes():
        components["schemas"][error_name(cls)] = error_schema(cls)
    components["schemas"].update(RESPONSE_SCHEMAS)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tenantapp API",
            "version": _package_version(),
            "description": DESCRIPTION,
        },
        "tags": TAGS,
        "paths": paths,
        "components": components,
    }


def _package_version():
    try:
        return version("tenantapp")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0"
