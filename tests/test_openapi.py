"""The OpenAPI document (GET /api/openapi.json) and the docs page (GET /api/docs).

The document must be valid OpenAPI 3.1, describe exactly the app's ``/api``
routes and methods, and say of bodies what the validators do; the answers of a
real session must match it. (Schemathesis checks a live server against it on
the PostgreSQL run: test_schemathesis.py.)
"""

import json
import re
import unicodedata
from html.parser import HTMLParser

import jsonschema
import pytest
import webtest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import ValidationError
from pyramid.interfaces import IRoutesMapper
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import PASSWORD
from tenantapp import make_app, schemas
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.openapi import CURSOR_PATTERN, body_schema

DOCUMENT_URI = "urn:tenantapp:openapi"


@pytest.fixture(scope="module")
def real_app(settings):
    """The app as deployed: without the test-only views of ``pyramid.includes``."""
    app = make_app({k: v for k, v in settings.items() if k != "pyramid.includes"})
    yield app
    app.registry.getUtility(ITenantDirectory).dispose_all()
    app.registry.getUtility(IDBFactory, "catalog").dispose()


@pytest.fixture(scope="module")
def document(real_app):
    response = webtest.TestApp(real_app).get("/api/openapi.json")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    return response.json


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


def _api_routes(registry):
    """{(path, method)} of every /api route and the methods its views take."""
    found = set()
    for route in registry.getUtility(IRoutesMapper).get_routes():
        path = "/" + route.pattern.lstrip("/")
        if route.name.startswith("__") or not path.startswith("/api/"):
            continue  # static views are files, not operations
        # A marker's regex may hold one level of braces ({id:[0-9]{1,10}}).
        path = re.sub(r"\{(\w+)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}", r"{\1}", path)
        for method in registry.route_methods.get(route.name, ()):
            found.add((path, method))
    return found


def _view_methods(registry):
    """{route name: methods} straight from the introspector's views."""
    methods = {}
    for item in registry.introspector.get_category("views"):
        view = item["introspectable"]
        if view.get("route_name") and view.get("request_methods"):
            value = view["request_methods"]
            methods.setdefault(view["route_name"], set()).update(
                (value,) if isinstance(value, str) else value
            )
    return methods


def test_every_api_route_is_documented_and_nothing_else(real_app, document):
    registry = real_app.registry
    # route_methods (the 405 answers' Allow) is what the views registered, plus HEAD.
    for name, methods in _view_methods(registry).items():
        assert registry.route_methods[name] - {"HEAD"} == methods - {"HEAD"}, name
    served = {(path, method) for path, method in _api_routes(registry) if method != "HEAD"}
    # HEAD is GET without a body, for every GET route: not an operation of its own.
    assert {(p, "HEAD") for p, m in served if m == "GET"} <= _api_routes(registry)
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert served - documented == set(), "routes the document does not describe"
    assert documented - served == set(), "documented operations the app does not serve"
    assert len(served) >= 20


def test_the_test_app_documents_the_same(app, document):
    # The test-only views (under /api/_test) are not documented, and do not
    # change what is.
    assert webtest.TestApp(app).get("/api/openapi.json").json == document


# --- bodies: the document says what the validators do -----------------------------


def _operations_with_bodies(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                yield path, method, document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _concrete(path, project, task, username="ada"):
    path = path.replace("{username}", username)
    return path.replace("{id}", str(task["id"] if "/tasks/" in path else project["id"]))


def test_required_and_unknown_fields_are_those_the_views_check(new_client, make_user, document):
    # An admin: the member operations need the role before they read a body.
    make_user("ada", acme="admin")
    editor = new_client()
    editor.login("ada")
    project = editor.post("/api/projects", {"name": "Bodies"}, status=201).json
    task = editor.post("/api/tasks", {"project_id": project["id"], "title": "T"}, status=201).json
    bodies = list(_operations_with_bodies(document))
    assert {(p, m) for p, m, _ in bodies} >= {("/api/login", "post"), ("/api/tasks/{id}", "put")}
    for path, method, schema in bodies:
        url = _concrete(path, project, task)
        assert schema["additionalProperties"] is False
        response = editor.raw(method.upper(), url, b'{"zz_unknown": 1}', status="*")
        assert response.status_int == 422, (method, path)
        assert response.json["error"]["fields"]["zz_unknown"] == "unknown field"
        response = editor.raw(method.upper(), url, b"{}", status="*")
        missing = (
            set(response.json["error"].get("fields", {})) if response.status_int == 422 else set()
        )
        assert missing == set(schema.get("required", ())), (method, path)


WHITESPACE = [
    c for c in range(0x3001) if chr(c).isspace() or unicodedata.category(chr(c)) in ("Zs", "Cc")
]


def test_the_documented_whitespace_is_what_the_validators_trim():
    class_ = re.compile(f"[{schemas.WHITESPACE_CLASS}]")
    for code in WHITESPACE + [0x180E, 0x200B, 0xFEFF]:
        c = chr(code)
        try:
            trimmed = schemas.ProjectCreate.model_validate({"name": f"{c}x{c}"}).name == "x"
        except ValidationError:
            trimmed = False  # U+0000
        assert trimmed == bool(class_.fullmatch(c)), hex(code)


TEXT_FIELDS = [
    (schemas.ProjectCreate, "name", {}),
    (schemas.ProjectCreate, "description", {"name": "n"}),
    (schemas.TaskCreate, "title", {"project_id": 1}),
    (schemas.TaskCreate, "assignee", {"project_id": 1, "title": "t"}),
    (schemas.LoginBody, "username", {"password": "p"}),
]
# Around every limit: whitespace, U+0000 and plain letters, short and long.
text = st.one_of(
    st.text(st.sampled_from(" \t\n\x00\u3000\x85\u200bab"), max_size=12),
    st.builds(
        lambda pad, core, pad2: pad + core + pad2,
        st.text(st.sampled_from(" \u2003\n"), max_size=3),
        st.sampled_from([1, 149, 150, 151, 199, 200, 201, 499, 500, 501]).map(lambda n: "a" * n),
        st.text(st.sampled_from(" \u2003\n\x00"), max_size=3),
    ),
)


@pytest.mark.parametrize(("model", "field", "others"), TEXT_FIELDS)
@settings(max_examples=300, deadline=None, database=None)
@given(value=text)
def test_documented_text_fields_accept_what_the_model_accepts(model, field, others, value):
    schema = body_schema(model)["properties"][field]
    schema = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "string")
    documented = jsonschema.Draft202012Validator(schema).is_valid(value)
    try:
        model.model_validate({**others, field: value})
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted, (field, value)


