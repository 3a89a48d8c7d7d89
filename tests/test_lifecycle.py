"""DESIGN.md's lifecycle rules, one test (or more) each, on the real databases."""

import gc
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import webtest
from sqlalchemy import select
from webtest.http import StopableWSGIServer

from conftest import checked_out, tenant_rows
from tenantapp import make_app
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import LoginFailure
from tenantapp.models.tenant import Project, Task
from tenantapp.request import TenantRequest


def markers(admin):
    """The rows the test views write before they fail, in both databases."""
    with admin.catalog.transaction(write=False) as db:
        catalog = (
            db.execute(select(LoginFailure.username).where(LoginFailure.username.like("marker-%")))
            .scalars()
            .all()
        )
    tenant = [p.name for p in tenant_rows(admin, "acme", Project) if p.name.startswith("marker")]
    return catalog + tenant


# Rule 1 -----------------------------------------------------------------------


def test_rule1_no_connection_stays_checked_out(editor, app):
    """After a 2xx, a 4xx, a 404, a 5xx and an exception, every pool is idle."""
    registry = app.registry
    project = editor.post("/api/projects", {"name": "P"}, status=201).json
    assert checked_out(registry) == {}
    editor.post("/api/projects", {"name": ""}, status=422)
    assert checked_out(registry) == {}
    editor.get("/api/projects/2147483000", status=404)
    assert checked_out(registry) == {}
    editor.post("/api/_test/raise_after_write", {}, status=500)
    assert checked_out(registry) == {}
    editor.post("/api/_test/commit_fails", {}, status=500)
    assert checked_out(registry) == {}
    editor.get(f"/api/projects/{project['id']}")
    # The pools were used (a connection exists) and all are back.
    catalog = registry.getUtility(IDBFactory, "catalog")
    acme = registry.getUtility(ITenantDirectory).factory("acme")
    assert catalog.engine.pool.checkedin() >= 1
    assert acme.engine.pool.checkedin() >= 1


# Rule 2 -----------------------------------------------------------------------


def test_rule2_an_exception_writes_nothing_anywhere(editor, admin):
    r = editor.post("/api/_test/raise_after_write", {}, status=500)
    assert r.json["error"]["code"] == "internal_error"
    assert "boom" not in r.text and "Traceback" not in r.text
    assert markers(admin) == []


def test_rule2_an_error_answer_writes_nothing_anywhere(editor, admin):
    editor.post("/api/_test/error_after_write", {}, status=422)
    assert markers(admin) == []


def test_rule2_a_rejected_write_leaves_the_row_as_it_was(editor, admin):
    project = editor.post("/api/projects", {"name": "Kept"}, status=201).json
    editor.patch(f"/api/projects/{project['id']}", {"name": "New", "bogus": 1}, status=422)
    editor.put(f"/api/projects/{project['id']}", {"name": "New"}, status=422)
    [row] = tenant_rows(admin, "acme", Project)
    assert (row.name, row.version) == ("Kept", 1)


# Rule 3 -----------------------------------------------------------------------


def test_rule3_a_failed_commit_is_never_a_2xx(editor, admin):
    r = editor.post("/api/_test/commit_fails", {}, status=500)
    assert r.json["error"]["code"] == "internal_error"
    assert markers(admin) == []
    assert tenant_rows(admin, "acme", Task) == []


# Rule 4 -----------------------------------------------------------------------


def test_rule4_no_orm_object_outlives_its_request(editor, app):
    project = editor.post("/api/projects", {"name": "P"}, status=201).json
    editor.post("/api/tasks", {"project_id": project["id"], "title": "T"}, status=201)
    editor.get(f"/api/projects/{project['id']}")
    editor.patch(f"/api/projects/{project['id']}", {"description": "d"})
    editor.get("/api/tasks")
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, (Project, Task))]
    assert alive == []


