"""Issue 3: an attacker's tour of the whole app, on SQLite and PostgreSQL.

Every attack asserts the contract's exact answer (API.md: status and error
code) and that nothing changed in any database: the catalog and both tenant
databases are read back, row by row, by another connection (``world``). Time
is the ``clock`` fixture's (no sleeps).
"""

import io
import json
import os
import secrets

import pytest
import webtest
from sqlalchemy import select, text
from webob import Request

from conftest import (
    PASSWORD,
    SECRET,
    Clock,
    assert_error,
    failures,
    last_used,
    sessions_of,
    tenant_rows,
)
from tenantapp import make_app
from tenantapp.auth import tokens
from tenantapp.cli import CommandError
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import LoginFailure, LoginSession, Membership, Tenant, User
from tenantapp.models.tenant import Project, Task
from tenantapp.schemas import encode_cursor

MIB = 1024 * 1024
COOKIE = "session"


# --- helpers ----------------------------------------------------------------------


def _table_rows(db, table):
    order = list(table.primary_key.columns)
    return [tuple(row) for row in db.execute(select(table).order_by(*order)).all()]


def world(admin):
    """Every row of every table of the catalog and of both tenant databases."""
    state = {}
    with admin.catalog.transaction(write=False) as db:
        for model in (User, Tenant, Membership, LoginSession, LoginFailure):
            state[f"catalog.{model.__tablename__}"] = _table_rows(db, model.__table__)
    for tenant in ("acme", "globex"):
        with admin.directory.factory(tenant).transaction(write=False) as db:
            for model in (Project, Task):
                state[f"{tenant}.{model.__tablename__}"] = _table_rows(db, model.__table__)
    return state


def replayer(app, cookie_value):
    """Another browser (the thief's) holding a copy of a cookie."""
    test_app = webtest.TestApp(app)
    test_app.set_cookie(COOKIE, cookie_value)
    return test_app


def send(app, method, path, cookie=None, body=None, headers=None, content_type=None):
    """One request built by hand, as a WSGI server would hand it over: raw Cookie
    header, body as an unseekable stream, Content-Length as given (it may lie)."""
    environ = {"REQUEST_METHOD": method}
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    if body is not None:
        environ["wsgi.input"] = io.BufferedReader(io.BytesIO(body))
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = content_type or "application/json"
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else f"HTTP_{key}"] = value
    request = Request.blank(path, environ=environ)
    try:
        return request.get_response(app)
    except Exception as exc:  # noqa: BLE001 - a WSGI server would answer its own 500
        pytest.fail(f"the app raised {type(exc).__name__}: {exc} instead of answering")


def login_body(username, password=PASSWORD, **extra):
    return {"username": username, "password": password, **extra}


def create_project(client, name="Alpha", **fields):
    return client.post("/api/projects", {"name": name, **fields}, status=201).json


def create_task(client, project, title="Task", **fields):
    return client.post(
        "/api/tasks", {"project_id": project["id"], "title": title, **fields}, status=201
    ).json


def full_task(project_id, title="x"):
    return {
        "project_id": project_id,
        "title": title,
        "status": "done",
        "assignee": None,
        "due_date": None,
    }


@pytest.fixture
def globex_data(new_client, make_user):
    """Real rows in globex, written by its own editor."""
    make_user("gina", globex="editor")
    gina = new_client()
    gina.login("gina")
    project = create_project(gina, "Globex secret plan", description="only for globex")
    task = create_task(gina, project, "Globex secret task", assignee="gina", status="in_progress")
    return {"client": gina, "project": project, "task": task}


# --- tenant hopping -----------------------------------------------------------------


def hop_requests(project_id, task_id):
    """Every way to touch a project and a task by id: (method, url, body)."""
    project_url, task_url = f"/api/projects/{project_id}", f"/api/tasks/{task_id}"
    return [
        ("GET", project_url, None),
        ("GET", f"{project_url}/tasks", None),
        ("PATCH", project_url, {"name": "pwned"}),
        ("PATCH", project_url, {}),
        ("PUT", project_url, {"name": "pwned", "description": "pwned"}),
        ("DELETE", project_url, None),
        ("GET", task_url, None),
        ("PATCH", task_url, {"title": "pwned", "status": "done"}),
        ("PATCH", task_url, {}),
        ("PUT", task_url, full_task(project_id, "pwned")),
        ("DELETE", task_url, None),
    ]


def call(client, method, url, body, status, headers=None):
    if method == "GET":
        return client.get(url, status=status, headers=headers)
    if method == "DELETE":
        return client.delete(url, status=status, headers=headers)
    return getattr(client, method.lower())(url, body, status=status, headers=headers)


@pytest.mark.parametrize("if_match", [None, "*", '"1"'])
def test_tenant_hopping_by_id_is_404_and_changes_nothing(
    new_client, make_user, admin, globex_data, if_match
):
    make_user("mallory", acme="editor")
    mallory = new_client()
    assert mallory.login("mallory").json["tenant"]["name"] == "acme"
    assert tenant_rows(admin, "acme", Project) == []  # globex ids name nothing in acme
    before = world(admin)
    headers = {"If-Match": if_match} if if_match else None
    project, task = globex_data["project"], globex_data["task"]
    for method, url, body in hop_requests(project["id"], task["id"]):
        response = call(mallory, method, url, body, status=404, headers=headers)
        assert_error(response, 404, "not_found")
        assert b"secret" not in response.body
    # Lists and filters of the chosen tenant never show the other tenant's rows.
    empty = {"items": [], "next": None}
    assert mallory.get("/api/projects").json == empty
    for params in (
        {},
        {"project_id": str(project["id"])},
        {"assignee": "gina"},
        {"q": "secret"},
        {"status": "in_progress"},
    ):
        assert mallory.get("/api/tasks", params=params).json == empty
    assert world(admin) == before
    # The owner still sees their rows exactly as they were.
    gina = globex_data["client"]
    assert gina.get(f"/api/projects/{project['id']}").json == project
    assert gina.get(f"/api/tasks/{task['id']}").json == task


def test_tenant_hopping_by_a_member_of_both_tenants(new_client, make_user, admin, globex_data):
    """Reading globex is allowed to this user; but with acme chosen, a globex id is
    looked up in acme only; and a viewer of globex may not write there."""
    make_user("dora", acme="admin", globex="viewer")
    dora = new_client()
    dora.login("dora", tenant="acme")
    before = world(admin)
    project, task = globex_data["project"], globex_data["task"]
    for method, url, body in hop_requests(project["id"], task["id"]):
        assert_error(call(dora, method, url, body, status=404), 404, "not_found")
    assert world(admin) == before
    dora.put("/api/session/tenant", {"tenant": "globex"})
    before = world(admin)
    assert dora.get(f"/api/tasks/{task['id']}").json == task
    for method, url, body in hop_requests(project["id"], task["id"]):
        if method != "GET":
            assert_error(call(dora, method, url, body, status=403), 403, "forbidden")
    assert world(admin) == before


def test_foreign_project_id_in_a_body_is_no_project_here(new_client, make_user, admin):
    make_user("mallory", acme="editor")
    make_user("gina", globex="editor")
    mallory, gina = new_client(), new_client()
    mallory.login("mallory")
    gina.login("gina")
    ours = create_project(mallory, "Ours")
    our_task = create_task(mallory, ours)
    theirs = create_project(gina, "Theirs")
    while theirs["id"] == ours["id"]:  # separate sequences: make sure the id is foreign
        theirs = create_project(gina, f"Theirs {secrets.token_hex(4)}")
    before = world(admin)
    for method, url, body in (
        ("POST", "/api/tasks", {"project_id": theirs["id"], "title": "smuggled"}),
        ("PATCH", f"/api/tasks/{our_task['id']}", {"project_id": theirs["id"]}),
        ("PUT", f"/api/tasks/{our_task['id']}", full_task(theirs["id"])),
    ):
        response = call(mallory, method, url, body, status=422)
        assert set(assert_error(response, 422, "validation_failed")["fields"]) == {"project_id"}
    assert world(admin) == before


