"""The API contract every ``/api`` view gets, in the contract's order of errors.

A view declares what it needs with the ``api=Endpoint(...)`` view option; the
``api_contract`` view deriver then checks, in this order (API.md, "Errors"):
413 body too large, 401 no login, 403 ``csrf_failed``, 415 not JSON, 400
invalid JSON or query, 403 tenant (``tenant_required``, ``tenant_suspended``,
``forbidden`` by role). What is left for the view — 404 for an object, 412 and
422 — comes after, in that order. Routes and methods that do not exist (404,
405) are the router's, before all of this.
"""

import json
import re
from dataclasses import dataclass

import orjson
from pyramid.response import Response

from tenantapp.auth import tokens
from tenantapp.db.session import SAFE_METHODS
from tenantapp.errors import (
    BadRequest,
    CSRFFailed,
    Forbidden,
    InvalidJSON,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthenticated,
    UnsupportedMediaType,
)

MAX_BODY_BYTES = 1024 * 1024
JSON_CONTENT_TYPE = "application/json"
JSON_CONTENT_TYPE_HEADER = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Endpoint:
    """What an API view needs before it runs.

    - ``login``: a live login session (401 otherwise);
    - ``csrf``: the X-CSRF-Token header on unsafe methods;
    - ``body``: a JSON object body, parsed into ``request.json_payload``;
    - ``query``: a callable parsing ``request.GET`` into ``request.query``
      (raising :class:`~tenantapp.errors.BadRequest`);
    - ``permission``: ``read``, ``write`` or ``admin`` in the chosen tenant.
    """

    login: bool = True
    csrf: bool = True
    body: bool = False
    query: object = None
    permission: str | None = None


def json_response(request, body, status=200, headers=None):
    """A JSON response; ``body`` is serialized with orjson (UTC datetimes as +00:00)."""
    if body is None:
        response = Response(status=status, headerlist=[])
    else:
        response = Response(
            body=orjson.dumps(body),
            status=status,
            headerlist=[("Content-Type", JSON_CONTENT_TYPE_HEADER)],
        )
    if headers:
        response.headers.update(headers)
    return response


def declared_length(request):
    """The body length the client declared (0 when absent or not a number)."""
    try:
        return int(request.environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _read_body(request):
    """The body, read at most one byte beyond the limit."""
    if declared_length(request) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    if request.is_body_seekable:
        # pyramid_retry made it seekable: a retried request reads it again.
        stream = request.body_file_raw
        stream.seek(0)
    else:
        stream = request.body_file
    body = stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    return body


def _check_json_media_type(request):
    media_type = (request.content_type or "").lower()
    charset = (request.charset or "utf-8").lower() if request.content_type else "utf-8"
    if media_type != JSON_CONTENT_TYPE or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType()


# The tokens that matter for finding object keys: brackets, commas, strings.
_JSON_TOKENS = re.compile(r'[{}\[\],]|"(?:[^"\\]|\\.)*"')


def has_duplicate_keys(text):
    """True when an object in ``text`` (already known to be valid JSON)
    repeats a key. Iterative, so any nesting depth orjson accepts is fine."""
    stack = []  # one entry per open container: a set of keys, or None for an array
    expect_key = False
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token == "{":
            stack.append(set())
            expect_key = True
        elif token == "[":
            stack.append(None)
            expect_key = False
        elif token in "}]":
            stack.pop()
            expect_key = False
        elif token == ",":
            expect_key = stack[-1] is not None
        elif expect_key:
            key = json.loads(token)  # "\u0061" and "a" are the same key
            if key in stack[-1]:
                return True
            stack[-1].add(key)
            expect_key = False
    return False


def parse_json_object(raw):
    """The JSON object in ``raw`` bytes; 400 ``invalid_json`` otherwise.

    orjson refuses NaN and Infinity, invalid UTF-8, lone surrogates, numbers
    out of the double range (1e400) and nesting deeper than 1024: none of that
    is JSON here. (An integer beyond 64 bits is read as a float, which the
    schema then refuses with 422.) A repeated key is refused too: a proxy
    that keeps the first value must not see another body than the one stored.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJSON("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidJSON("the body must be a JSON object")
    # orjson keeps the last of repeated keys and cannot be told otherwise.
    if has_duplicate_keys(raw.decode("utf-8")):
        raise InvalidJSON("the body repeats a key")
    return value


def api_contract(view, info):
    endpoint = info.options.get("api")
    if endpoint is None:
        return view

    def checked_view(context, request):
        # 413: decided on the declared length before anything is read.
        if declared_length(request) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        # 401
        if endpoint.login and request.login is None:
            raise Unauthenticated()
        # 403 csrf_failed
        if endpoint.csrf and request.method not in SAFE_METHODS:
            presented = request.headers.get("X-CSRF-Token", "")
            secret = request.registry.tenantapp_settings.secret
            if request.login is None or not tokens.csrf_matches(
                secret, request.login.token_hash, presented
            ):
                raise CSRFFailed()
        # 415, 400
        if endpoint.body:
            raw = _read_body(request)
            _check_json_media_type(request)
            request.json_payload = parse_json_object(raw)
        elif declared_length(request) > 0 and request.method not in SAFE_METHODS:
            # A body where none is expected must still be JSON if present.
            _read_body(request)
            _check_json_media_type(request)
        if endpoint.query is not None:
            try:
                params = request.GET
            except UnicodeDecodeError:
                raise BadRequest("the query string is not valid UTF-8") from None
            request.query = endpoint.query(params)
        # 403 tenant_required / tenant_suspended / forbidden
        if endpoint.permission is not None:
            request.tenant  # noqa: B018 (raises when no usable tenant)
            if not request.has_permission(endpoint.permission):
                raise Forbidden(f"your role does not allow this ({endpoint.permission})")
        return view(context, request)

    return checked_view


api_contract.options = ("api",)


def includeme(config):
    config.add_view_deriver(api_contract)


MAX_OBJECT_ID = 2**31 - 1  # ids are 32-bit integers in both databases

# An id as the API writes it: ASCII digits, no sign, no leading zero.
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,9}")


def object_id(request):
    """The ``{id}`` of the URL; 404 for one that names no object.

    Only the spelling the API itself writes names an object: ``/api/tasks/007``
    is not task 7 (one object, one URL). Whatever the route's pattern let
    through, nothing but ASCII digits reaches int() (which would read "١" and
    refuses more than 4300 digits) or the database (32-bit ids).
    """
    raw = request.matchdict["id"]
    if not _CANONICAL_ID.fullmatch(raw):
        raise NotFound()
    value = int(raw)
    if value > MAX_OBJECT_ID:
        raise NotFound()
    return value


def check_if_match(request, version):
    """412 when ``If-Match`` is sent and names neither ``*`` nor ``version``."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    wanted = f'"{version}"'
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return
    raise PreconditionFailed()


def object_response(request, body, status=200, location=None):
    """One object, with its ``ETag`` (and ``Location`` after a create)."""
    headers = {"ETag": f'"{body["version"]}"'}
    if location is not None:
        headers["Location"] = location
    return json_response(request, body, status=status, headers=headers)