def test_rule4_a_refused_body_leaves_no_request_behind(editor, app):
    """A 422 from a field validator (a NUL in a name) is garbage once answered.

    pydantic keeps the validator's ValueError and its traceback; chained to
    our exception, that made a cycle the collector cannot break, and every such
    answer kept its request and the ORM objects its view had loaded."""
    project = editor.post("/api/projects", {"name": "P"}, status=201).json
    editor.post("/api/projects", {"name": "x\x00"}, status=422)
    editor.patch(f"/api/projects/{project['id']}", {"name": "x\x00"}, status=422)
    editor.post("/api/tasks", {"project_id": project["id"], "title": "\x00"}, status=422)
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, TenantRequest)] == []
    assert [o for o in gc.get_objects() if isinstance(o, (Project, Task))] == []


def test_rule4_a_thread_serves_different_users_with_their_own_data(new_client, make_user, app):
    """One waitress thread after another serves both tenants: nothing sticks to it."""
    make_user("ann", acme="editor")
    make_user("gus", globex="editor")
    ann, gus = new_client(), new_client()
    ann.login("ann")
    gus.login("gus")
    ann_project = ann.post("/api/projects", {"name": "Acme only"}, status=201).json
    gus.post("/api/projects", {"name": "Globex only"}, status=201)
    for _ in range(3):
        assert [p["name"] for p in ann.get("/api/projects").json["items"]] == ["Acme only"]
        assert [p["name"] for p in gus.get("/api/projects").json["items"]] == ["Globex only"]
    # An acme id does not exist in globex, whatever the thread saw before.
    gus.get(f"/api/projects/{ann_project['id']}", status=404)


# Rule 5 -----------------------------------------------------------------------


def test_rule5_a_commit_is_seen_by_the_next_request_in_another_process(editor, settings, admin):
    other_process = webtest.TestApp(make_app(settings))
    other_process.set_cookie("session", editor.test_app.cookies["session"])
    project = editor.post("/api/projects", {"name": "Before"}, status=201).json
    url = f"/api/projects/{project['id']}"
    assert other_process.get(url).json["name"] == "Before"
    editor.patch(url, {"name": "After"})
    assert other_process.get(url).json["name"] == "After"
    # A change made outside any request (the CLI's kind of session) too.
    with admin.directory.factory("acme").transaction() as db:
        db.get(Project, project["id"]).name = "Outside"
    assert editor.get(url).json["name"] == "Outside"
    assert other_process.get(url).json["name"] == "Outside"
    other_process.app.registry.getUtility(ITenantDirectory).dispose_all()
    other_process.app.registry.getUtility(IDBFactory, "catalog").dispose()