FOREIGN_TENANTS = ["globex", "nosuchtenant", "Not A Name!", "suspended_globex"]


def test_choosing_a_foreign_tenant_answers_like_a_nonexistent_one(client, make_user, admin):
    make_user("mallory", acme="editor")
    client.login("mallory")
    answers = []
    for tenant in FOREIGN_TENANTS:
        if tenant == "suspended_globex":
            # Suspended and not a member: still "forbidden", or the status would
            # tell a stranger that the tenant exists.
            admin.tenant_set_status("globex", "suspended")
            tenant = "globex"
        before = world(admin)
        response = client.put("/api/session/tenant", {"tenant": tenant}, status=403)
        assert_error(response, 403, "forbidden")
        answers.append(response.body)
        assert world(admin) == before
        assert client.get("/api/me").json["tenant"]["name"] == "acme"
    assert len(set(answers)) == 1, answers


def test_login_with_a_foreign_tenant_is_403_and_opens_no_session(client, make_user, admin):
    make_user("mallory", acme="editor")
    answers = []
    for tenant in FOREIGN_TENANTS:
        if tenant == "suspended_globex":
            admin.tenant_set_status("globex", "suspended")
            tenant = "globex"
        before = world(admin)
        response = client.login("mallory", tenant=tenant, status=403)
        assert_error(response, 403, "forbidden")
        assert "Set-Cookie" not in response.headers
        answers.append(response.body)
        assert world(admin) == before
    assert len(set(answers)) == 1, answers
    assert sessions_of(admin, "mallory") == []


def test_login_with_a_foreign_tenant_and_a_wrong_password_reveals_nothing(client, make_user):
    """The password is checked first: memberships cannot be probed without it."""
    make_user("mallory", acme="editor")
    make_user("dis", acme="editor", disabled=True)
    plain = client.login("mallory", "wrong", status=401).json
    for tenant in ("globex", "acme", "nosuchtenant", "../acme"):
        for username, password in (("mallory", "wrong"), ("nobody", PASSWORD), ("dis", PASSWORD)):
            response = client.login(username, password, tenant=tenant, status=401)
            assert response.json == plain
            assert "Set-Cookie" not in response.headers


# --- replaying a cookie -----------------------------------------------------------------


@pytest.fixture
def victim(client, make_user, app):
    """mallory, an acme editor, logged in; her cookie also in a thief's browser."""
    make_user("mallory", acme="editor")
    client.login("mallory")
    client.thief = replayer(app, client.test_app.cookies[COOKIE])
    client.thief.get("/api/projects")  # the stolen cookie works, for now
    return client


def test_cookie_replayed_after_logout_is_refused(victim, admin):
    victim.post("/api/logout", status=204)
    thief = victim.thief
    assert_error(thief.get("/api/me", status=401), 401, "unauthenticated")
    assert_error(thief.get("/api/projects", status=401), 401, "unauthenticated")
    headers = {"X-CSRF-Token": victim.csrf}
    for response in (
        thief.post_json("/api/projects", {"name": "p"}, headers=headers, status=401),
        thief.put_json("/api/session/tenant", {"tenant": "acme"}, headers=headers, status=401),
        thief.post("/api/logout", headers=headers, status=401),
    ):
        assert_error(response, 401, "unauthenticated")
    assert sessions_of(admin, "mallory") == []
    assert tenant_rows(admin, "acme", Project) == []


def test_cookie_replayed_after_revoke_has_no_tenant(victim, admin):
    project = create_project(victim, "Mine")
    victim.thief.get(f"/api/projects/{project['id']}")
    admin.user_revoke("mallory", "acme")
    thief = victim.thief
    before = world(admin)
    headers = {"X-CSRF-Token": victim.csrf}
    for response in (
        thief.get("/api/projects", status=403),
        thief.get(f"/api/projects/{project['id']}", status=403),
        thief.get("/api/tasks", status=403),
        thief.post_json("/api/projects", {"name": "p"}, headers=headers, status=403),
        thief.patch_json(
            f"/api/projects/{project['id']}", {"name": "x"}, headers=headers, status=403
        ),
        thief.delete(f"/api/projects/{project['id']}", headers=headers, status=403),
        thief.put_json("/api/session/tenant", {"tenant": "acme"}, headers=headers, status=403),
    ):
        assert_error(response, 403, "forbidden")
    me = thief.get("/api/me").json
    assert me["tenant"] is None and me["tenants"] == []
    assert world(admin) == before


def test_cookie_replayed_after_disable_is_refused_even_after_enable(victim, admin):
    admin.user_set_disabled("mallory", True)
    thief = victim.thief
    before = world(admin)
    headers = {"X-CSRF-Token": victim.csrf}
    for response in (
        thief.get("/api/me", status=401),
        thief.get("/api/projects", status=401),
        thief.post_json("/api/projects", {"name": "p"}, headers=headers, status=401),
        victim.get("/api/me", status=401),
    ):
        assert_error(response, 401, "unauthenticated")
    assert world(admin) == before
    # Her sessions ended: enabling the account does not bring the stolen cookie back.
    admin.user_set_disabled("mallory", False)
    assert_error(thief.get("/api/me", status=401), 401, "unauthenticated")


def test_cookie_replayed_after_suspend_is_tenant_suspended(victim, admin):
    project = create_project(victim, "Mine")
    admin.tenant_set_status("acme", "suspended")
    thief = victim.thief
    before = world(admin)
    headers = {"X-CSRF-Token": victim.csrf}
    for response in (
        thief.get("/api/projects", status=403),
        thief.get(f"/api/projects/{project['id']}", status=403),
        thief.post_json("/api/projects", {"name": "p"}, headers=headers, status=403),
        thief.delete(f"/api/projects/{project['id']}", headers=headers, status=403),
        victim.post("/api/projects", {"name": "q"}, status=403),
    ):
        assert_error(response, 403, "tenant_suspended")
    assert world(admin) == before
    admin.tenant_set_status("acme", "active")
    assert thief.get("/api/projects").json["items"] == [project]


def test_role_downgrade_takes_effect_at_the_next_request(victim, admin):
    project = create_project(victim, "Mine")
    victim.patch(f"/api/projects/{project['id']}", {"description": "edited"})
    admin.user_grant("mallory", "acme", "viewer")
    before = world(admin)
    for method, url, body in (
        ("POST", "/api/projects", {"name": "p"}),
        ("PATCH", f"/api/projects/{project['id']}", {"description": "again"}),
        ("DELETE", f"/api/projects/{project['id']}", None),
    ):
        assert_error(call(victim, method, url, body, status=403), 403, "forbidden")
    assert victim.get(f"/api/projects/{project['id']}").json["description"] == "edited"
    assert world(admin) == before
    # admin -> editor: the member list closes at once too.
    admin.user_grant("mallory", "acme", "admin")
    victim.get("/api/members")
    admin.user_grant("mallory", "acme", "editor", force=True)  # she was the last admin
    assert_error(victim.get("/api/members", status=403), 403, "forbidden")


# --- session fixation -----------------------------------------------------------------


def test_planted_cookie_is_not_kept_at_login(client, make_user, app, admin):
    make_user("mallory", acme="editor")
    planted = "attacker-chosen-token." + secrets.token_urlsafe(32)
    client.test_app.set_cookie(COOKIE, planted)
    response = client.login("mallory")
    assert COOKIE + "=" in response.headers["Set-Cookie"]
    assert client.test_app.cookies[COOKIE] != planted
    assert_error(replayer(app, planted).get("/api/me", status=401), 401, "unauthenticated")


