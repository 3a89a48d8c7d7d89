"""The JSON error contract (API.md, "Errors") through the whole app.

Every error is ``{"error": {"code", "message"}}`` (plus ``fields`` for
``validation_failed``), as JSON, never a traceback or SQL; when several errors
apply, the first of the contract's order wins.
"""

import io
import logging
import os
import time
import uuid

import pytest
from sqlalchemy import select
from webob import Request

from conftest import assert_error
from tenantapp.models.catalog import LoginFailure, Tenant

MIB = 1024 * 1024


def allow_header(response):
    return {m.strip() for m in response.headers["Allow"].split(",")}


def unique_tenant(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def project_count(client):
    return len(client.get("/api/projects").json["items"])


def too_large_body():
    return b'{"name": "big", "description": "' + b"x" * MIB + b'"}'


# --- 404 and 405: the router's, before everything else ------------------------


@pytest.mark.parametrize(
    "method,url",
    [
        ("GET", "/api/nope"),
        ("POST", "/api/nope"),
        ("GET", "/api/projects/abc"),
        ("GET", "/api/projects/1/nope"),
        ("PATCH", "/api/tasks/x"),
    ],
)
def test_unknown_route_is_404_not_found(client, method, url):
    response = client.raw(method, url, b"")
    assert_error(response, 404, "not_found")


def test_unknown_route_wins_over_every_other_error(new_client, editor):
    client = new_client()  # not logged in (``editor`` is the ``client`` fixture)
    # Not logged in, a body over 1 MiB that is not JSON: still 404.
    response = client.raw("POST", "/api/nope", b"<" * (2 * MIB), content_type="text/plain")
    assert_error(response, 404, "not_found")
    response = editor.raw(
        "POST", "/api/nope", b"{", headers={"X-CSRF-Token": "wrong"}, content_type="text/plain"
    )
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "method,url,allowed",
    [
        ("DELETE", "/api/projects", {"GET", "HEAD", "POST"}),
        ("PUT", "/api/projects", {"GET", "HEAD", "POST"}),
        ("PATCH", "/api/me", {"GET", "HEAD"}),
        ("GET", "/api/login", {"POST"}),
        ("GET", "/api/session/tenant", {"PUT"}),
        ("POST", "/api/projects/1", {"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
        ("PUT", "/healthz", {"GET", "HEAD"}),
    ],
)
def test_method_not_allowed_has_allow_header(client, method, url, allowed):
    response = client.raw(method, url, b"")
    assert_error(response, 405, "method_not_allowed")
    assert allow_header(response) == allowed


def test_method_not_allowed_wins_over_size_login_and_body(new_client, editor):
    client = new_client()  # not logged in (``editor`` is the ``client`` fixture)
    response = client.raw("DELETE", "/api/projects", b"x" * (2 * MIB), content_type="text/plain")
    assert_error(response, 405, "method_not_allowed")
    assert allow_header(response) == {"GET", "HEAD", "POST"}
    response = editor.raw("PATCH", "/api/me", b"[", headers={"X-CSRF-Token": "wrong"})
    assert_error(response, 405, "method_not_allowed")
    assert allow_header(response) == {"GET", "HEAD"}


# --- 413 ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/projects", "/api/login", "/api/session/tenant"])
def test_payload_too_large_even_when_not_logged_in(client, url):
    method = "PUT" if url == "/api/session/tenant" else "POST"
    response = client.raw(method, url, too_large_body())
    assert_error(response, 413, "payload_too_large")


def test_payload_too_large_comes_before_csrf_and_media_type(editor):
    response = editor.raw(
        "POST",
        "/api/projects",
        b"y" * (MIB + 1),
        content_type="text/plain",
        headers={"X-CSRF-Token": "wrong"},
    )
    assert_error(response, 413, "payload_too_large")
    assert project_count(editor) == 0


def test_payload_too_large_without_content_length(app, editor):
    """A chunked body (no Content-Length) over 1 MiB is refused as well."""
    request = Request.blank(
        "/api/projects",
        environ={
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": "application/json",
            "wsgi.input": io.BytesIO(too_large_body()),
            "wsgi.input_terminated": True,
            "HTTP_TRANSFER_ENCODING": "chunked",
        },
    )
    request.environ.pop("CONTENT_LENGTH", None)
    request.headers["Cookie"] = "session=" + editor.test_app.cookies["session"]
    request.headers["X-CSRF-Token"] = editor.csrf
    assert_error(request.get_response(app), 413, "payload_too_large")
    assert project_count(editor) == 0


def test_body_of_exactly_one_mib_is_not_too_large(editor):
    prefix, suffix = b'{"name": "p", "description": "', b'"}'
    body = prefix + b"d" * (MIB - len(prefix) - len(suffix)) + suffix
    assert len(body) == MIB
    # Not 413: read, parsed and refused by validation (description too long).
    error = assert_error(editor.raw("POST", "/api/projects", body), 422, "validation_failed")
    assert set(error["fields"]) == {"description"}


# --- 415 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "text/json",
        None,
    ],
)
def test_unsupported_media_type(editor, content_type):
    response = editor.raw("POST", "/api/projects", b'{"name": "p"}', content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")
    assert project_count(editor) == 0


def test_unsupported_media_type_on_other_json_endpoints(new_client, editor):
    client = new_client()  # not logged in (``editor`` is the ``client`` fixture)
    response = editor.raw(
        "PUT", "/api/session/tenant", b'{"tenant": "acme"}', content_type="text/plain"
    )
    assert_error(response, 415, "unsupported_media_type")
    response = client.raw(
        "POST", "/api/login", b'{"username": "erin"}', content_type="application/xml"
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_type_variants_are_accepted(editor, content_type):
    response = editor.raw("POST", "/api/projects", b'{"name": "p"}', content_type=content_type)
    assert response.status_int == 201, response.body


def test_unsupported_media_type_comes_before_invalid_json(editor):
    response = editor.raw("POST", "/api/projects", b"{not json", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


# --- 400 invalid_json -------------------------------------------------------------

INVALID_JSON_BODIES = {
    "empty": b"",
    "truncated": b'{"name": "p"',
    "garbage": b"name=p",
    "single quotes": b"{'name': 'p'}",
    "trailing comma": b'{"name": "p",}',
    "array": b'[{"name": "p"}]',
    "empty array": b"[]",
    "string": b'"p"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "NaN": b'{"name": "p", "description": NaN}',
    "Infinity": b'{"name": "p", "description": Infinity}',
    "-Infinity": b'{"name": "p", "description": -Infinity}',
    "bare NaN": b"NaN",
    "invalid utf-8": b'{"name": "\xff\xfe"}',
    "overlong utf-8": b'{"name": "\xc0\xaf"}',
    "latin-1 text": '{"name": "café"}'.encode("latin-1"),
    "deep arrays": b"[" * 100000,
    "deep arrays closed": b"[" * 100000 + b"]" * 100000,
    "deep objects": b'{"a":' * 100000,
    "deep in a field": b'{"name": "p", "description": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "number overflowing to infinity": b'{"name": "p", "description": 1e400}',
    "huge integer alone": str(10**40).encode(),
}


@pytest.mark.parametrize("body", INVALID_JSON_BODIES.values(), ids=INVALID_JSON_BODIES.keys())
def test_invalid_json_is_400_never_500(editor, body):
    response = editor.raw("POST", "/api/projects", body)
    assert_error(response, 400, "invalid_json")
    assert project_count(editor) == 0


@pytest.mark.parametrize(
    "url,body",
    [
        ("/api/projects", b'{"name": "p", "description": %d}' % 10**40),
        ("/api/projects", b'{"name": %d}' % -(10**40)),
        ("/api/tasks", b'{"project_id": %d, "title": "t"}' % 10**40),
        ("/api/tasks", b'{"project_id": 18446744073709551617, "title": "t"}'),
    ],
)
def test_huge_integer_is_refused_never_500(editor, url, body):
    """A number beyond 64 bits is either no JSON here (400) or the wrong type for
    the field it is in (422 naming that field); never a 500 and never stored."""
    response = editor.raw("POST", url, body)
    assert response.status_int in (400, 422), (response.status, response.body)
    if response.status_int == 400:
        assert_error(response, 400, "invalid_json")
    else:
        error = assert_error(response, 422, "validation_failed")
        assert set(error["fields"]) <= {"name", "description", "project_id"}
    assert project_count(editor) == 0


@pytest.mark.parametrize("body", [b"[]", b'"acme"', b"{", b'{"tenant": NaN}', b"\xff"])
def test_invalid_json_on_login_and_tenant_choice(new_client, editor, body):
    client = new_client()
    assert_error(client.raw("POST", "/api/login", body), 400, "invalid_json")
    assert_error(editor.raw("PUT", "/api/session/tenant", body), 400, "invalid_json")


def test_invalid_json_on_updates(editor):
    project = editor.post("/api/projects", {"name": "p"}, status=201).json
    url = f"/api/projects/{project['id']}"
    for method in ("PUT", "PATCH"):
        for body in (b"[]", b'{"name": Infinity}', b"{"):
            assert_error(editor.raw(method, url, body), 400, "invalid_json")
    assert editor.get(url).json == project


def test_validation_failed_has_fields(editor):
    error = assert_error(
        editor.raw("POST", "/api/projects", b'{"name": "", "color": "red"}'),
        422,
        "validation_failed",
    )
    assert set(error["fields"]) == {"name", "color"}
    assert all(isinstance(v, str) and v for v in error["fields"].values())


# --- 400 bad_request ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/projects?limit=abc",
        "/api/projects?limit=0",
        "/api/projects?limit=201",
        "/api/projects?limit=-1",
        "/api/projects?after=garbage",
        "/api/tasks?project_id=abc",
        "/api/tasks?status=bogus",
    ],
)
def test_malformed_query_is_bad_request(editor, url):
    assert_error(editor.raw("GET", url, b"", content_type=None), 400, "bad_request")


@pytest.mark.parametrize(
    "url", ["/api/projects?limit=%ff", "/api/projects?after=%ff%fe", "/api/tasks?q=%C0%AF"]
)
def test_query_that_is_not_utf8_is_bad_request_not_500(editor, url):
    """A percent-encoded byte sequence that is no UTF-8 is a malformed parameter."""
    assert_error(editor.raw("GET", url, b"", content_type=None), 400, "bad_request")


@pytest.mark.parametrize("path", ["/api/%ff", "/api/projects/%ff"])
def test_path_that_is_not_utf8_answers_json_not_a_crash(app, path):
    """No route can match an undecodable path: a JSON 404 (or 400), never an
    exception escaping the app (the server would answer its own HTML 500)."""
    try:
        response = Request.blank(path).get_response(app)
    except Exception as exc:  # noqa: BLE001 - what a WSGI server would turn into HTML
        pytest.fail(f"the app raised {type(exc).__name__}: {exc} instead of answering")
    assert response.status_int in (400, 404), response.status
    code = "not_found" if response.status_int == 404 else "bad_request"
    assert_error(response, response.status_int, code)


# --- the order of errors ------------------------------------------------------------


def test_not_logged_in_wins_over_csrf_media_type_and_json(client):
    for content_type, body in (("application/json", b"{"), ("text/plain", b"x"), (None, b"[]")):
        response = client.raw("POST", "/api/projects", body, content_type=content_type)
        assert_error(response, 401, "unauthenticated")
    assert_error(
        client.raw("GET", "/api/projects?limit=abc", b"", content_type=None), 401, "unauthenticated"
    )
    assert_error(client.raw("PATCH", "/api/projects/424242", b"{"), 401, "unauthenticated")


def test_csrf_wins_over_media_type_and_json(editor):
    for headers in ({"X-CSRF-Token": ""}, {"X-CSRF-Token": "wrong"}):
        for content_type, body in (("application/json", b"{"), ("text/plain", b"x")):
            response = editor.raw(
                "POST", "/api/projects", body, content_type=content_type, headers=headers
            )
            assert_error(response, 403, "csrf_failed")
    # The token of another session is no token for this one.
    assert_error(
        editor.raw("PATCH", "/api/projects/424242", b"{", headers={"X-CSRF-Token": "x" * 43}),
        403,
        "csrf_failed",
    )


def test_bad_json_wins_over_role(client, make_user):
    make_user("vic", acme="viewer")
    client.login("vic")
    assert_error(client.raw("POST", "/api/projects", b"{"), 400, "invalid_json")
    assert_error(
        client.raw("POST", "/api/projects", b'{"name": "p"}', content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    assert_error(client.raw("POST", "/api/projects", b'{"name": "p"}'), 403, "forbidden")
    # 403 forbidden comes before 404 for an object and before 422.
    assert_error(client.raw("PATCH", "/api/projects/424242", b'{"name": ""}'), 403, "forbidden")
    assert_error(
        client.raw("DELETE", "/api/projects/424242", b"", content_type=None), 403, "forbidden"
    )


def test_malformed_request_wins_over_tenant_required(client, make_user):
    make_user("tess", acme="editor", globex="editor")
    assert client.login("tess").json["tenant"] is None
    assert_error(
        client.raw("GET", "/api/projects?limit=abc", b"", content_type=None), 400, "bad_request"
    )
    assert_error(
        client.raw("GET", "/api/tasks?status=bogus", b"", content_type=None), 400, "bad_request"
    )
    assert_error(client.raw("POST", "/api/projects", b"[]"), 400, "invalid_json")
    assert_error(client.raw("GET", "/api/projects", b"", content_type=None), 403, "tenant_required")
    assert_error(client.raw("POST", "/api/projects", b'{"name": ""}'), 403, "tenant_required")


def test_malformed_request_wins_over_tenant_suspended(client, make_user, admin):
    make_user("sam", acme="editor")
    client.login("sam")
    admin.tenant_set_status("acme", "suspended")
    assert_error(
        client.raw("GET", "/api/projects?limit=abc", b"", content_type=None), 400, "bad_request"
    )
    assert_error(client.raw("POST", "/api/projects", b"{"), 400, "invalid_json")
    assert_error(client.raw("POST", "/api/projects", b'{"name": "p"}'), 403, "tenant_suspended")
    assert_error(
        client.raw("GET", "/api/projects/424242", b"", content_type=None), 403, "tenant_suspended"
    )


def test_missing_object_wins_over_stale_if_match_and_invalid_body(editor):
    stale = {"If-Match": '"99"'}
    for url in ("/api/projects/424242", "/api/tasks/424242"):
        assert_error(editor.raw("PATCH", url, b'{"title": "t"}', headers=stale), 404, "not_found")
        assert_error(editor.raw("PUT", url, b'{"bogus": 1}', headers=stale), 404, "not_found")
        assert_error(
            editor.raw("DELETE", url, b"", content_type=None, headers=stale), 404, "not_found"
        )


def test_stale_if_match_wins_over_invalid_body(editor):
    project = editor.post("/api/projects", {"name": "p"}, status=201).json
    url = f"/api/projects/{project['id']}"
    stale = {"If-Match": '"7"'}
    for method, body in (
        ("PATCH", b'{"name": ""}'),
        ("PATCH", b'{"color": "red"}'),
        ("PUT", b"{}"),
        ("PUT", b'{"name": "q", "description": "", "version": 3}'),
    ):
        assert_error(editor.raw(method, url, body, headers=stale), 412, "precondition_failed")
    assert_error(
        editor.raw("DELETE", url, b"", content_type=None, headers=stale), 412, "precondition_failed"
    )
    # Nothing changed; the right version still gets the 422.
    assert editor.get(url).json == project
    error = assert_error(
        editor.raw("PATCH", url, b'{"name": ""}', headers={"If-Match": '"1"'}),
        422,
        "validation_failed",
    )
    assert set(error["fields"]) == {"name"}


# --- 500 --------------------------------------------------------------------------


def test_unexpected_exception_is_internal_error_with_request_id(editor, admin, caplog):
    with caplog.at_level(logging.ERROR):
        response = editor.raw("POST", "/api/_test/raise_after_write", b"", content_type=None)
    error = assert_error(response, 500, "internal_error")
    request_id = response.headers.get("X-Request-Id", "")
    assert request_id.strip()
    assert "RuntimeError" not in error["message"]
    # Logged (with the traceback) under the same request id, for the operator.
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    # Nothing the failed request wrote was kept, in either database.
    with admin.catalog.transaction(write=False) as db:
        assert db.execute(select(LoginFailure)).scalars().all() == []
    assert project_count(editor) == 0
    # The app goes on serving.
    editor.post("/api/projects", {"name": "after"}, status=201)


# --- 503 --------------------------------------------------------------------------

DEAD_PG_URL = "postgresql://postgres@127.0.0.1:1/tenant_dead"


@pytest.fixture
def dead_tenant(backend, admin, settings):
    """A tenant whose database does not answer; the catalog knows it as active."""
    name = unique_tenant("dead")
    if backend == "sqlite":
        admin.tenant_create(name, display_name="Dead Inc")
        admin.directory.factory(name).dispose()
        template = settings["tenantapp.tenant_url_template"]
        path = template.removeprefix("sqlite:///").format(name=name)
        assert os.path.exists(path)
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    else:
        with admin.catalog.transaction() as db:
            db.add(Tenant(name=name, display_name="Dead Inc", status="active", db_url=DEAD_PG_URL))
    return name


def test_unreachable_tenant_database_is_503_while_others_work(new_client, make_user, dead_tenant):
    make_user("dan", **{dead_tenant: "editor"})
    make_user("amy", acme="editor")
    dead, alive = new_client(), new_client()
    me = dead.login("dan").json  # login touches the catalog only
    assert me["tenant"]["name"] == dead_tenant
    alive.login("amy")

    for _ in range(2):
        started = time.monotonic()
        response = dead.raw("GET", "/api/projects", b"", content_type=None)
        elapsed = time.monotonic() - started
        assert_error(response, 503, "service_unavailable")
        assert response.headers["Retry-After"].isdigit()
        assert int(response.headers["Retry-After"]) >= 1
        assert elapsed < 5, f"503 took {elapsed:.1f}s"
        assert alive.get("/api/projects").json == {"items": [], "next": None}

    response = dead.raw("POST", "/api/projects", b'{"name": "p"}')
    assert_error(response, 503, "service_unavailable")
    assert "Retry-After" in response.headers
    alive.post("/api/projects", {"name": "still works"}, status=201)
    # The catalog side of the dead tenant's member keeps working too.
    assert dead.get("/api/me").json["tenant"]["name"] == dead_tenant
    assert dead.get("/healthz").json == {"status": "ok"}
    assert dead.get("/readyz").status_int == 200


# --- health -----------------------------------------------------------------------


def test_healthz_and_readyz(client):
    response = client.get("/healthz")
    assert response.json == {"status": "ok"}
    assert response.content_type == "application/json"
    assert client.get("/readyz").status_int == 200


# --- content type -------------------------------------------------------------------


def test_error_content_type_names_utf8(client):
    """API.md: everything under /api, errors included, is
    ``application/json; charset=utf-8``."""
    for response in (
        client.raw("GET", "/api/me", b"", content_type=None),
        client.raw("GET", "/api/nope", b"", content_type=None),
        client.raw("DELETE", "/api/projects", b"", content_type=None),
    ):
        header = response.headers["Content-Type"].replace(" ", "").lower()
        assert header == "application/json;charset=utf-8", header


def test_readyz_is_503_while_the_catalog_schema_is_behind(client, admin, caplog):
    """A process started before ``tenantapp-admin init`` upgraded the catalog
    is not ready (its login lookups would fail), and says so when it starts
    serving; it is ready once the catalog is upgraded."""
    from tenantapp import migrations
    from tenantapp.server import warn_if_catalog_is_behind

    migrations.downgrade(admin.catalog.write_engine, "catalog", "c0001")
    try:
        response = client.get("/readyz", status=503)
        assert response.json["error"]["code"] == "service_unavailable"
        assert "tenantapp-admin CONFIG init" in response.json["error"]["message"]
        warn_if_catalog_is_behind(admin.registry)
        head = migrations.head_revision("catalog")
        assert f"the catalog schema is at c0001, this version needs {head}" in caplog.text
    finally:
        admin.init()
    assert client.get("/readyz").json == {"status": "ok"}
    caplog.clear()
    warn_if_catalog_is_behind(admin.registry)
    assert "catalog schema" not in caplog.text