@settings(max_examples=500, deadline=None, database=None)
@given(cursor=st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_documented_cursor_is_one_the_api_takes(cursor):
    schemas.decode_cursor(cursor)


@settings(max_examples=500, deadline=None, database=None)
@given(last_id=st.integers(min_value=0, max_value=10**18 - 1))
def test_every_cursor_the_api_writes_is_documented(last_id):
    assert re.fullmatch(CURSOR_PATTERN, schemas.encode_cursor(last_id))


# --- answers: a real session matches the document ---------------------------------


class DocumentedAnswers:
    """Checks answers against the document: status, body schema, headers."""

    def __init__(self, document):
        self.document = document
        self.registry = Registry().with_resource(
            DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.checked = set()

    def check(self, path, method, response):
        operation = self.document["paths"][path][method.lower()]
        status = str(response.status_int)
        assert status in operation["responses"], f"{method} {path}: undocumented {status}"
        documented = operation["responses"][status]
        for name, header in documented.get("headers", {}).items():
            if header.get("required"):
                assert name in response.headers, f"{method} {path} {status}: no {name}"
                jsonschema.validate(
                    int(response.headers[name])
                    if header["schema"]["type"] == "integer"
                    else response.headers[name],
                    header["schema"],
                )
        if "content" not in documented:
            assert response.body == b""
        else:
            pointer = "/".join(
                part.replace("~", "~0").replace("/", "~1")
                for part in ("paths", path, method.lower(), "responses", status, "content")
            )
            schema = {"$ref": f"{DOCUMENT_URI}#/{pointer}/application~1json/schema"}
            validator = jsonschema.Draft202012Validator(
                schema, registry=self.registry, format_checker=jsonschema.FormatChecker()
            )
            errors = list(validator.iter_errors(response.json))
            assert not errors, f"{method} {path} {status}: {errors[0].message}"
        self.checked.add((path, method.lower(), status))


def test_a_session_answers_as_documented(new_client, make_user, document):
    make_user("ada", acme="admin", globex="editor")
    make_user("bo", acme="viewer")
    answers = DocumentedAnswers(document)
    ada, bo, nobody = new_client(), new_client(), new_client()

    def call(client, method, path, url=None, body=None, headers=None, media="application/json"):
        raw = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        response = client.raw(method, url or path, raw, media, status="*", headers=headers)
        answers.check(path, method, response)
        return response

    call(nobody, "GET", "/api/me")  # 401
    call(nobody, "POST", "/api/login", body={"username": "ada", "password": "wrong"})  # 401
    call(nobody, "POST", "/api/login", body={"username": ""})  # 422
    call(nobody, "POST", "/api/login", body=b"[1]")  # 400
    login = call(ada, "POST", "/api/login", body={"username": "ada", "password": PASSWORD})
    ada.csrf = login.json["csrf_token"]
    bo.login("bo")
    call(ada, "GET", "/api/me")
    call(ada, "GET", "/api/projects")  # 403 tenant_required: two tenants, none chosen
    call(ada, "PUT", "/api/session/tenant", body={"tenant": "initech"})  # 403
    call(ada, "PUT", "/api/session/tenant", body={"tenant": "acme"})
    call(ada, "GET", "/api/members")
    call(bo, "GET", "/api/members")  # 403 forbidden
    call(ada, "POST", "/api/projects", body={"name": "P"}, headers={"X-CSRF-Token": "x"})  # 403
    call(ada, "POST", "/api/projects", body=b"{}", media="text/plain")  # 415
    project = call(ada, "POST", "/api/projects", body={"name": "Docs", "description": "d"}).json
    call(ada, "POST", "/api/projects", body={"name": "docs"})  # 422 taken
    p_url = f"/api/projects/{project['id']}"
    call(ada, "GET", "/api/projects/{id}", p_url)
    call(ada, "GET", "/api/projects/{id}", "/api/projects/999999")  # 404
    call(ada, "PUT", "/api/projects/{id}", p_url, {"name": "Docs", "description": "e"})
    call(ada, "PATCH", "/api/projects/{id}", p_url, {"name": "Docs 2"})
    call(ada, "PATCH", "/api/projects/{id}", p_url, {}, headers={"If-Match": '"1"'})  # 412
    task = call(ada, "POST", "/api/tasks", body={"project_id": project["id"], "title": "T"}).json
    t_url = f"/api/tasks/{task['id']}"
    call(ada, "POST", "/api/tasks", body={"project_id": 999999, "title": "T"})  # 422
    call(ada, "GET", "/api/tasks/{id}", t_url)
    body = {"project_id": project["id"], "title": "T2", "status": "done"}
    call(ada, "PUT", "/api/tasks/{id}", t_url, {**body, "assignee": "ada", "due_date": None})
    call(ada, "PATCH", "/api/tasks/{id}", t_url, {"due_date": "2026-12-01"})
    for _ in range(3):
        call(ada, "POST", "/api/tasks", body={"project_id": project["id"], "title": "more"})
    page = call(ada, "GET", "/api/tasks", "/api/tasks?limit=2&status=open&q=mo").json
    call(ada, "GET", "/api/tasks", f"/api/tasks?limit=2&after={page['next']}")
    call(ada, "GET", "/api/tasks", "/api/tasks?limit=abc")  # 400
    call(ada, "GET", "/api/projects", "/api/projects?limit=1")
    call(ada, "GET", "/api/projects/{id}/tasks", f"{p_url}/tasks?assignee=ada")
    call(bo, "DELETE", "/api/tasks/{id}", t_url)  # 403 forbidden (viewer)
    call(ada, "DELETE", "/api/tasks/{id}", t_url)
    call(ada, "DELETE", "/api/projects/{id}", p_url, headers={"If-Match": "*"})
    call(ada, "GET", "/api/openapi.json")
    # Members and the account (API.md, "Members", "Your account").
    make_user("cy")
    m_url = "/api/members/{username}"
    call(ada, "PUT", m_url, "/api/members/cy", {"role": "viewer"})  # 201
    call(ada, "PUT", m_url, "/api/members/cy", {"role": "editor"})  # 200
    call(ada, "PUT", m_url, "/api/members/cy", {"role": "owner"})  # 422
    call(ada, "PUT", m_url, "/api/members/nobody", {"role": "viewer"})  # 404
    call(ada, "PUT", m_url, "/api/members/ada", {"role": "viewer"})  # 409 last admin
    call(bo, "PUT", m_url, "/api/members/cy", {"role": "viewer"})  # 403
    call(ada, "DELETE", m_url, "/api/members/ada")  # 409
    call(ada, "DELETE", m_url, "/api/members/cy")  # 204
    call(ada, "DELETE", m_url, "/api/members/cy")  # 404
    other = new_client()
    other.login("ada")
    sessions = call(ada, "GET", "/api/me/sessions").json
    (others,) = [s for s in sessions if not s["current"]]
    s_url = "/api/me/sessions/{session_id}"
    call(ada, "DELETE", s_url, f"/api/me/sessions/{others['id']}")  # 204
    call(ada, "DELETE", s_url, f"/api/me/sessions/{others['id']}")  # 404
    pw_url = "/api/me/password"
    call(ada, "PUT", pw_url, body={"current_password": "wrong", "new_password": "x" * 12})  # 403
    call(ada, "PUT", pw_url, body={"current_password": PASSWORD, "new_password": "short"})  # 422
    call(ada, "PUT", pw_url, body={"current_password": PASSWORD, "new_password": "x" * 12})
    call(ada, "POST", "/api/logout")
    call(ada, "GET", "/api/me")  # 401
    statuses = {status for _, _, status in answers.checked}
    assert statuses >= {
        "200", "201", "204", "400", "401", "403", "404", "409", "412", "415", "422"
    }  # fmt: skip


# --- the docs page ----------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href")]


def test_the_docs_page_uses_only_assets_the_app_serves(app):
    test_app = webtest.TestApp(app)
    page = test_app.get("/api/docs")
    assert page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assert '"/api/openapi.json"' in page.text
    parser = _Assets()
    parser.feed(page.text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in parser.urls)
    for url in parser.urls:
        assert url.startswith("/"), f"{url}: not served by the app"
        asset = test_app.get(url)
        assert asset.status_int == 200 and asset.body
        assert "max-age" in asset.headers["Cache-Control"]
    bundle = test_app.get(next(u for u in parser.urls if u.endswith("swagger-ui-bundle.js")))
    # Swagger UI 5 is the first that renders OpenAPI 3.1 (4 takes "openapi: 3.0.n" only).
    assert b"isOAS31" in bundle.body