def test_attackers_own_session_planted_in_the_victims_browser(new_client, make_user, app, admin):
    make_user("eve", acme="viewer")
    make_user("mallory", acme="editor")
    eve = new_client()
    eve.login("eve")
    eves_cookie = eve.test_app.cookies[COOKIE]
    browser = new_client()
    browser.test_app.set_cookie(COOKIE, eves_cookie)
    assert browser.login("mallory").json["user"]["username"] == "mallory"
    assert browser.test_app.cookies[COOKIE] != eves_cookie
    # Eve's cookie is not upgraded to mallory's session: it is refused.
    assert_error(replayer(app, eves_cookie).get("/api/me", status=401), 401, "unauthenticated")
    assert browser.get("/api/me").json["user"]["username"] == "mallory"
    assert len(sessions_of(admin, "mallory")) == 1


def test_every_login_is_a_new_session_and_the_old_one_dies(client, make_user, app, admin):
    make_user("mallory", acme="editor")
    cookies, csrfs = [], []
    for _ in range(3):
        client.login("mallory")
        cookies.append(client.test_app.cookies[COOKIE])
        csrfs.append(client.csrf)
    assert len(set(cookies)) == 3 and len(set(csrfs)) == 3
    for old in cookies[:-1]:
        assert_error(replayer(app, old).get("/api/me", status=401), 401, "unauthenticated")
    assert len(sessions_of(admin, "mallory")) == 1
    # The CSRF token of an older session is no token for the new one.
    stale = {"X-CSRF-Token": csrfs[0]}
    assert_error(
        client.post("/api/projects", {"name": "p"}, headers=stale, status=403), 403, "csrf_failed"
    )
    assert tenant_rows(admin, "acme", Project) == []


# --- forged and tampered cookies ------------------------------------------------------


def _flip(text_value):
    return text_value[:-1] + ("A" if text_value[-1] != "A" else "B")


def _latin1(text_value):
    """How a UTF-8 header value reaches a WSGI app (PEP 3333: bytes as latin-1)."""
    return text_value.encode("utf-8").decode("latin-1")


