"""Moving a project to another tenant (API.md, "Moving a project to another tenant").

Both backends: the answers, the refusals (each changes nothing in either
database) and the copy. PostgreSQL: the two-phase commit (nothing left
prepared), concurrent moves of one project, PgBouncer.
"""

import psycopg2
import pytest
from races import LockHolder, in_thread, libpq_url, wait_for_blocked_behind
from sqlalchemy import select

from conftest import assert_error, tenant_rows
from tenantapp.db import recovery
from tenantapp.interfaces import IDBFactory
from tenantapp.models.catalog import MoveDecision
from tenantapp.models.tenant import Project, Task


def make_project(client, name="Alpha", tasks=3, description="about alpha"):
    project = client.post("/api/projects", {"name": name, "description": description}, status=201)
    project = project.json
    for number in range(tasks):
        client.post(
            "/api/tasks",
            {
                "project_id": project["id"],
                "title": f"Task {number}",
                "status": ("open", "in_progress", "done")[number % 3],
                "assignee": f"person{number}" if number % 2 else None,
                "due_date": f"2027-01-{number + 1:02d}" if number % 2 == 0 else None,
            },
            status=201,
        )
    return project


def snapshot(admin):
    """Every project and task of both tenants, as comparable tuples."""
    state = {}
    for tenant in ("acme", "globex"):
        projects = tenant_rows(admin, tenant, Project)
        tasks = tenant_rows(admin, tenant, Task)
        state[tenant] = (
            [(p.id, p.name, p.description, p.version, p.created_at) for p in projects],
            [(t.id, t.project_id, t.title, t.status, t.version) for t in tasks],
        )
    return state


def decisions(admin):
    with admin.catalog.transaction(write=False) as db:
        return db.execute(select(MoveDecision)).scalars().all()


def prepared_xacts(pg_cluster):
    with psycopg2.connect(libpq_url(pg_cluster.url("postgres"))) as conn, conn.cursor() as cur:
        cur.execute("SELECT gid FROM pg_prepared_xacts")
        rows = [row[0] for row in cur.fetchall()]
    conn.close()
    return rows


@pytest.fixture(autouse=True)
def nothing_left_prepared(admin):  # used by test_recovery too
    """After each test, whatever it left prepared is resolved (a failed test
    must not leave locks that every later test's clean-up would wait for)."""
    yield
    recovery.resolve(admin.registry, grace=0)


@pytest.fixture
def mover(client, make_user):
    """An editor of acme (chosen) and of globex."""
    make_user("mo", acme="editor", globex="admin")
    client.login("mo", tenant="acme")
    return client


def move_url(project):
    return f"/api/projects/{project['id']}/move"


# --- the move -------------------------------------------------------------------------


def test_a_move_answers_201_and_the_project_is_in_the_target_only(mover, admin, backend, request):
    project = make_project(mover, tasks=4)
    source_tasks = tenant_rows(admin, "acme", Task)
    response = mover.post(move_url(project), {"tenant": "globex"}, status=201)
    body = response.json
    assert set(body) == {"tenant", "project", "tasks"}
    assert body["tenant"] == {"name": "globex", "display_name": "Globex Inc", "role": "admin"}
    assert body["tasks"] == 4
    moved = body["project"]
    assert moved["version"] == 1
    assert (moved["name"], moved["description"]) == (project["name"], project["description"])
    assert moved["created_at"] == project["created_at"]
    assert response.headers["Location"].endswith(f"/api/projects/{moved['id']}")

    # Gone from the source, 404 there.
    assert tenant_rows(admin, "acme", Project) == []
    assert tenant_rows(admin, "acme", Task) == []
    mover.get(f"/api/projects/{project['id']}", status=404)
    # In the target, with new ids, version 1 and every field kept.
    (stored,) = tenant_rows(admin, "globex", Project)
    assert stored.id == moved["id"]
    target_tasks = tenant_rows(admin, "globex", Task)
    assert len(target_tasks) == 4
    for old, new in zip(source_tasks, target_tasks, strict=True):
        assert new.project_id == stored.id
        assert new.version == 1
        for field in ("title", "status", "assignee", "due_date", "created_at"):
            assert getattr(new, field) == getattr(old, field), field
    # The caller's tenant stays chosen; in the target the Location answers.
    assert mover.get("/api/me").json["tenant"]["name"] == "acme"
    mover.put("/api/session/tenant", {"tenant": "globex"})
    location = response.headers["Location"]
    assert mover.get(location[location.index("/api/") :]).json == moved
    assert decisions(admin) == []
    if backend == "postgresql":
        assert prepared_xacts(request.getfixturevalue("pg_cluster")) == []


