"""Request validation: JSON bodies (pydantic) and query parameters.

Bodies are parsed by orjson first (so NaN, Infinity and broken UTF-8 are 400
``invalid_json``), then validated here: unknown fields, wrong types, ``null``
where not allowed, U+0000 and read-only fields are 422 ``validation_failed``
with a message per field.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from tenantapp.errors import BadRequest, ValidationFailed
from tenantapp.models.tenant import TASK_STATUSES

READ_ONLY_FIELDS = frozenset({"id", "version", "created_at", "updated_at"})


def _no_nul(value):
    if "\x00" in value:
        raise ValueError("must not contain U+0000")
    return value


def _iso_date(value):
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real calendar date (YYYY-MM-DD)") from None


# The characters ``strip_whitespace`` trims (pydantic-core: Rust's ``str::trim``,
# the Unicode White_Space property), written out so that a JSON Schema pattern
# means the same in every regex dialect (``\\s`` does not).
WHITESPACE_CLASS = (
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)


@dataclass(frozen=True)
class _TextJsonSchema:
    """How a text field is documented in the JSON Schema (OpenAPI): exactly what
    its validators accept, U+0000 and trimming included. Documentation only:
    pydantic calls it when it writes a JSON Schema, never when it validates."""

    min_length: int
    max_length: int
    strip: bool

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        if not self.strip:
            schema["pattern"] = "^[^\\x00]*$"
            return schema
        # The length limits apply after trimming: say so with a pattern (any
        # whitespace around, then min..max characters that start and end with
        # something else), not with minLength/maxLength on the raw string.
        schema.pop("minLength", None)
        schema.pop("maxLength", None)
        space, other = f"[{WHITESPACE_CLASS}]", f"[^{WHITESPACE_CLASS}\\x00]"
        if self.max_length == 1:
            core = other
        elif self.min_length <= 1:
            core = f"{other}(?:[^\\x00]{{0,{self.max_length - 2}}}{other})?"
        else:
            core = f"{other}[^\\x00]{{{self.min_length - 2},{self.max_length - 2}}}{other}"
        if self.min_length == 0:
            core = f"(?:{core})?"
        schema["pattern"] = f"^{space}*{core}{space}*$"
        return schema


def _text(min_length, max_length, strip):
    return Annotated[
        StrictStr,
        StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length),
        AfterValidator(_no_nul),
        _TextJsonSchema(min_length, max_length, strip),
    ]


ProjectName = _text(1, 200, strip=True)
Description = _text(0, 10000, strip=False)
TaskTitle = _text(1, 500, strip=True)
Assignee = _text(0, 150, strip=False)
TaskStatus = Literal["open", "in_progress", "done"]
DueDate = Annotated[date, BeforeValidator(_iso_date)]
Username = _text(1, 150, strip=False)
# Ids are 32-bit in both databases; a larger one is no id of ours.
ObjectId = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
Password = _text(1, 1024, strip=False)


class Body(BaseModel):
    """A JSON request body: unknown fields and loose types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- auth ----------------------------------------------------------------------


class LoginBody(Body):
    """``POST /api/login``: a user with exactly one tenant has it chosen."""

    username: Username
    password: Password
    tenant: StrictStr | None = None


class ChooseTenantBody(Body):
    """``PUT /api/session/tenant``: the tenant to work in."""

    tenant: StrictStr


# --- members and account -------------------------------------------------------


class MemberRoleBody(Body):
    """``PUT /api/members/{username}``: the member's role in the chosen tenant."""

    role: Literal["viewer", "editor", "admin"]


# The length rule of a new password (12–1024, and not the current one) is the
# account service's, checked after the current password (API.md's order: 403
# before 422); the schema refuses what is no password at all. The JSON Schema
# states the whole rule.
NewPassword = Annotated[
    StrictStr,
    AfterValidator(_no_nul),
    WithJsonSchema(
        {"type": "string", "minLength": 12, "maxLength": 1024, "pattern": "^[^\\x00]*$"}
    ),
]


class PasswordChangeBody(Body):
    """``PUT /api/me/password``."""

    current_password: Password
    new_password: NewPassword