FORGERIES = {
    "empty": lambda real, other: "",
    "one char": lambda real, other: "x",
    "null": lambda real, other: "null",
    "just a dot": lambda real, other: ".",
    "dots": lambda real, other: "a.b.c",
    "random": lambda real, other: secrets.token_urlsafe(32),
    "random token and signature": lambda real, other: (
        f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"
    ),
    "token without signature": lambda real, other: real.rpartition(".")[0],
    "token with empty signature": lambda real, other: real.rpartition(".")[0] + ".",
    "signature alone": lambda real, other: real.rpartition(".")[2],
    "wrong signature": lambda real, other: _flip(real),
    "token changed, signature kept": lambda real, other: (
        _flip(real.rpartition(".")[0]) + "." + real.rpartition(".")[2]
    ),
    "signature of another token": lambda real, other: (
        real.rpartition(".")[0] + "." + other.rpartition(".")[2]
    ),
    "signed with another secret": lambda real, other: tokens.sign_token(
        "another-secret-0123456789abcdefghijklmnop", real.rpartition(".")[0]
    ),
    # Signed with the real secret, but no such session (a guessed token).
    "validly signed unknown token": lambda real, other: tokens.sign_token(
        SECRET, secrets.token_urlsafe(32)
    ),
    # What the catalog stores (a stolen table copy), signed: opens nothing.
    "stored hash as token": lambda real, other: tokens.sign_token(
        SECRET, tokens.token_hash(real.rpartition(".")[0])
    ),
    "real cookie twice": lambda real, other: real + real,
    "real cookie with suffix": lambda real, other: real + "x",
    "real cookie with prefix": lambda real, other: "x" + real,
    "very long": lambda real, other: "a" * 8000,
    "very long, real prefix": lambda real, other: real + "." + "a" * 8000,
    "very long signature": lambda real, other: real.rpartition(".")[0] + "." + "A" * 5000,
    "quoted": lambda real, other: '"' + _flip(real) + '"',
    "non-ascii": lambda real, other: _latin1("tökén.sïgnätürë☃"),
    "non-ascii token, real signature": lambda real, other: (
        _latin1("é" + real.rpartition(".")[0][1:]) + "." + real.rpartition(".")[2]
    ),
    "nul byte": lambda real, other: real.rpartition(".")[0] + "\x00." + real.rpartition(".")[2],
    "percent-encoded": lambda real, other: "%00%ff%2e%2e",
    "sql": lambda real, other: "' OR '1'='1",
    "backslashes": lambda real, other: "\\\\..\\\\",
    "control characters": lambda real, other: "\x01\x02\x7f.\x1b[31m",
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_cookie_is_401_never_500(new_client, make_user, app, admin, forge):
    make_user("mallory", acme="editor")
    make_user("eve", acme="editor")
    mallory, eve = new_client(), new_client()
    mallory.login("mallory")
    eve.login("eve")
    real, other = mallory.test_app.cookies[COOKIE], eve.test_app.cookies[COOKIE]
    forged = forge(real, other)
    assert forged != real
    before = world(admin)
    csrf = {"X-CSRF-Token": mallory.csrf}
    for method, path, body in (
        ("GET", "/api/me", None),
        ("GET", "/api/projects", None),
        ("POST", "/api/projects", b'{"name": "forged"}'),
        ("PUT", "/api/session/tenant", b'{"tenant": "acme"}'),
        ("POST", "/api/logout", None),
    ):
        response = send(app, method, path, cookie=f"{COOKIE}={forged}", body=body, headers=csrf)
        assert_error(response, 401, "unauthenticated")
    assert world(admin) == before
    mallory.get("/api/me")  # the real session is untouched


@pytest.mark.parametrize(
    "cookie_header",
    [
        "",
        ";",
        "=",
        f"{COOKIE}",
        f"{COOKIE}=",
        f"{COOKIE}=;",
        "Session={real}",
        "SESSION={real}",
        f"{COOKIE}2={{real}}",
        f"x{COOKIE}={{real}}",
        " ={real}",
        f"{COOKIE}={{real-with-semicolon}}",
        "a=b; c=d; e",
        "a" * 20000,
        _latin1(f"{COOKIE}=☃"),
    ],
)
def test_odd_cookie_headers_are_401_never_500(client, make_user, app, cookie_header):
    make_user("mallory", acme="editor")
    client.login("mallory")
    real = client.test_app.cookies[COOKIE]
    header = cookie_header.replace("{real-with-semicolon}", real.replace(".", ";"))
    header = header.replace("{real}", real)
    response = send(app, "GET", "/api/me", cookie=header)
    assert_error(response, 401, "unauthenticated")


# --- CSRF -----------------------------------------------------------------------------


@pytest.fixture
def csrf_setup(new_client, make_user):
    """carol (acme and globex editor, acme chosen) with a project and a task; another
    session of hers and a session of another user, for their tokens."""
    make_user("carol", acme="editor", globex="editor")
    make_user("eve", acme="editor")
    carol, carol_elsewhere, eve = new_client(), new_client(), new_client()
    carol.login("carol", tenant="acme")
    carol_elsewhere.login("carol", tenant="acme")
    eve.login("eve")
    project = create_project(carol, "Carol's")
    task = create_task(carol, project, "Carol's task")
    return {
        "client": carol,
        "project": project,
        "task": task,
        "tokens": {
            "another session of the same user": carol_elsewhere.csrf,
            "another user's session": eve.csrf,
        },
    }


BAD_CSRF = [
    "missing",
    "empty",
    "wrong",
    "another session of the same user",
    "another user's session",
    "own token upper-cased",
    "own token truncated",
    "own token with a trailing space",
    "own token with a trailing character",
    "own cookie value",
    "own cookie signature",
    "own token twice",
    "non-ascii",
]


def _bad_token(kind, setup):
    own = setup["client"].csrf
    cookie = setup["client"].test_app.cookies[COOKIE]
    return {
        "missing": None,
        "empty": "",
        "wrong": "x" * len(own),
        "own token upper-cased": own.upper() if own.upper() != own else own.lower(),
        "own token truncated": own[:-1],
        "own token with a trailing space": own + " ",
        "own token with a trailing character": own + "A",
        "own cookie value": cookie,
        "own cookie signature": cookie.rpartition(".")[2],
        "own token twice": f"{own}, {own}",
        "non-ascii": _latin1("tökén"),
        **setup["tokens"],
    }[kind]


def unsafe_requests(project, task):
    project_url, task_url = f"/api/projects/{project['id']}", f"/api/tasks/{task['id']}"
    return [
        ("POST", "/api/projects", {"name": "csrf"}),
        ("PUT", project_url, {"name": "csrf", "description": "csrf"}),
        ("PATCH", project_url, {"name": "csrf"}),
        ("DELETE", project_url, None),
        ("POST", "/api/tasks", {"project_id": project["id"], "title": "csrf"}),
        ("PUT", task_url, full_task(project["id"], "csrf")),
        ("PATCH", task_url, {"title": "csrf"}),
        ("DELETE", task_url, None),
        ("PUT", "/api/session/tenant", {"tenant": "globex"}),
        ("POST", "/api/logout", None),
    ]


@pytest.mark.parametrize("kind", BAD_CSRF)
def test_unsafe_method_without_the_right_csrf_token_is_refused(csrf_setup, admin, kind):
    carol = csrf_setup["client"]
    token = _bad_token(kind, csrf_setup)
    assert token != carol.csrf
    headers = {} if token is None else {"X-CSRF-Token": token}
    before = world(admin)
    for method, url, body in unsafe_requests(csrf_setup["project"], csrf_setup["task"]):
        response = carol.test_app.request(
            url,
            method=method,
            body=json.dumps(body).encode() if body is not None else b"",
            headers={**headers, "Content-Type": "application/json"} if body else headers,
            expect_errors=True,
        )
        assert_error(response, 403, "csrf_failed")
    # Nothing written anywhere: not the data, not the tenant choice, not the logout.
    assert world(admin) == before
    me = carol.get("/api/me").json
    assert me["tenant"]["name"] == "acme"


def test_csrf_token_in_the_query_string_or_a_cookie_does_not_count(csrf_setup, admin):
    carol = csrf_setup["client"]
    before = world(admin)
    response = carol.test_app.post_json(
        f"/api/projects?csrf_token={carol.csrf}&X-CSRF-Token={carol.csrf}",
        {"name": "p"},
        expect_errors=True,
    )
    assert_error(response, 403, "csrf_failed")
    carol.test_app.set_cookie("X-CSRF-Token", carol.csrf)
    carol.test_app.set_cookie("csrf_token", carol.csrf)
    response = carol.test_app.post_json("/api/projects", {"name": "p"}, expect_errors=True)
    assert_error(response, 403, "csrf_failed")
    assert world(admin) == before


def test_the_right_csrf_token_works_in_any_header_case(csrf_setup):
    carol = csrf_setup["client"]
    response = carol.test_app.post_json(
        "/api/projects", {"name": "ok"}, headers={"x-csrf-token": carol.csrf}
    )
    assert response.status_int == 201


# --- login throttling (the clock fixture; no sleeps) ------------------------------------


def fail_logins(client, username, times, password="wrong password"):
    for _ in range(times):
        response = client.login(username, password, status=401)
        assert_error(response, 401, "unauthenticated")


def assert_throttled(response, max_retry_after=900):
    assert_error(response, 429, "too_many_requests")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= max_retry_after
    assert "Set-Cookie" not in response.headers
    return int(retry_after)


def test_sixth_login_is_throttled_even_with_the_right_password(client, make_user, admin, clock):
    make_user("alice", acme="admin")
    fail_logins(client, "alice", 5)
    with_right = client.login("alice", status=429)
    retry_after = assert_throttled(with_right)
    assert retry_after == 900  # all five failures happened at this very second
    with_wrong = client.login("alice", "wrong password", status=429)
    assert assert_throttled(with_wrong) == retry_after
    # The answer says nothing about the password.
    assert with_right.body == with_wrong.body
    assert sessions_of(admin, "alice") == []
    # One second short of Retry-After: still throttled; at Retry-After: let in.
    clock.advance(retry_after - 1)
    assert assert_throttled(client.login("alice", status=429)) == 1
    clock.advance(1)
    client.login("alice")
    assert failures(admin, "alice") == 0


def test_throttled_attempts_do_not_extend_the_lockout(client, make_user, admin, clock):
    make_user("alice", acme="admin")
    fail_logins(client, "alice", 5)
    for _ in range(3):
        clock.advance(100)
        assert_throttled(client.login("alice", status=429))
    clock.advance(599)  # 899 s after the failures: an attacker keeps hammering
    for password in ("wrong password", PASSWORD) * 5:
        assert assert_throttled(client.login("alice", password, status=429)) == 1
    clock.advance(1)
    client.login("alice")  # the window has passed: the 429s counted for nothing


def test_after_the_window_the_right_password_works_and_clears_the_count(
    client, make_user, admin, clock
):
    make_user("alice", acme="admin")
    fail_logins(client, "alice", 5)
    assert_throttled(client.login("alice", status=429))
    clock.advance(901)
    client.login("alice")
    assert failures(admin, "alice") == 0
    # A clean slate: four more failures do not throttle.
    fail_logins(client, "alice", 4)
    client.login("alice")


def test_throttling_counts_per_username(new_client, make_user, admin, clock):
    make_user("alice", acme="admin")
    make_user("bob", acme="editor")
    attacker = new_client()
    fail_logins(attacker, "alice", 5)
    assert_throttled(attacker.login("alice", status=429))
    # Another username, from the same client, is not affected...
    new_client().login("bob")
    attacker.login("bob")
    # ...and unknown usernames are counted (and throttled) all the same.
    fail_logins(attacker, "ghost", 5, password=PASSWORD)
    assert_throttled(attacker.login("ghost", status=429))
    fail_logins(attacker, "ghost2", 4)
    assert_error(attacker.login("ghost2", status=401), 401, "unauthenticated")
    assert failures(admin, "ghost") == 5 and failures(admin, "bob") == 0
    # Usernames are not folded: another spelling is another (unknown) username.
    assert_error(attacker.login("Alice", status=401), 401, "unauthenticated")


def test_a_success_before_the_limit_resets_the_count(client, make_user, admin, clock):
    make_user("alice", acme="admin")
    fail_logins(client, "alice", 4)
    assert failures(admin, "alice") == 4
    client.login("alice")
    assert failures(admin, "alice") == 0
    fail_logins(client, "alice", 4)
    client.login("alice")  # 8 failures in all, never 5 in a row


def test_the_window_slides_and_retry_after_is_exact(client, make_user, admin, clock):
    make_user("alice", acme="admin")
    for _ in range(5):  # failures at t = 0, 100, 200, 300, 400
        fail_logins(client, "alice", 1)
        clock.advance(100)
    clock.advance(-100)
    # At t = 400: throttled until the first failure leaves the window (t = 900).
    assert assert_throttled(client.login("alice", status=429)) == 500
    clock.advance(499)
    assert assert_throttled(client.login("alice", status=429)) == 1
    clock.advance(1)
    # At t = 900 four failures remain in the window: one more throttles again.
    fail_logins(client, "alice", 1)
    assert assert_throttled(client.login("alice", status=429)) == 100


def test_failures_outside_the_window_do_not_count(client, make_user, clock):
    make_user("alice", acme="admin")
    fail_logins(client, "alice", 4)
    clock.advance(901)
    fail_logins(client, "alice", 4)
    client.login("alice")


@pytest.fixture
def strict_app(settings, admin):
    """An app of its own whose throttle allows 2 failures per 60 seconds."""
    strict = make_app(
        dict(
            settings,
            **{"tenantapp.login_max_attempts": "2", "tenantapp.login_window": "60"},
        )
    )
    strict.registry.clock = Clock()
    yield strict
    strict.registry.getUtility(ITenantDirectory).dispose_all()
    strict.registry.getUtility(IDBFactory, "catalog").dispose()


def test_throttle_settings_are_honoured(strict_app, make_user, admin):
    from conftest import Client

    make_user("alice", acme="admin")
    client = Client(strict_app)
    clock = strict_app.registry.clock
    fail_logins(client, "alice", 2)
    assert assert_throttled(client.login("alice", status=429), max_retry_after=60) == 60
    clock.advance(59)
    assert_throttled(client.login("alice", status=429), max_retry_after=60)
    clock.advance(1)
    client.login("alice")
    assert failures(admin, "alice") == 0


def test_throttled_answers_are_identical_for_every_kind_of_username(client, make_user, clock):
    """No enumeration through the throttle: a known user, an unknown one and a
    disabled one get the same 401s, then the same 429 with the same Retry-After."""
    make_user("alice", acme="admin")
    make_user("dis", acme="admin", disabled=True)
    answers = {}
    for username, password in (
        ("alice", "wrong password"),
        ("nobody", "wrong password"),
        ("dis", PASSWORD),
    ):
        first = client.login(username, password, status=401)
        fail_logins(client, username, 4, password=password)
        throttled = client.login(username, password, status=429)
        assert_throttled(throttled)
        answers[username] = (
            first.body,
            throttled.body,
            throttled.headers["Retry-After"],
            "Set-Cookie" in first.headers,
        )
    assert len(set(answers.values())) == 1, answers


# --- session expiry (the clock fixture) ---------------------------------------------------


def test_idle_session_expires(clock, editor, admin):
    clock.advance(1799)
    editor.get("/api/me")  # used: the idle time starts again
    clock.advance(1799)
    editor.get("/api/projects")
    clock.advance(1861)  # the idle timeout, plus the touch interval "last used" may lag
    before = world(admin)
    assert_error(editor.get("/api/me", status=401), 401, "unauthenticated")
    assert_error(editor.get("/api/projects", status=401), 401, "unauthenticated")
    assert_error(editor.post("/api/projects", {"name": "late"}, status=401), 401, "unauthenticated")
    # Nothing written (an expired session may be cleaned up, never extended).
    after = world(admin)
    assert after.pop("catalog.login_sessions") in ([], before.pop("catalog.login_sessions"))
    assert after == before


def test_session_dies_at_its_maximum_age_however_busy(clock, editor, admin):
    for _ in range(43):  # used every 1000 s, up to 43000 s after login
        clock.advance(1000)
        editor.get("/api/me")
    clock.advance(201)  # 43201 s after login, 201 s after the last use
    assert_error(editor.get("/api/me", status=401), 401, "unauthenticated")
    assert_error(editor.get("/api/projects", status=401), 401, "unauthenticated")
    assert_error(editor.post("/api/projects", {"name": "late"}, status=401), 401, "unauthenticated")
    assert tenant_rows(admin, "acme", Project) == []


def test_last_used_is_written_at_most_once_a_minute(clock, editor, admin):
    logged_in_at = clock.now
    assert last_used(admin, "erin") == logged_in_at
    clock.advance(30)
    editor.get("/api/me")
    clock.advance(29)
    editor.get("/api/projects")
    assert last_used(admin, "erin") == logged_in_at  # two requests within 60 s
    clock.advance(2)
    editor.get("/api/me")
    touched = clock.now
    assert last_used(admin, "erin") == touched  # 61 s after the last write
    # A writing request records the use in its own transaction, with the same rule.
    clock.advance(30)
    editor.post("/api/projects", {"name": "a"}, status=201)
    assert last_used(admin, "erin") == touched
    clock.advance(31)
    editor.post("/api/projects", {"name": "b"}, status=201)
    assert last_used(admin, "erin") == clock.now


# --- SQL-looking strings --------------------------------------------------------------------

NASTY = [
    "'; DROP TABLE tasks; --",
    "Robert'); DROP TABLE projects; --",
    "' UNION SELECT username, password_hash FROM users --",
    "1 OR 1=1",
    "' OR '1'='1",
    '" OR ""="',
    "%",
    "_",
    "%_%",
    "\\",
    "\\%",
    "/",
    "/%",
    "a'b\"c`d",
    "$1 ? :name %(name)s {name}",
    "NULL",
    "*",
    "--",
    "/* comment */",
    "Ünïcødé ☃ 日本語 👩‍💻",
    "\u202eevil\u202c",
    "zero\u200bwidth",
    "ǅemo ß ﬁ",
    "<script>alert(1)</script>",
]


def test_sql_looking_strings_are_stored_and_returned_verbatim(editor, admin):
    catalog_before = {k: v for k, v in world(admin).items() if k.startswith("catalog.")}
    project = create_project(editor, "Home")
    tasks = {}
    for value in NASTY:
        created = create_project(editor, value, description=value)
        assert (created["name"], created["description"]) == (value, value)
        assert editor.get(f"/api/projects/{created['id']}").json == created
        task = create_task(editor, project, value, assignee=value)
        assert (task["title"], task["assignee"]) == (value, value)
        assert editor.get(f"/api/tasks/{task['id']}").json == task
        tasks[value] = task
    # PATCH and PUT carry them verbatim as well.
    patched = editor.patch(f"/api/projects/{project['id']}", {"description": NASTY[0]}).json
    assert patched["description"] == NASTY[0]
    last = tasks[NASTY[-1]]
    put = dict(full_task(project["id"], NASTY[0]), assignee=NASTY[1], status="in_progress")
    assert editor.put(f"/api/tasks/{last['id']}", put).json["title"] == NASTY[0]
    tasks[NASTY[-1]] = editor.get(f"/api/tasks/{last['id']}").json

    stored_projects = {p.id: p for p in tenant_rows(admin, "acme", Project)}
    assert sorted((p.name, p.description) for p in stored_projects.values()) == sorted(
        [("Home", NASTY[0])] + [(v, v) for v in NASTY]
    )
    stored_tasks = {t.id: t for t in tenant_rows(admin, "acme", Task)}
    for task in tasks.values():
        row = stored_tasks[task["id"]]
        assert (row.title, row.assignee) == (task["title"], task["assignee"])
    # Every table is still there, and nothing else moved.
    assert len(stored_tasks) == len(NASTY)
    assert tenant_rows(admin, "globex", Project) == [] == tenant_rows(admin, "globex", Task)
    assert {k: v for k, v in world(admin).items() if k.startswith("catalog.")} == catalog_before


def test_sql_looking_filters_return_only_honest_matches(editor, admin):
    project = create_project(editor, "Home")
    tasks = [create_task(editor, project, value, assignee=value) for value in NASTY]
    tasks.append(create_task(editor, project, "plain task", assignee="bob"))

    def ids(params):
        page = editor.get("/api/tasks", params={"limit": "200", **params}).json
        assert page["next"] is None
        return [t["id"] for t in page["items"]]

    for value in NASTY:
        # assignee: exact, nothing else.
        assert ids({"assignee": value}) == [t["id"] for t in tasks if t["assignee"] == value]
        # q: a case-insensitive substring of the title, with nothing special in it.
        honest = [t["id"] for t in tasks if value.casefold() in t["title"].casefold()]
        assert ids({"q": value}) == honest, value
        # status and project_id are no free text: 400, never a query.
        for name in ("status", "project_id"):
            response = editor.get("/api/tasks", params={name: value}, status=400)
            assert_error(response, 400, "bad_request")
    assert ids({"q": "%", "assignee": "%"}) == [tasks[NASTY.index("%")]["id"]]
    assert len(ids({})) == len(NASTY) + 1
    assert len(tenant_rows(admin, "acme", Task)) == len(NASTY) + 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/projects/1%20OR%201=1",
        "/api/projects/1;DROP%20TABLE%20projects",
        "/api/projects/1'--",
        "/api/tasks/1%27%20OR%20%271%27=%271",
        "/api/projects/-1",
        "/api/projects/0x1",
        "/api/projects/1.0",
        "/api/projects/1/../2",
    ],
)
def test_sql_looking_ids_in_the_url(editor, admin, path):
    project = create_project(editor, "Home")
    before = world(admin)
    for method in ("GET", "PATCH", "DELETE"):
        body = b"{}" if method == "PATCH" else None
        assert_error(send_as(editor, method, path, body), 404, "not_found")
    assert world(admin) == before
    assert editor.get(f"/api/projects/{project['id']}").json == project