def test_a_project_without_tasks_moves(mover, admin):
    project = make_project(mover, tasks=0)
    body = mover.post(move_url(project), {"tenant": "globex"}, status=201).json
    assert body["tasks"] == 0
    assert [p.name for p in tenant_rows(admin, "globex", Project)] == ["Alpha"]


def test_if_match_with_the_current_version_moves(mover):
    project = make_project(mover, tasks=1)
    mover.post(move_url(project), {"tenant": "globex"}, status=201, headers={"If-Match": '"1"'})


def test_a_moved_project_gets_ids_after_the_targets_own(mover, admin, new_client, make_user):
    other = new_client()
    make_user("gina", globex="editor")
    other.login("gina")
    existing = make_project(other, "Existing", tasks=1)
    project = make_project(mover, tasks=2)
    moved = mover.post(move_url(project), {"tenant": "globex"}, status=201).json["project"]
    assert moved["id"] > existing["id"]
    ids = [t.id for t in tenant_rows(admin, "globex", Task)]
    assert ids == sorted(ids) and len(ids) == 3


# --- refusals: each answers as API.md says and changes nothing -------------------------


def refused(client, admin, url, body, status, code, fields=None, headers=None):
    before = snapshot(admin)
    response = client.raw(
        "POST",
        url,
        body if isinstance(body, bytes) else __import__("json").dumps(body).encode(),
        headers=headers,
    )
    assert_error(response, status, code, fields)
    assert snapshot(admin) == before
    assert decisions(admin) == []
    return response


def test_refusals_change_nothing(mover, admin, make_user, new_client):
    project = make_project(mover, tasks=2)
    url = move_url(project)
    make_user("viewer_only", acme="editor", globex="viewer")
    # A tenant that does not exist, one the user is not in, a string that is no name.
    admin.tenant_create("initech")
    for name in ("nosuch", "initech", "NOT A NAME", "", "x" * 300):
        refused(mover, admin, url, {"tenant": name}, 403, "forbidden")
    # The chosen tenant itself.
    refused(mover, admin, url, {"tenant": "acme"}, 422, "validation_failed", {"tenant"})
    # Malformed bodies.
    refused(mover, admin, url, {}, 422, "validation_failed", {"tenant"})
    refused(mover, admin, url, {"tenant": 7}, 422, "validation_failed", {"tenant"})
    refused(mover, admin, url, {"tenant": "globex", "x": 1}, 422, "validation_failed", {"x"})
    refused(mover, admin, url, b"[1]", 400, "invalid_json")
    # No such project (404 before the 422 of the body).
    refused(mover, admin, "/api/projects/999999/move", {"tenant": "globex"}, 404, "not_found")
    refused(mover, admin, "/api/projects/999999/move", {}, 404, "not_found")
    # A stale If-Match.
    refused(
        mover,
        admin,
        url,
        {"tenant": "globex"},
        412,
        "precondition_failed",
        headers={"If-Match": '"7"'},
    )
    # A project of the same name (ignoring case) in the target.
    gina = new_client()
    make_user("gina", globex="editor")
    gina.login("gina")
    gina.post("/api/projects", {"name": "ALPHA"}, status=201)
    refused(mover, admin, url, {"tenant": "globex"}, 422, "validation_failed", {"name"})
    # A viewer in the target.
    viewer = new_client()
    viewer.login("viewer_only", tenant="acme")
    refused(viewer, admin, url, {"tenant": "globex"}, 403, "forbidden")
    # A suspended target.
    admin.tenant_set_status("globex", "suspended")
    refused(mover, admin, url, {"tenant": "globex"}, 403, "tenant_suspended")