# --- projects ------------------------------------------------------------------


class ProjectCreate(Body):
    """A new project."""

    name: ProjectName
    description: Description = ""


class ProjectReplace(Body):
    """Every writable field of a project (``PUT``)."""

    name: ProjectName
    description: Description


class ProjectPatch(Body):
    """Only the fields to change (``PATCH``); none of them may be null."""

    # Defaults are not validated: a field left out stays out (model_fields_set),
    # a field sent as null is checked against its type and refused.
    name: ProjectName = None
    description: Description = None


# --- tasks ---------------------------------------------------------------------


class TaskCreate(Body):
    """A new task in an existing project of the tenant."""

    project_id: ObjectId
    title: TaskTitle
    status: TaskStatus = "open"
    assignee: Assignee | None = None
    due_date: DueDate | None = None


class TaskReplace(Body):
    """Every writable field of a task (``PUT``); null for the nullable ones."""

    project_id: ObjectId
    title: TaskTitle
    status: TaskStatus
    assignee: Assignee | None
    due_date: DueDate | None


class TaskPatch(Body):
    """Only the fields to change (``PATCH``); null only where a task may hold it."""

    project_id: ObjectId = None
    title: TaskTitle = None
    status: TaskStatus = None
    assignee: Assignee | None = None
    due_date: DueDate | None = None


def _field_message(error):
    kind = error["type"]
    name = str(error["loc"][0]) if error["loc"] else ""
    if kind == "extra_forbidden":
        return "is read-only" if name in READ_ONLY_FIELDS else "unknown field"
    if kind == "missing":
        return "is required"
    if kind in ("string_too_short",) and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def validate_body(model, payload):
    """``payload`` (a dict) validated by ``model``; 422 with a message per field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        fields = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "_body"
            fields.setdefault(name, _field_message(error))
    # Raised outside the except block, so that it does not keep pydantic's
    # error as its __context__: that error holds a validator's ValueError, whose
    # traceback holds the view's frames and so the request, which holds this
    # exception. Python's collector cannot break that cycle (pydantic-core's
    # error is opaque to it): each such 422 kept its request in memory.
    raise ValidationFailed(fields)


def sent_fields(body):
    """The fields a PATCH body actually carried, with their values."""
    return {name: getattr(body, name) for name in body.model_fields_set}


# --- query parameters ----------------------------------------------------------

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(last_id):
    """The opaque ``next`` cursor after the row with id ``last_id``."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor):
    """The id in a cursor made by :func:`encode_cursor`; 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("after: not a cursor from a previous page") from None
    match = re.fullmatch(r"id:(0|[1-9]\d{0,17})", raw)
    if match is None or encode_cursor(int(match.group(1))) != cursor:
        raise BadRequest("after: not a cursor from a previous page")
    return int(match.group(1))


def _positive_int(params, name):
    raw = params.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[1-9]\d{0,9}", raw) or int(raw) > 2**31 - 1:
        raise BadRequest(f"{name}: must be a positive integer")
    return int(raw)


def parse_page(params):
    """``limit`` and ``after`` of a list request, as ``{"limit", "after_id"}``."""
    limit = DEFAULT_LIMIT
    raw_limit = params.get("limit")
    if raw_limit is not None:
        if not re.fullmatch(r"\d{1,4}", raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
    after = params.get("after")
    return {"limit": limit, "after_id": decode_cursor(after) if after is not None else 0}


def parse_task_filters(params):
    """Page parameters plus the task filters ``project_id``, ``status``, ``assignee``, ``q``."""
    query = parse_page(params)
    query["project_id"] = _positive_int(params, "project_id")
    status = params.get("status")
    if status is not None and status not in TASK_STATUSES:
        raise BadRequest(f"status: must be one of {', '.join(TASK_STATUSES)}")
    query["status"] = status
    for name in ("assignee", "q"):
        value = params.get(name)
        if value is not None and ("\x00" in value or len(value) > 500):
            raise BadRequest(f"{name}: must be at most 500 characters, without U+0000")
        query[name] = value
    return query