def send_as(client, method, path, body=None):
    headers = {"X-CSRF-Token": client.csrf}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return client.test_app.request(
        path, method=method, body=body or b"", headers=headers, expect_errors=True
    )


@pytest.mark.parametrize(
    "username",
    [
        "' OR '1'='1",
        "admin'--",
        "erin' --",
        "erin'; --",
        "%",
        "_",
        "*",
        "ERIN",
        "Erin",
        "erin ",
        " erin",
        "erin\u200b",
        "\uff45\uff52\uff49\uff4e",  # fullwidth
        "\u0435rin",  # Cyrillic e
    ],
)
def test_odd_usernames_log_nobody_in(client, make_user, admin, username):
    make_user("erin", acme="editor")
    response = client.login(username, PASSWORD, status=401)
    assert_error(response, 401, "unauthenticated")
    assert "Set-Cookie" not in response.headers
    assert failures(admin, username) == 1 and failures(admin, "erin") == 0


# --- path tricks in tenant names --------------------------------------------------------------

TRICKY_TENANTS = [
    "../acme",
    "acme/../globex",
    "globex/../acme",
    "./acme",
    "acme/",
    "/acme",
    "ACME",
    "Acme",
    "acme;",
    "acme; DROP DATABASE catalog",
    "acme'--",
    "acme\u0000",
    "acme\n",
    "acme\r\n",
    " acme",
    "acme ",
    "acme\t",
    "acme%00",
    "acme\\",
    "..\\acme",
    "acme.sqlite",
    "tenant_acme",
    "acme\u200b",
    "\uff41\uff43\uff4d\uff45",  # fullwidth: NFKC would make it "acme"
    "\u0430cme",  # Cyrillic a
    "acm\u0435",  # Cyrillic e
    "",
    "a" * 10000,
]