def test_a_viewer_of_the_chosen_tenant_is_refused(new_client, make_user, admin, mover):
    project = make_project(mover, tasks=1)
    make_user("val", acme="viewer", globex="admin")
    viewer = new_client()
    viewer.login("val", tenant="acme")
    refused(viewer, admin, move_url(project), {"tenant": "globex"}, 403, "forbidden")


def test_without_login_or_csrf_or_tenant(app, mover, admin, new_client, make_user):
    project = make_project(mover, tasks=1)
    anonymous = new_client()
    refused(anonymous, admin, move_url(project), {"tenant": "globex"}, 401, "unauthenticated")
    no_csrf = new_client()
    no_csrf.login("mo", tenant="acme")
    no_csrf.csrf = "wrong"
    refused(no_csrf, admin, move_url(project), {"tenant": "globex"}, 403, "csrf_failed")
    make_user("two", acme="editor", globex="editor")
    unchosen = new_client()
    unchosen.login("two")
    refused(unchosen, admin, move_url(project), {"tenant": "globex"}, 403, "tenant_required")


def test_get_is_405(mover):
    project = make_project(mover, tasks=0)
    response = mover.get(move_url(project), status=405)
    assert response.headers["Allow"] == "POST"


# --- PostgreSQL: concurrency, PgBouncer ---------------------------------------------


@pytest.mark.postgresql_only
def test_concurrent_moves_of_one_project_exactly_one_201(
    app, mover, admin, make_user, new_client, pg_cluster
):
    admin.tenant_create("initech")
    make_user("max", acme="editor", globex="editor", initech="editor")
    project = make_project(mover, tasks=3)
    source = admin.directory.factory("acme")
    holder = LockHolder(source.url)
    holder.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (project["id"],))
    clients = []
    for _ in range(3):
        client = new_client()
        client.login("max", tenant="acme")
        clients.append(client)
    calls = [
        in_thread(client.raw, "POST", move_url(project), f'{{"tenant": "{target}"}}'.encode())
        for client, target in zip(clients, ("globex", "initech", "globex"), strict=True)
    ]
    wait_for_blocked_behind(holder, 3)
    holder.commit()
    statuses = sorted(call.result().status_int for call in calls)
    assert statuses == [201, 404, 404]
    in_targets = [
        p.name for tenant in ("globex", "initech") for p in tenant_rows(admin, tenant, Project)
    ]
    assert in_targets == ["Alpha"]
    assert tenant_rows(admin, "acme", Project) == []
    assert (
        len([t for tenant in ("globex", "initech") for t in tenant_rows(admin, tenant, Task)]) == 3
    )
    assert prepared_xacts(pg_cluster) == []


@pytest.mark.postgresql_only
def test_the_transaction_ids_name_the_move_and_the_process(app, mover, admin, pg_cluster):
    seen = []

    def hook(step):
        if step == "prepared":
            seen.extend(prepared_xacts(pg_cluster))

    app.registry.move_fault_hook = hook
    try:
        project = make_project(mover, tasks=1)
        mover.post(move_url(project), {"tenant": "globex"}, status=201)
    finally:
        app.registry.move_fault_hook = None
    assert len(seen) == 2
    from tenantapp.db.recovery import coordinator_id, parse_gid

    parsed = [parse_gid(gid) for gid in seen]
    assert {p[1] for p in parsed} == {"source", "target"}
    assert len({p[0] for p in parsed}) == 1
    assert {p[2] for p in parsed} == {coordinator_id()}
    assert prepared_xacts(pg_cluster) == []