def test_rule5_and_isolation_under_threads_on_a_real_server(make_user, app, admin):
    """Two tenants' users on waitress threads: every answer holds only the
    chosen tenant's rows, and each write is seen by the next read."""
    make_user("ann", acme="editor")
    make_user("gus", globex="editor")
    server = StopableWSGIServer.create(app, threads=4)
    try:
        base = server.application_url.rstrip("/")
        sessions = {}
        for user in ("ann", "gus"):
            request = urllib.request.Request(
                f"{base}/api/login",
                data=json.dumps(
                    {"username": user, "password": "correct horse battery staple"}
                ).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                cookie = response.headers["Set-Cookie"].split(";")[0]
                sessions[user] = (cookie, json.load(response)["csrf_token"])

        def call(user, method, path, body=None):
            cookie, csrf = sessions[user]
            request = urllib.request.Request(
                f"{base}{path}",
                method=method,
                data=json.dumps(body).encode() if body is not None else None,
                headers={
                    "Cookie": cookie,
                    "X-CSRF-Token": csrf,
                    "Content-Type": "application/json",
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)

        def worker(user, n):
            prefix = f"{user}-{n}"
            created = call(user, "POST", "/api/projects", {"name": prefix})
            names = [p["name"] for p in call(user, "GET", "/api/projects?limit=200")["items"]]
            assert prefix in names, "a committed write was not seen by the next read"
            assert all(name.startswith(user) for name in names), names
            return created["id"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            jobs = [pool.submit(worker, user, n) for n in range(10) for user in ("ann", "gus")]
            for job in jobs:
                job.result(timeout=60)
    finally:
        server.shutdown()
    assert len(tenant_rows(admin, "acme", Project)) == 10
    assert len(tenant_rows(admin, "globex", Project)) == 10


# Rule 6 -----------------------------------------------------------------------


def test_rule6_the_id_is_in_the_response_of_a_create(editor, admin):
    r = editor.post("/api/projects", {"name": "P"}, status=201)
    assert isinstance(r.json["id"], int)
    assert r.headers["Location"].endswith(f"/api/projects/{r.json['id']}")
    assert [p.id for p in tenant_rows(admin, "acme", Project)] == [r.json["id"]]
    task = editor.post("/api/tasks", {"project_id": r.json["id"], "title": "T"}, status=201)
    assert task.headers["Location"].endswith(f"/api/tasks/{task.json['id']}")


# Rule 7 -----------------------------------------------------------------------


def _second_process(settings, cookie):
    other = webtest.TestApp(make_app(settings))
    other.set_cookie("session", cookie)
    return other


def test_rule7_revocation_reaches_every_process_at_the_next_request(
    new_client, make_user, settings, admin
):
    make_user("ann", acme="editor", globex="viewer")
    client = new_client()
    client.login("ann", tenant="acme")
    other = _second_process(settings, client.test_app.cookies["session"])
    other.get("/api/projects")

    admin.user_grant("ann", "acme", "viewer")  # a changed role
    assert client.post("/api/projects", {"name": "x"}, status=403).json["error"]["code"] == (
        "forbidden"
    )
    admin.tenant_set_status("acme", "suspended")
    assert other.get("/api/projects", status=403).json["error"]["code"] == "tenant_suspended"
    admin.tenant_set_status("acme", "active")
    other.get("/api/projects")
    admin.user_revoke("ann", "acme")
    assert other.get("/api/projects", status=403).json["error"]["code"] == "forbidden"
    assert other.get("/api/me").json["tenant"] is None
    admin.user_set_disabled("ann", True)
    other.get("/api/me", status=401)
    client.get("/api/me", status=401)


def test_rule7_logout_reaches_every_process(new_client, make_user, settings):
    make_user("ann", acme="editor")
    client = new_client()
    client.login("ann")
    other = _second_process(settings, client.test_app.cookies["session"])
    other.get("/api/me")
    client.post("/api/logout", status=204)
    other.get("/api/me", status=401)


def test_concurrent_requests_never_share_a_session(make_user, app):
    """Many threads at once through the WSGI app: all answers are correct."""
    make_user("ann", acme="editor")
    make_user("gus", globex="editor")
    apps = {}
    for user in ("ann", "gus"):
        test_app = webtest.TestApp(app)
        test_app.post_json(
            "/api/login", {"username": user, "password": "correct horse battery staple"}
        )
        apps[user] = test_app
    cookies = {user: a.cookies["session"] for user, a in apps.items()}
    errors = []

    def reader(user):
        test_app = webtest.TestApp(app)
        test_app.set_cookie("session", cookies[user])
        for _ in range(10):
            me = test_app.get("/api/me").json
            if me["user"]["username"] != user:
                errors.append(me)

    threads = [threading.Thread(target=reader, args=(u,)) for u in ("ann", "gus") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


@pytest.mark.postgresql_only
def test_no_pooled_connection_is_left_in_a_transaction(editor, admin):
    """The driver runs in autocommit with BEGIN only for writes: after reads,
    writes, failed writes and exceptions, no connection idles in a transaction."""
    project = editor.post("/api/projects", {"name": "P"}, status=201).json
    editor.get("/api/projects")
    editor.post("/api/projects", {"name": "P"}, status=422)
    editor.post("/api/_test/raise_after_write", {}, status=500)
    editor.post("/api/_test/commit_fails", {}, status=500)
    editor.patch(f"/api/projects/{project['id']}", {"description": "d"})
    with admin.catalog.engine.connect() as connection:
        states = (
            connection.exec_driver_sql(
                "SELECT state FROM pg_stat_activity WHERE application_name = 'tenantapp' "
                "AND pid <> pg_backend_pid()"
            )
            .scalars()
            .all()
        )
    assert states and all(state == "idle" for state in states), states