def test_tricky_tenant_names_via_the_api_are_forbidden(client, make_user, admin):
    make_user("tina", acme="admin", globex="editor")
    assert client.login("tina").json["tenant"] is None
    reference = client.put("/api/session/tenant", {"tenant": "nosuchtenant"}, status=403).body
    before = world(admin)
    for tenant in TRICKY_TENANTS:
        response = client.put("/api/session/tenant", {"tenant": tenant}, status=403)
        assert_error(response, 403, "forbidden")
        assert response.body == reference, tenant
        assert client.get("/api/me").json["tenant"] is None
    assert world(admin) == before


def test_tricky_tenant_names_at_login_are_forbidden(new_client, make_user, admin):
    make_user("tina", acme="admin", globex="editor")
    before = world(admin)
    for tenant in TRICKY_TENANTS:
        response = new_client().login("tina", tenant=tenant, status=403)
        assert_error(response, 403, "forbidden")
        assert "Set-Cookie" not in response.headers
    assert world(admin) == before


def _database_snapshot(backend, db_urls, admin):
    if backend == "sqlite":
        template = db_urls["template"].removeprefix("sqlite:///")
        root = os.path.dirname(os.path.dirname(template))  # holds the catalog too
        return sorted(
            os.path.relpath(os.path.join(folder, name), root)
            for folder, _dirs, names in os.walk(root)
            for name in names
            if not name.endswith(("-wal", "-shm", "-journal"))  # come and go with connections
        )
    with admin.catalog.engine.connect() as connection:
        return sorted(connection.execute(text("SELECT datname FROM pg_database")).scalars())


def _catalog_tenants(admin):
    with admin.catalog.transaction(write=False) as db:
        return sorted(db.execute(select(Tenant.name)).scalars())


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "x/../acme",
        "../../etc/passwd",
        "x/y",
        "./x",
        "x\\..\\y",
        "ACME",
        "Xyz",
        "acme;",
        "x; DROP DATABASE catalog",
        "x'--",
        'x"y',
        "a\x00b",
        "xyz\n",
        " xyz",
        "xyz ",
        "x.sqlite",
        "x%00",
        "\uff58\uff59\uff5a",
        "\u0445yz",
        "",
        "a",
        "1abc",
        "_abc",
        "x" * 41,
    ],
)
def test_tricky_tenant_names_via_the_cli_create_nothing(admin, backend, db_urls, name):
    tenants_before = _catalog_tenants(admin)
    databases_before = _database_snapshot(backend, db_urls, admin)
    with pytest.raises(CommandError):
        admin.tenant_create(name)
    assert _catalog_tenants(admin) == tenants_before
    assert _database_snapshot(backend, db_urls, admin) == databases_before


# --- oversized and malformed bodies ------------------------------------------------------------