@pytest.mark.postgresql_only
def test_a_move_through_pgbouncer(pg_cluster, admin, settings, make_user):
    from conftest import dispose_app, logged_in
    from pg_cluster import PgBouncer
    from tenantapp import make_app

    bouncer = PgBouncer(pg_cluster, pool_size=2).start()
    try:
        app = make_app(
            dict(
                settings,
                **{
                    "tenantapp.catalog_url": bouncer.url("catalog"),
                    "tenantapp.tenant_url_template": bouncer.url("tenant_{name}"),
                },
            )
        )
        try:
            make_user("bo", acme="editor", globex="editor")
            client = logged_in(app, "bo", tenant="acme")
            project = client.post_json("/api/projects", {"name": "Bounced"}).json
            client.post_json("/api/tasks", {"project_id": project["id"], "title": "t"})
            response = client.post_json(move_url(project), {"tenant": "globex"}, status=201)
            assert response.json["tasks"] == 1
            assert [p.name for p in tenant_rows(admin, "globex", Project)] == ["Bounced"]
            assert tenant_rows(admin, "acme", Project) == []
            assert prepared_xacts(pg_cluster) == []
        finally:
            dispose_app(app)
    finally:
        bouncer.stop()


def test_the_catalog_records_nothing_after_a_move(mover, admin, app):
    project = make_project(mover, tasks=1)
    mover.post(move_url(project), {"tenant": "globex"}, status=201)
    catalog = app.registry.getUtility(IDBFactory, "catalog")
    with catalog.transaction(write=False) as db:
        assert db.execute(select(MoveDecision)).all() == []


# --- the pages ------------------------------------------------------------------------


def test_the_project_page_moves_a_project_and_shows_it_in_its_new_tenant(app, make_user, admin):
    from test_pages import Browser

    make_user("pat", acme="editor", globex="editor")
    admin.tenant_create("initech")
    admin.tenant_create("hooli")
    admin.user_grant("pat", "initech", "viewer")
    admin.user_grant("pat", "hooli", "admin")
    admin.tenant_set_status("hooli", "suspended")
    browser = Browser(app)
    browser.login("pat")
    browser.choose("acme")
    projects = browser.post("/projects", {"name": "Paged", "description": ""}).follow()
    project_url = projects.request.path
    browser.post(
        f"{project_url}/tasks", {"title": "One", "status": "open", "assignee": "", "due_date": ""}
    )
    page = browser.get(project_url)
    form = page.forms["move-form"]
    # Only tenants where the user may write, active, and not this one.
    assert [value for value, _selected, _text in form["tenant"].options] == ["globex"]
    form["tenant"] = "globex"
    shown = form.submit(status=303).follow()
    (moved,) = tenant_rows(admin, "globex", Project)
    assert shown.request.path == f"/projects/{moved.id}"
    assert "Paged" in shown.text and "One" in shown.text
    assert tenant_rows(admin, "acme", Project) == []
    assert len(tenant_rows(admin, "globex", Task)) == 1


def test_the_move_form_refuses_a_stale_version_and_a_taken_name(app, make_user, admin, mover):
    from test_pages import Browser

    project = make_project(mover, tasks=1)
    browser = Browser(app)
    browser.login("mo")
    browser.choose("acme")
    url = f"/projects/{project['id']}/move"
    before = snapshot(admin)
    browser.post(url, {"tenant": "globex", "version": "7"}, status=412)
    browser.post(url, {"tenant": "nosuch", "version": "1"}, status=403)
    browser.post(url, {"tenant": "acme", "version": "1"}, status=422)
    assert snapshot(admin) == before
    mover.put("/api/session/tenant", {"tenant": "globex"})
    mover.post("/api/projects", {"name": "alpha"}, status=201)
    before = snapshot(admin)
    page = browser.post(url, {"tenant": "globex", "version": "1"}, status=422)
    assert "already exists" in page.text
    assert snapshot(admin) == before