def padded(body, size):
    """``body`` (a JSON object) padded with trailing whitespace to exactly ``size`` bytes."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_body_of_exactly_one_mib_is_read_one_more_byte_is_413(editor, admin, new_client):
    project = create_project(editor, "Edge")
    url = f"/api/projects/{project['id']}"
    # Exactly 1 MiB of valid JSON: accepted.
    response = editor.raw("POST", "/api/projects", padded(b'{"name": "limit"}', MIB))
    assert response.status_int == 201, response.body
    response = editor.raw("PATCH", url, padded(b'{"description": "limit"}', MIB))
    assert response.status_int == 200, response.body
    before = world(admin)
    # One byte more: 413, whatever the route, and nothing written.
    for method, path, body in (
        ("POST", "/api/projects", b'{"name": "over"}'),
        ("PATCH", url, b'{"description": "over"}'),
        ("PUT", url, b'{"name": "over", "description": ""}'),
        ("POST", "/api/tasks", b'{"project_id": %d, "title": "over"}' % project["id"]),
        ("PUT", "/api/session/tenant", b'{"tenant": "acme"}'),
    ):
        response = editor.raw(method, path, padded(body, MIB + 1))
        assert_error(response, 413, "payload_too_large")
    assert world(admin) == before
    # The login route has the same limit, before it looks at anything.
    stranger = new_client()
    response = stranger.raw("POST", "/api/login", padded(b'{"username": "erin"}', MIB + 1))
    assert_error(response, 413, "payload_too_large")


def test_login_body_of_exactly_one_mib_is_read(client, make_user):
    make_user("alice", acme="admin")
    body = b'{"username": "alice", "password": "%s"}' % PASSWORD.encode()
    assert client.raw("POST", "/api/login", padded(body, MIB)).status_int == 200


def _cookie_and_csrf(client):
    return f"{COOKIE}={client.test_app.cookies[COOKIE]}", {"X-CSRF-Token": client.csrf}


def test_content_length_that_lies(editor, app, admin):
    cookie, csrf = _cookie_and_csrf(editor)
    before = world(admin)
    big = padded(b'{"name": "smuggled"}', 2 * MIB)
    # Declared over the limit, whatever the body: 413 before anything is read.
    response = send(
        app,
        "POST",
        "/api/projects",
        cookie,
        b'{"name": "p"}',
        {**csrf, "Content-Length": "2000000"},
    )
    assert_error(response, 413, "payload_too_large")
    # Declared smaller than the body: only the declared bytes are the body; the
    # rest is never read as part of it (here: a truncated object, 400).
    response = send(app, "POST", "/api/projects", cookie, big, {**csrf, "Content-Length": "10"})
    assert_error(response, 400, "invalid_json")
    response = send(app, "POST", "/api/projects", cookie, big, {**csrf, "Content-Length": "0"})
    assert_error(response, 400, "invalid_json")
    assert world(admin) == before


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " ", "99999999999999999999999"])
def test_malformed_content_length_is_never_500(editor, app, admin, length):
    cookie, csrf = _cookie_and_csrf(editor)
    before = world(admin)
    response = send(
        app, "POST", "/api/projects", cookie, b'{"name": "p"}', {**csrf, "Content-Length": length}
    )
    assert response.status_int < 500, (response.status, response.body[:300])
    assert response.status_int != 201
    assert response.content_type == "application/json"
    assert world(admin) == before


def nested(depth, leaf=b"1"):
    return b"[" * depth + leaf + b"]" * depth


@pytest.mark.parametrize(
    "body,status,fields",
    [
        (b'{"name": "p", "description": ' + nested(1000) + b"}", 422, {"description"}),
        (b'{"name": ' + nested(1000) + b"}", 422, {"name"}),
        (b'{"name": "p", "extra": ' + nested(1000) + b"}", 422, {"extra"}),
        (b'{"name": "p", "extra": ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}", 422, {"extra"}),
        (b'{"name": "p", "description": ' + nested(5000) + b"}", 400, None),
        (b'{"name": "p", "description": ' + b"[" * 5000 + b"}", 400, None),
    ],
    ids=[
        "deep list in a field",
        "deep list as name",
        "deep unknown field",
        "deep objects",
        "deeper than the parser allows",
        "deep and unclosed",
    ],
)
def test_deeply_nested_json_is_refused_never_500(editor, admin, body, status, fields):
    before = world(admin)
    response = editor.raw("POST", "/api/projects", body)
    if status == 400:
        assert_error(response, 400, "invalid_json")
    else:
        assert set(assert_error(response, 422, "validation_failed")["fields"]) == fields
    assert world(admin) == before


def test_deeply_nested_json_on_login_and_tenant_choice(editor, new_client, admin):
    before = world(admin)
    deep = b'{"tenant": ' + nested(1000, b'"acme"') + b"}"
    error = assert_error(editor.raw("PUT", "/api/session/tenant", deep), 422, "validation_failed")
    assert set(error["fields"]) == {"tenant"}
    deep = b'{"username": ' + nested(1000, b'"erin"') + b', "password": "x"}'
    stranger = new_client()
    error = assert_error(stranger.raw("POST", "/api/login", deep), 422, "validation_failed")
    assert set(error["fields"]) == {"username"}
    assert world(admin) == before


@pytest.mark.parametrize(
    "url,body",
    [
        ("/api/projects", b'{"name": "", "name": "sneaky"}'),
        ("/api/projects", b'{"name": "first", "name": "second"}'),
        ("/api/projects", b'{"name": "p", "description": "x", "description": "y"}'),
        ("/api/tasks", b'{"project_id": 1, "title": "a", "title": "b"}'),
        ("/api/session/tenant", b'{"tenant": "globex", "tenant": "acme"}'),
    ],
    ids=["empty then valid name", "two names", "two descriptions", "two titles", "two tenants"],
)
def test_json_with_duplicate_keys_is_refused(editor, admin, url, body):
    """A body whose meaning depends on the parser (first or last duplicate wins:
    RFC 8259 leaves it open, I-JSON forbids it) is not accepted: 400, nothing written."""
    if url == "/api/tasks":
        project = create_project(editor, "Home")
        body = body.replace(b'"project_id": 1', b'"project_id": %d' % project["id"])
    method = "PUT" if url == "/api/session/tenant" else "POST"
    before = world(admin)
    response = editor.raw(method, url, body)
    assert response.status_int < 500, response.body
    assert_error(response, 400, "invalid_json")
    assert world(admin) == before


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/api/projects", {"name": "a\u0000b"}, "name"),
        ("/api/projects", {"name": "\u0000"}, "name"),
        ("/api/projects", {"name": "p", "description": "d\u0000"}, "description"),
        ("/api/tasks", {"title": "t\u0000"}, "title"),
        ("/api/tasks", {"title": "t", "assignee": "\u0000bob"}, "assignee"),
        ("PATCH project", {"name": "x\u0000"}, "name"),
        ("PATCH project", {"description": "\u0000"}, "description"),
        ("PATCH task", {"title": "\u0000"}, "title"),
        ("PATCH task", {"assignee": "bob\u0000"}, "assignee"),
    ],
)
def test_nul_bytes_in_strings_are_422(editor, admin, path, body, field):
    project = create_project(editor, "Home")
    task = create_task(editor, project, "Task")
    before = world(admin)
    if path == "/api/tasks":
        body = {"project_id": project["id"], **body}
        response = editor.post(path, body, status=422)
    elif path == "PATCH project":
        response = editor.patch(f"/api/projects/{project['id']}", body, status=422)
    elif path == "PATCH task":
        response = editor.patch(f"/api/tasks/{task['id']}", body, status=422)
    else:
        response = editor.post(path, body, status=422)
    assert set(assert_error(response, 422, "validation_failed")["fields"]) == {field}
    assert world(admin) == before


def test_nul_bytes_in_login_fields(client, make_user, admin):
    make_user("alice", acme="admin")
    before = world(admin)
    for body in (
        login_body("alice\u0000"),
        login_body("alice", PASSWORD + "\u0000"),
        login_body("alice", "\u0000" + PASSWORD),
    ):
        response = client.test_app.post_json("/api/login", body, status=422)
        assert_error(response, 422, "validation_failed")
    assert world(admin) == before
    response = client.login("alice", tenant="acme\u0000", status=403)
    assert_error(response, 403, "forbidden")


INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"caf\xe9"]


@pytest.mark.parametrize("bad", INVALID_UTF8, ids=lambda b: b.hex())
def test_invalid_utf8_is_400_everywhere(editor, new_client, admin, bad):
    project = create_project(editor, "Home")
    task = create_task(editor, project, "Task")
    before = world(admin)
    for method, url, body in (
        ("POST", "/api/projects", b'{"name": "' + bad + b'"}'),
        ("PATCH", f"/api/projects/{project['id']}", b'{"description": "' + bad + b'"}'),
        ("PUT", f"/api/projects/{project['id']}", b'{"name": "' + bad + b'", "description": ""}'),
        ("POST", "/api/tasks", b'{"project_id": %d, "title": "' % project["id"] + bad + b'"}'),
        ("PATCH", f"/api/tasks/{task['id']}", b'{"assignee": "' + bad + b'"}'),
        ("PUT", "/api/session/tenant", b'{"tenant": "' + bad + b'"}'),
    ):
        assert_error(editor.raw(method, url, body), 400, "invalid_json")
    body = b'{"username": "erin", "password": "' + bad + b'"}'
    assert_error(new_client().raw("POST", "/api/login", body), 400, "invalid_json")
    assert world(admin) == before


@pytest.mark.parametrize(
    "body,field",
    [
        ({"project_id": 2**31}, "project_id"),
        ({"project_id": 2**63}, "project_id"),
        ({"project_id": -(2**63)}, "project_id"),
        ({"project_id": 0}, "project_id"),
        ({"project_id": 1e308}, "project_id"),
        ({"project_id": 1.0}, "project_id"),
        ({"title": 10**30}, "title"),
        ({"assignee": 1e-320}, "assignee"),
        ({"status": 1}, "status"),
        ({"due_date": 99999999999}, "due_date"),
    ],
)
def test_huge_and_odd_numbers_in_bodies_are_422(editor, admin, body, field):
    project = create_project(editor, "Home")
    task = create_task(editor, project, "Task")
    before = world(admin)
    response = editor.patch(f"/api/tasks/{task['id']}", body, status=422)
    assert set(assert_error(response, 422, "validation_failed")["fields"]) == {field}
    full = {"project_id": project["id"], "title": "t", **body}
    response = editor.post("/api/tasks", full, status=422)
    assert set(assert_error(response, 422, "validation_failed")["fields"]) == {field}
    assert world(admin) == before


def test_huge_numbers_in_urls_and_queries(editor, admin):
    project = create_project(editor, "Home")
    create_task(editor, project, "Task")
    before = world(admin)
    for path in (
        "/api/projects/2147483648",
        "/api/projects/9223372036854775808",
        "/api/projects/" + "9" * 400,
        "/api/tasks/" + "9" * 400,
        "/api/projects/" + "9" * 400 + "/tasks",
        "/api/projects/0",
        "/api/projects/" + "0" * 50 + str(project["id"] + 10**6),
    ):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            body = b"{}" if method in ("PATCH", "PUT") else None
            if path.endswith("/tasks") and method != "GET":
                continue
            assert_error(send_as(editor, method, path, body), 404, "not_found")
    for params in (
        {"project_id": "9" * 400},
        {"project_id": "2147483648"},
        {"project_id": "0"},
        {"limit": "9" * 400},
        {"limit": "1e2"},
        {"after": encode_cursor(10**30)},
        {"after": "9" * 400},
    ):
        response = editor.get("/api/tasks", params=params, status=400)
        assert_error(response, 400, "bad_request")
    # The largest cursor the format allows is honest: nothing after it.
    page = editor.get("/api/tasks", params={"after": encode_cursor(10**18 - 1)}).json
    assert page == {"items": [], "next": None}
    stale = {"If-Match": '"' + "9" * 400 + '"'}
    response = editor.patch(
        f"/api/projects/{project['id']}", {"name": "x"}, headers=stale, status=412
    )
    assert_error(response, 412, "precondition_failed")
    assert world(admin) == before


# --- roles ------------------------------------------------------------------------------------


def write_requests(project, task):
    project_url, task_url = f"/api/projects/{project['id']}", f"/api/tasks/{task['id']}"
    return [
        ("POST", "/api/projects", {"name": "viewer was here"}),
        ("PUT", project_url, {"name": "viewer", "description": ""}),
        ("PATCH", project_url, {"name": "viewer"}),
        ("PATCH", project_url, {}),
        ("DELETE", project_url, None),
        ("POST", "/api/tasks", {"project_id": project["id"], "title": "viewer"}),
        ("PUT", task_url, full_task(project["id"], "viewer")),
        ("PATCH", task_url, {"status": "done"}),
        ("PATCH", task_url, {}),
        ("DELETE", task_url, None),
        # 403 comes before 404 for an object and before 422.
        ("DELETE", "/api/projects/2147483647", None),
        ("PATCH", "/api/tasks/2147483647", {"title": ""}),
        ("POST", "/api/projects", {"name": ""}),
        ("POST", "/api/tasks", {"bogus": True}),
    ]


def test_viewers_never_write(new_client, make_user, admin):
    make_user("erin", acme="editor")
    # A viewer of acme who is admin of globex: the role in the chosen tenant counts.
    make_user("vic", acme="viewer", globex="admin")
    erin, vic = new_client(), new_client()
    erin.login("erin")
    vic.login("vic", tenant="acme")
    project = create_project(erin, "Erin's")
    task = create_task(erin, project, "Erin's task")
    before = world(admin)
    for method, url, body in write_requests(project, task):
        assert_error(call(vic, method, url, body, status=403), 403, "forbidden")
    assert world(admin) == before
    # Reads are allowed.
    assert vic.get(f"/api/tasks/{task['id']}").json == task


def test_members_is_admin_of_the_chosen_tenant_only(new_client, make_user):
    make_user("ada", acme="admin")
    make_user("erin", acme="editor")
    make_user("vic", acme="viewer")
    make_user("gus", acme="editor", globex="admin")
    make_user("gina", globex="viewer")
    ada = new_client()
    ada.login("ada")
    members = ada.get("/api/members").json
    # Only acme's members: nothing about globex-only users leaks.
    assert sorted(m["username"] for m in members) == ["ada", "erin", "gus", "vic"]
    assert {m["username"]: m["role"] for m in members}["gus"] == "editor"
    for username, tenant in (("erin", None), ("vic", None), ("gus", "acme")):
        client = new_client()
        client.login(username, tenant=tenant)
        assert_error(client.get("/api/members", status=403), 403, "forbidden")
    gus = new_client()
    gus.login("gus", tenant="globex")
    assert sorted(m["username"] for m in gus.get("/api/members").json) == ["gina", "gus"]
    assert_error(new_client().get("/api/members", status=401), 401, "unauthenticated")


# --- headers ----------------------------------------------------------------------------------


def test_api_responses_are_not_cached_nor_sniffed(client, make_user, clock):
    make_user("ada", acme="admin")
    responses = [
        client.get("/api/me", status=401),
        client.raw("GET", "/api/nope", b"", content_type=None),
        client.raw("DELETE", "/api/me", b"", content_type=None),
        client.raw("POST", "/api/login", b"x" * (MIB + 1)),
        client.login("ada", "wrong", status=401),
        client.login("ada"),
        client.get("/api/me"),
        client.get("/api/projects"),
        client.post("/api/projects", {"name": "p"}, status=201),
        client.post("/api/projects", {"name": ""}, status=422),
        client.get("/api/projects/2147483647", status=404),
        client.post("/api/projects", {"name": "q"}, headers={"X-CSRF-Token": "x"}, status=403),
        client.get("/api/members"),
        client.post("/api/logout", status=204),
    ]
    for _ in range(5):
        client.login("ada", "wrong", status=401)
    responses.append(client.login("ada", status=429))
    for response in responses:
        assert response.headers.get("Cache-Control") == "no-store", response
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response


def test_non_api_responses_may_not_be_framed(client):
    for response in (
        client.get("/healthz"),
        client.get("/readyz"),
        client.raw("GET", "/", b"", content_type=None),
        client.raw("GET", "/nope", b"", content_type=None),
        client.raw("PUT", "/healthz", b"", content_type=None),
    ):
        frame_options = response.headers.get("X-Frame-Options", "")
        csp = response.headers.get("Content-Security-Policy", "")
        assert frame_options.upper() == "DENY" or "frame-ancestors 'none'" in csp, response
        assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_login_cookie_is_httponly_and_samesite_lax(client, make_user):
    make_user("ada", acme="admin")
    response = client.login("ada")
    (cookie,) = response.headers.getall("Set-Cookie")
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=lax"
    assert attributes["path"].strip() == "Path=/"
    assert "domain" not in attributes
    assert int(attributes["max-age"].split("=")[1]) <= 43200
    # Neither the session token nor its stored hash is readable from the body.
    value = client.test_app.cookies[COOKIE]
    token = value.rpartition(".")[0]
    assert token not in response.text and tokens.token_hash(token) not in response.text
    assert response.json["csrf_token"] not in value
    # Logout expires the cookie in the browser too.
    (cleared,) = client.post("/api/logout", status=204).headers.getall("Set-Cookie")
    assert cleared.startswith(f"{COOKIE}=;") and "max-age=0" in cleared.lower()


# --- method override ------------------------------------------------------------------------


def test_method_override_is_not_honoured(editor, admin):
    """No header or parameter turns a GET (no CSRF check) or a POST into a DELETE."""
    project = create_project(editor, "Keep me")
    url = f"/api/projects/{project['id']}"
    before = world(admin)
    override = {
        "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
    }
    response = editor.test_app.get(url, headers=override)
    assert response.json == project
    response = editor.test_app.get(url + "?_method=DELETE")
    assert response.json == project
    response = editor.test_app.post(
        url + "?_method=DELETE",
        "{}",
        headers={**override, "X-CSRF-Token": editor.csrf, "Content-Type": "application/json"},
        expect_errors=True,
    )
    assert_error(response, 405, "method_not_allowed")
    assert world(admin) == before
    assert editor.get(url).json == project
