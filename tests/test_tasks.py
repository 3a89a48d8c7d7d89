"""Tasks through the whole app (API.md, "Tenant data"), on the real databases."""

from datetime import date, datetime

import pytest

from conftest import assert_error, tenant_rows, walk
from tenantapp.models.tenant import Project, Task

TASK_KEYS = {
    "id",
    "project_id",
    "title",
    "status",
    "assignee",
    "due_date",
    "created_at",
    "updated_at",
    "version",
}


def create_project(client, name="Alpha"):
    return client.post("/api/projects", {"name": name}, status=201).json


def create(client, project, title="Write tests", **fields):
    body = {"project_id": project["id"], "title": title, **fields}
    return client.post("/api/tasks", body, status=201).json


def url(task):
    return f"/api/tasks/{task['id']}"


def db_tasks(admin, tenant="acme"):
    return {t.id: t for t in tenant_rows(admin, tenant, Task)}


def stored(admin, task):
    row = db_tasks(admin)[task["id"]]
    return {
        "project_id": row.project_id,
        "title": row.title,
        "status": row.status,
        "assignee": row.assignee,
        "due_date": row.due_date,
        "version": row.version,
    }


def ids(page):
    assert set(page) == {"items", "next"}
    return [item["id"] for item in page["items"]]


@pytest.fixture
def project(editor):
    return create_project(editor)


# --- create and read ------------------------------------------------------------


def test_create_answers_201_with_defaults_location_and_etag(editor, project, admin, clock):
    response = editor.post(
        "/api/tasks", {"project_id": project["id"], "title": "Write tests"}, status=201
    )
    task = response.json
    assert set(task) == TASK_KEYS
    assert isinstance(task["id"], int) and not isinstance(task["id"], bool)
    assert task["project_id"] == project["id"]
    assert task["title"] == "Write tests"
    assert task["status"] == "open"
    assert task["assignee"] is None
    assert task["due_date"] is None
    assert task["version"] == 1
    for key in ("created_at", "updated_at"):
        assert task[key].endswith("+00:00")
        assert datetime.fromisoformat(task[key]) == clock.now
    assert response.headers["ETag"] == '"1"'
    location = response.headers["Location"]
    assert location.endswith(f"/api/tasks/{task['id']}")
    assert editor.get(location[location.index("/api/") :]).json == task
    assert stored(admin, task) == {
        "project_id": project["id"],
        "title": "Write tests",
        "status": "open",
        "assignee": None,
        "due_date": None,
        "version": 1,
    }


def test_create_with_every_field(editor, project, admin):
    task = create(
        editor, project, "  Ship it  ", status="in_progress", assignee="bob", due_date="2026-11-21"
    )
    assert (task["title"], task["status"], task["assignee"], task["due_date"]) == (
        "Ship it",
        "in_progress",
        "bob",
        "2026-11-21",
    )
    assert stored(admin, task)["due_date"] == date(2026, 11, 21)
    assert stored(admin, task)["title"] == "Ship it"


def test_get_answers_the_object_with_etag(editor, project):
    task = create(editor, project, assignee="ann", due_date="2027-01-31")
    response = editor.get(url(task))
    assert response.json == task
    assert response.headers["ETag"] == '"1"'
    assert response.content_type == "application/json"


def test_unknown_task_is_404(editor, project):
    task = create(editor, project)
    editor.delete(url(task))
    full = {
        "project_id": project["id"],
        "title": "x",
        "status": "open",
        "assignee": None,
        "due_date": None,
    }
    assert_error(editor.get(url(task), status=404), 404, "not_found")
    assert_error(editor.put(url(task), full, status=404), 404, "not_found")
    assert_error(editor.patch(url(task), {"title": "x"}, status=404), 404, "not_found")
    assert_error(editor.delete(url(task), status=404), 404, "not_found")
    # 404 for the object comes before 412.
    response = editor.patch(url(task), {"title": "x"}, headers={"If-Match": '"9"'}, status=404)
    assert_error(response, 404, "not_found")
    assert_error(editor.get("/api/tasks/99999999999999999999", status=404), 404, "not_found")


@pytest.mark.parametrize("status", ["open", "in_progress", "done"])
def test_every_status_value(editor, project, status):
    task = create(editor, project, status=status)
    assert task["status"] == status
    assert editor.get(url(task)).json["status"] == status


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize("title", ["", "   ", "\n\t"])
def test_empty_title_is_refused(editor, project, admin, title):
    response = editor.post("/api/tasks", {"project_id": project["id"], "title": title}, status=422)
    assert_error(response, 422, "validation_failed", {"title"})
    assert db_tasks(admin) == {}


def test_title_length_counts_characters_after_trimming(editor, project, admin):
    assert create(editor, project, "t" * 500)["title"] == "t" * 500
    assert create(editor, project, " " + "ü" * 500 + " ")["title"] == "ü" * 500
    for title in ("t" * 501, "ü" * 501):
        body = {"project_id": project["id"], "title": title}
        assert_error(
            editor.post("/api/tasks", body, status=422), 422, "validation_failed", {"title"}
        )
    assert len(db_tasks(admin)) == 2


def test_assignee_up_to_150_characters_or_null(editor, project, admin):
    assert create(editor, project, assignee="a" * 150)["assignee"] == "a" * 150
    assert create(editor, project, assignee="ß" * 150)["assignee"] == "ß" * 150
    assert create(editor, project, assignee=None)["assignee"] is None
    body = {"project_id": project["id"], "title": "T", "assignee": "a" * 151}
    assert_error(
        editor.post("/api/tasks", body, status=422), 422, "validation_failed", {"assignee"}
    )
    assert len(db_tasks(admin)) == 3


@pytest.mark.parametrize("due_date", ["2026-11-21", "2024-02-29", "0001-01-01", "9999-12-31"])
def test_due_date_accepts_real_dates(editor, project, admin, due_date):
    task = create(editor, project, due_date=due_date)
    assert task["due_date"] == due_date
    assert editor.get(url(task)).json["due_date"] == due_date
    assert stored(admin, task)["due_date"] == date.fromisoformat(due_date)


@pytest.mark.parametrize(
    "due_date",
    [
        "2026-02-30",
        "2025-02-29",
        "2026-13-01",
        "2026-00-10",
        "21/11/2026",
        "2026/11/21",
        "2026-11-21T10:00:00",
        "2026-11-21T10:00:00+00:00",
        "20261121",
        "2026-1-5",
        " 2026-11-21",
        "",
        "today",
        20261121,
        1763683200.0,
        True,
        ["2026-11-21"],
        {"year": 2026},
    ],
)
def test_due_date_refuses_anything_else(editor, project, admin, due_date):
    body = {"project_id": project["id"], "title": "T", "due_date": due_date}
    response = editor.post("/api/tasks", body, status=422)
    assert_error(response, 422, "validation_failed", {"due_date"})
    task = create(editor, project, due_date="2026-01-01")
    response = editor.patch(url(task), {"due_date": due_date}, status=422)
    assert_error(response, 422, "validation_failed", {"due_date"})
    assert stored(admin, task)["due_date"] == date(2026, 1, 1)
    assert len(db_tasks(admin)) == 1


@pytest.mark.parametrize(
    "extra,fields",
    [
        ({"title": 5}, {"title"}),
        ({"title": None}, {"title"}),
        ({"title": "a\u0000b"}, {"title"}),
        ({"project_id": "1"}, {"project_id"}),
        ({"project_id": True}, {"project_id"}),
        ({"project_id": 1.0}, {"project_id"}),
        ({"project_id": None}, {"project_id"}),
        ({"project_id": 0}, {"project_id"}),
        ({"project_id": -3}, {"project_id"}),
        ({"status": "bogus"}, {"status"}),
        ({"status": "OPEN"}, {"status"}),
        ({"status": None}, {"status"}),
        ({"status": 1}, {"status"}),
        ({"assignee": 5}, {"assignee"}),
        ({"assignee": "bo\u0000b"}, {"assignee"}),
        ({"owner": "bob"}, {"owner"}),
        ({"id": 1}, {"id"}),
        ({"version": 1}, {"version"}),
        ({"created_at": "2026-11-21T10:00:00+00:00"}, {"created_at"}),
        ({"updated_at": "2026-11-21T10:00:00+00:00"}, {"updated_at"}),
    ],
)
def test_create_refuses_bad_bodies(editor, project, admin, extra, fields):
    body = {"project_id": project["id"], "title": "T", **extra}
    response = editor.post("/api/tasks", body, status=422)
    assert_error(response, 422, "validation_failed", fields)
    assert db_tasks(admin) == {}


@pytest.mark.parametrize("missing", ["project_id", "title"])
def test_create_needs_project_and_title(editor, project, missing):
    body = {"project_id": project["id"], "title": "T"}
    del body[missing]
    response = editor.post("/api/tasks", body, status=422)
    assert_error(response, 422, "validation_failed", {missing})


def test_project_that_does_not_exist_is_422(editor, project, admin):
    gone = create_project(editor, "Gone")
    editor.delete(f"/api/projects/{gone['id']}")
    for project_id in (gone["id"], 2**31 - 1, 2**31, 2**53):
        body = {"project_id": project_id, "title": "T"}
        response = editor.post("/api/tasks", body, status=422)
        assert_error(response, 422, "validation_failed", {"project_id"})
    task = create(editor, project)
    response = editor.patch(url(task), {"project_id": gone["id"]}, status=422)
    assert_error(response, 422, "validation_failed", {"project_id"})
    full = {
        "project_id": gone["id"],
        "title": "T",
        "status": "open",
        "assignee": None,
        "due_date": None,
    }
    assert_error(editor.put(url(task), full, status=422), 422, "validation_failed", {"project_id"})
    assert stored(admin, task)["project_id"] == project["id"]
    assert stored(admin, task)["version"] == 1


@pytest.mark.parametrize("raw", [b'{"title": NaN}', b'{"project_id": Infinity}', b'"x"', b"{"])
def test_body_that_is_no_json_object_is_400(editor, admin, raw):
    response = editor.raw("POST", "/api/tasks", raw, status=400)
    assert_error(response, 400, "invalid_json")
    assert db_tasks(admin) == {}


@pytest.mark.parametrize(
    "body,fields",
    [
        ({"title": None}, {"title"}),
        ({"title": "  "}, {"title"}),
        ({"title": 7}, {"title"}),
        ({"title": "x\u0000"}, {"title"}),
        ({"project_id": None}, {"project_id"}),
        ({"project_id": "1"}, {"project_id"}),
        ({"project_id": True}, {"project_id"}),
        ({"status": None}, {"status"}),
        ({"status": "closed"}, {"status"}),
        ({"assignee": "a" * 151}, {"assignee"}),
        ({"assignee": ["bob"]}, {"assignee"}),
        ({"due_date": "2026-02-30"}, {"due_date"}),
        ({"priority": 1}, {"priority"}),
        ({"id": 1}, {"id"}),
        ({"version": 1}, {"version"}),
        ({"created_at": "x"}, {"created_at"}),
        ({"updated_at": "x"}, {"updated_at"}),
        ({"title": "ok", "status": None}, {"status"}),
    ],
)
def test_patch_refuses_bad_bodies(editor, project, admin, body, fields):
    task = create(editor, project, "Keep", assignee="bob", due_date="2026-11-21")
    before = stored(admin, task)
    response = editor.patch(url(task), body, status=422)
    assert_error(response, 422, "validation_failed", fields)
    assert stored(admin, task) == before


# --- PUT and PATCH --------------------------------------------------------------


def test_put_replaces_every_field(editor, project, admin, clock):
    other = create_project(editor, "Other")
    task = create(editor, project, "Old", assignee="bob", due_date="2026-11-21")
    clock.advance(60)
    body = {
        "project_id": other["id"],
        "title": " New ",
        "status": "done",
        "assignee": None,
        "due_date": None,
    }
    response = editor.put(url(task), body)
    replaced = response.json
    assert response.headers["ETag"] == '"2"'
    assert replaced == {
        **task,
        "project_id": other["id"],
        "title": "New",
        "status": "done",
        "assignee": None,
        "due_date": None,
        "version": 2,
        "updated_at": replaced["updated_at"],
    }
    assert replaced["updated_at"].endswith("+00:00")
    assert datetime.fromisoformat(replaced["updated_at"]) == clock.now
    assert editor.get(url(task)).json == replaced
    assert stored(admin, task) == {
        "project_id": other["id"],
        "title": "New",
        "status": "done",
        "assignee": None,
        "due_date": None,
        "version": 2,
    }


@pytest.mark.parametrize("missing", ["project_id", "title", "status", "assignee", "due_date"])
def test_put_without_every_writable_field_is_422(editor, project, admin, missing):
    task = create(editor, project, "Keep", assignee="bob", due_date="2026-11-21")
    body = {
        "project_id": project["id"],
        "title": "New",
        "status": "done",
        "assignee": None,
        "due_date": None,
    }
    del body[missing]
    response = editor.put(url(task), body, status=422)
    assert_error(response, 422, "validation_failed", {missing})
    assert stored(admin, task) == {
        "project_id": project["id"],
        "title": "Keep",
        "status": "open",
        "assignee": "bob",
        "due_date": date(2026, 11, 21),
        "version": 1,
    }


def test_put_with_read_only_fields_is_422(editor, project):
    task = create(editor, project)
    body = {k: task[k] for k in ("project_id", "title", "status", "assignee", "due_date")}
    for name in ("id", "version", "created_at", "updated_at"):
        response = editor.put(url(task), {**body, name: task[name]}, status=422)
        assert_error(response, 422, "validation_failed", {name})


def test_patch_changes_only_the_fields_sent(editor, project, admin):
    task = create(editor, project, "Keep", assignee="bob", due_date="2026-11-21")
    patched = editor.patch(url(task), {"status": "in_progress"})
    assert patched.headers["ETag"] == '"2"'
    assert patched.json == {
        **task,
        "status": "in_progress",
        "version": 2,
        "updated_at": patched.json["updated_at"],
    }
    patched = editor.patch(url(task), {"assignee": None, "due_date": None}).json
    assert (patched["assignee"], patched["due_date"], patched["version"]) == (None, None, 3)
    assert patched["title"] == "Keep" and patched["status"] == "in_progress"
    assert stored(admin, task) == {
        "project_id": project["id"],
        "title": "Keep",
        "status": "in_progress",
        "assignee": None,
        "due_date": None,
        "version": 3,
    }


def test_patch_moves_a_task_to_another_project(editor, project):
    other = create_project(editor, "Other")
    task = create(editor, project)
    moved = editor.patch(url(task), {"project_id": other["id"]}).json
    assert (moved["project_id"], moved["version"]) == (other["id"], 2)
    assert ids(editor.get(f"/api/projects/{other['id']}/tasks").json) == [task["id"]]
    assert ids(editor.get(f"/api/projects/{project['id']}/tasks").json) == []


def test_patch_that_changes_nothing_keeps_the_version(editor, project, admin, clock):
    task = create(editor, project, "Same", assignee="bob", due_date="2026-11-21")
    clock.advance(60)
    for body in (
        {},
        {"title": "Same"},
        {"title": "  Same  "},
        {"status": "open"},
        {"assignee": "bob"},
        {"due_date": "2026-11-21"},
        {"project_id": project["id"]},
        {"title": "Same", "status": "open", "assignee": "bob", "due_date": "2026-11-21"},
    ):
        response = editor.patch(url(task), body)
        assert response.status_int == 200
        assert response.json == task, body
        assert response.headers["ETag"] == '"1"'
    assert stored(admin, task)["version"] == 1


def test_null_stays_null_without_a_new_version(editor, project):
    task = create(editor, project)
    response = editor.patch(url(task), {"assignee": None, "due_date": None})
    assert response.json == task


def test_put_with_the_same_values_keeps_the_version(editor, project):
    task = create(editor, project, "Same", status="done", assignee="bob")
    body = {k: task[k] for k in ("project_id", "title", "status", "assignee", "due_date")}
    response = editor.put(url(task), body)
    assert response.json == task
    assert response.headers["ETag"] == '"1"'


def test_version_grows_by_one_per_change(editor, project, clock):
    task = create(editor, project)
    versions = [task["version"]]
    for body in (
        {"title": "B"},
        {"status": "done"},
        {"assignee": "carl"},
        {"due_date": "2030-01-01"},
        {"status": "open", "assignee": None, "due_date": None},
    ):
        clock.advance(1)
        versions.append(editor.patch(url(task), body).json["version"])
    assert versions == [1, 2, 3, 4, 5, 6]
    got = editor.get(url(task))
    assert got.headers["ETag"] == '"6"'
    assert got.json["created_at"] == task["created_at"]
    assert datetime.fromisoformat(got.json["updated_at"]) == clock.now


# --- If-Match -------------------------------------------------------------------


@pytest.mark.parametrize("if_match", ['"1"', 'W/"1"', "*"])
def test_if_match_that_matches_applies_the_write(editor, project, admin, if_match):
    task = create(editor, project)
    patched = editor.patch(url(task), {"title": "B"}, headers={"If-Match": if_match}).json
    assert patched["version"] == 2
    body = {
        "project_id": project["id"],
        "title": "C",
        "status": "done",
        "assignee": None,
        "due_date": None,
    }
    replaced = editor.put(url(task), body, headers={"If-Match": if_match.replace("1", "2")}).json
    assert (replaced["title"], replaced["version"]) == ("C", 3)
    editor.delete(url(task), headers={"If-Match": if_match.replace("1", "3")})
    assert db_tasks(admin) == {}


@pytest.mark.parametrize("stale", ['"1"', 'W/"1"', '"3"', '"x"'])
def test_stale_if_match_is_412_and_changes_nothing(editor, project, admin, stale):
    task = create(editor, project, "Old")
    editor.patch(url(task), {"status": "done"})  # now version 2
    before = stored(admin, task)
    before_row = db_tasks(admin)[task["id"]]
    headers = {"If-Match": stale}
    response = editor.patch(url(task), {"title": "New"}, headers=headers, status=412)
    assert_error(response, 412, "precondition_failed")
    body = {
        "project_id": project["id"],
        "title": "New",
        "status": "open",
        "assignee": "x",
        "due_date": None,
    }
    assert_error(
        editor.put(url(task), body, headers=headers, status=412), 412, "precondition_failed"
    )
    assert_error(editor.delete(url(task), headers=headers, status=412), 412, "precondition_failed")
    # 412 comes before 422.
    response = editor.patch(url(task), {"title": 5}, headers=headers, status=412)
    assert_error(response, 412, "precondition_failed")
    assert stored(admin, task) == before
    assert before["version"] == 2
    assert db_tasks(admin)[task["id"]].updated_at == before_row.updated_at


def test_without_if_match_the_write_applies_to_the_current_version(new_client, make_user, admin):
    make_user("erin", acme="editor")
    make_user("emil", acme="editor")
    first, second = new_client(), new_client()
    first.login("erin")
    second.login("emil")
    project = create_project(first)
    task = create(first, project)
    first.patch(url(task), {"title": "By erin"})
    assert second.patch(url(task), {"status": "done"}).json["version"] == 3
    got = first.get(url(task)).json
    assert (got["title"], got["status"], got["version"]) == ("By erin", "done", 3)
    second.delete(url(task))
    assert db_tasks(admin) == {}


# --- DELETE ---------------------------------------------------------------------


def test_delete_answers_204_then_404(editor, project, admin):
    task = create(editor, project)
    kept = create(editor, project, "Kept")
    response = editor.delete(url(task))
    assert response.status_int == 204
    assert response.body == b""
    assert_error(editor.get(url(task), status=404), 404, "not_found")
    assert_error(editor.delete(url(task), status=404), 404, "not_found")
    assert list(db_tasks(admin)) == [kept["id"]]
    assert [p.id for p in tenant_rows(admin, "acme", Project)] == [project["id"]]


# --- lists ----------------------------------------------------------------------


def test_list_in_id_order_with_the_object_representation(editor, project):
    other = create_project(editor, "Other")
    created = [
        create(editor, project, "z last title"),
        create(editor, other, "a first title", assignee="ann", due_date="2026-11-21"),
        create(editor, project, "m", status="done"),
    ]
    created[0] = editor.patch(url(created[0]), {"status": "in_progress"}).json
    assert editor.get("/api/tasks").json == {"items": created, "next": None}


def test_project_tasks_lists_only_that_projects_tasks(editor, project):
    other = create_project(editor, "Other")
    mine = [create(editor, project, f"mine {i}") for i in range(3)]
    theirs = [create(editor, other, f"theirs {i}") for i in range(2)]
    page = editor.get(f"/api/projects/{project['id']}/tasks").json
    assert page == {"items": mine, "next": None}
    page = editor.get(f"/api/projects/{other['id']}/tasks").json
    assert page == {"items": theirs, "next": None}
    empty = create_project(editor, "Empty")
    assert editor.get(f"/api/projects/{empty['id']}/tasks").json == {"items": [], "next": None}
    # Paged like any list.
    items = walk(editor, f"/api/projects/{project['id']}/tasks", 2)
    assert items == mine


def test_project_tasks_take_the_same_filters(editor, project):
    other = create_project(editor, "Other")
    wanted = create(editor, project, "Fix the 50% bug", status="done", assignee="bob")
    create(editor, project, "Fix the 500 bug", status="done", assignee="bob")
    create(editor, project, "Fix the 50% bug too", status="open", assignee="bob")
    create(editor, other, "Fix the 50% bug", status="done", assignee="bob")
    path = f"/api/projects/{project['id']}/tasks"
    page = editor.get(path, params={"status": "done", "assignee": "bob", "q": "50%"}).json
    assert page == {"items": [wanted], "next": None}
    # project_id of another project under this one: nothing matches.
    assert ids(editor.get(path, params={"project_id": str(other["id"])}).json) == []
    for params in ({"project_id": "abc"}, {"status": "bogus"}, {"limit": "0"}, {"after": "x"}):
        assert_error(editor.get(path, params=params, status=400), 400, "bad_request")


def test_project_tasks_of_an_unknown_project_is_404(editor, project):
    gone = create_project(editor, "Gone")
    editor.delete(f"/api/projects/{gone['id']}")
    assert_error(editor.get(f"/api/projects/{gone['id']}/tasks", status=404), 404, "not_found")


def test_default_limit_is_50_and_bounds(editor, project, admin):
    with admin.directory.factory("acme").transaction() as db:
        now = datetime.fromisoformat(project["created_at"])
        db.add_all(
            Task(
                project_id=project["id"],
                title=f"t{i}",
                status="open",
                created_at=now,
                updated_at=now,
            )
            for i in range(201)
        )
    all_ids = sorted(db_tasks(admin))
    page = editor.get("/api/tasks").json
    assert ids(page) == all_ids[:50] and page["next"] is not None
    page = editor.get("/api/tasks", params={"limit": "1"}).json
    assert ids(page) == all_ids[:1] and page["next"] is not None
    page = editor.get("/api/tasks", params={"limit": "200"}).json
    assert ids(page) == all_ids[:200] and page["next"] is not None
    rest = editor.get("/api/tasks", params={"limit": "200", "after": page["next"]}).json
    assert ids(rest) == all_ids[200:] and rest["next"] is None
    page = editor.get(f"/api/projects/{project['id']}/tasks").json
    assert ids(page) == all_ids[:50]


@pytest.mark.parametrize("limit", ["0", "201", "abc", "-5", "", "2.0"])
def test_bad_limit_is_400(editor, project, limit):
    create(editor, project)
    assert_error(editor.get("/api/tasks", params={"limit": limit}, status=400), 400, "bad_request")


@pytest.mark.parametrize("after", ["garbage", "", "0", "aWQ6", "aWQ6eA", "!!"])
def test_bad_cursor_is_400(editor, project, after):
    create(editor, project)
    assert_error(editor.get("/api/tasks", params={"after": after}, status=400), 400, "bad_request")


def test_walking_pages_returns_every_row_once(editor, project):
    created = [create(editor, project, f"t{i}")["id"] for i in range(7)]
    for limit in (1, 2, 3, 7, 8):
        assert [t["id"] for t in walk(editor, "/api/tasks", limit)] == created, limit


def test_walking_pages_while_rows_are_added(editor, project):
    created = [create(editor, project, f"t{i}", status="done")["id"] for i in range(5)]
    counter = iter(range(100))

    def add_two():
        n = next(counter)
        created.append(create(editor, project, f"added {n}", status="done")["id"])
        create(editor, project, f"other status {n}", status="open")

    items = walk(editor, "/api/tasks", 2, between_pages=add_two, status="done")
    got = [t["id"] for t in items]
    assert len(got) == len(set(got))
    assert got == sorted(got)
    assert got == created


# --- filters --------------------------------------------------------------------


def test_filter_by_project_id(editor, project):
    other = create_project(editor, "Other")
    mine = [create(editor, project, "a")["id"], create(editor, project, "b")["id"]]
    create(editor, other, "c")
    page = editor.get("/api/tasks", params={"project_id": str(project["id"])}).json
    assert ids(page) == mine
    gone = create_project(editor, "Gone")
    editor.delete(f"/api/projects/{gone['id']}")
    assert editor.get("/api/tasks", params={"project_id": str(gone["id"])}).json == {
        "items": [],
        "next": None,
    }


def test_filter_by_status(editor, project):
    by_status = {
        status: [create(editor, project, f"{status} {i}", status=status)["id"] for i in range(2)]
        for status in ("open", "in_progress", "done")
    }
    for status, expected in by_status.items():
        assert ids(editor.get("/api/tasks", params={"status": status}).json) == expected


def test_filter_by_assignee_is_exact(editor, project):
    bob = create(editor, project, "a", assignee="bob")["id"]
    create(editor, project, "b", assignee="Bob")
    create(editor, project, "c", assignee="bobby")
    create(editor, project, "d", assignee=" bob")
    create(editor, project, "e", assignee=None)
    bob2 = create(editor, project, "f", assignee="bob")["id"]
    assert ids(editor.get("/api/tasks", params={"assignee": "bob"}).json) == [bob, bob2]
    assert ids(editor.get("/api/tasks", params={"assignee": "bo"}).json) == []
    assert ids(editor.get("/api/tasks", params={"assignee": "b_b"}).json) == []
    assert ids(editor.get("/api/tasks", params={"assignee": "bo%"}).json) == []


def test_q_is_a_case_insensitive_substring_of_the_title(editor, project):
    hit1 = create(editor, project, "Write the REPORT")["id"]
    hit2 = create(editor, project, "reporting tool")["id"]
    create(editor, project, "Something else", assignee="report")
    for q in ("report", "REPORT", "RePoRt"):
        assert ids(editor.get("/api/tasks", params={"q": q}).json) == [hit1, hit2], q
    assert ids(editor.get("/api/tasks", params={"q": "e rep"}).json) == [hit1]
    assert ids(editor.get("/api/tasks", params={"q": "nothing like it"}).json) == []


def test_q_is_case_insensitive_beyond_ascii(editor, project):
    hit = create(editor, project, "Größe ÄNDERN")["id"]
    create(editor, project, "andere")
    assert ids(editor.get("/api/tasks", params={"q": "änder"}).json) == [hit]


def test_q_treats_percent_and_underscore_as_plain_characters(editor, project):
    fifty = create(editor, project, "Discount 50% off")["id"]
    create(editor, project, "Order 500 units")
    create(editor, project, "Order 5000 units")
    snake = create(editor, project, "rename my_var")["id"]
    create(editor, project, "rename myXvar")
    slash = create(editor, project, "path a/b/c")["id"]
    backslash = create(editor, project, "escape a\\b")["id"]
    create(editor, project, "percent %% twice")
    assert ids(editor.get("/api/tasks", params={"q": "50%"}).json) == [fifty]
    assert ids(editor.get("/api/tasks", params={"q": "%"}).json) == [fifty] + ids(
        editor.get("/api/tasks", params={"q": "%%"}).json
    )
    assert ids(editor.get("/api/tasks", params={"q": "my_var"}).json) == [snake]
    assert ids(editor.get("/api/tasks", params={"q": "_"}).json) == [snake]
    assert ids(editor.get("/api/tasks", params={"q": "a/b"}).json) == [slash]
    assert ids(editor.get("/api/tasks", params={"q": "a\\b"}).json) == [backslash]
    assert ids(editor.get("/api/tasks", params={"q": "5_0"}).json) == []


def test_filters_combine(editor, project):
    other = create_project(editor, "Other")
    wanted = create(editor, project, "Fix login", status="done", assignee="bob")["id"]
    create(editor, project, "Fix login", status="open", assignee="bob")
    create(editor, project, "Fix login", status="done", assignee="ann")
    create(editor, project, "Write docs", status="done", assignee="bob")
    create(editor, other, "Fix login", status="done", assignee="bob")
    params = {"project_id": str(project["id"]), "status": "done", "assignee": "bob", "q": "LOGIN"}
    assert ids(editor.get("/api/tasks", params=params).json) == [wanted]
    # Without the project filter the other project's match comes in too.
    params.pop("project_id")
    both = ids(editor.get("/api/tasks", params=params).json)
    assert len(both) == 2 and both[0] == wanted


@pytest.mark.parametrize(
    "params",
    [
        {"project_id": "abc"},
        {"project_id": "1.5"},
        {"project_id": "-1"},
        {"project_id": ""},
        {"status": "bogus"},
        {"status": "OPEN"},
        {"status": ""},
        {"status": "done", "project_id": "x"},
    ],
)
def test_malformed_filter_is_400(editor, project, params):
    create(editor, project)
    assert_error(editor.get("/api/tasks", params=params, status=400), 400, "bad_request")


# --- who may do what -------------------------------------------------------------


def test_viewer_reads_but_may_not_write(new_client, make_user, admin):
    make_user("erin", acme="editor")
    make_user("vic", acme="viewer")
    editor, viewer = new_client(), new_client()
    editor.login("erin")
    viewer.login("vic")
    project = create_project(editor)
    task = create(editor, project, assignee="bob")

    assert viewer.get("/api/tasks").json == {"items": [task], "next": None}
    assert viewer.get("/api/tasks", params={"assignee": "bob"}).json["items"] == [task]
    response = viewer.get(url(task))
    assert response.json == task
    assert response.headers["ETag"] == '"1"'

    full = {
        "project_id": project["id"],
        "title": "x",
        "status": "done",
        "assignee": None,
        "due_date": None,
    }
    responses = [
        viewer.post("/api/tasks", {"project_id": project["id"], "title": "T"}, status=403),
        viewer.put(url(task), full, status=403),
        viewer.patch(url(task), {"status": "done"}, status=403),
        viewer.patch(url(task), {}, status=403),
        viewer.delete(url(task), status=403),
        # 403 comes before 404 and 422.
        viewer.delete("/api/tasks/2147483647", status=403),
        viewer.post("/api/tasks", {"title": 5}, status=403),
    ]
    for response in responses:
        assert_error(response, 403, "forbidden")
    assert stored(admin, task) == {
        "project_id": project["id"],
        "title": "Write tests",
        "status": "open",
        "assignee": "bob",
        "due_date": None,
        "version": 1,
    }
    assert list(db_tasks(admin)) == [task["id"]]


def test_without_a_chosen_tenant_is_403_tenant_required(client, make_user, admin):
    make_user("alice", acme="editor", globex="editor")
    assert client.login("alice").json["tenant"] is None
    full = {"project_id": 1, "title": "x", "status": "done", "assignee": None, "due_date": None}
    responses = [
        client.get("/api/tasks", status=403),
        client.get("/api/tasks", params={"status": "done"}, status=403),
        client.get("/api/tasks/1", status=403),
        client.post("/api/tasks", {"project_id": 1, "title": "T"}, status=403),
        client.put("/api/tasks/1", full, status=403),
        client.patch("/api/tasks/1", {"title": "T"}, status=403),
        client.delete("/api/tasks/1", status=403),
    ]
    for response in responses:
        assert_error(response, 403, "tenant_required")
    assert db_tasks(admin) == {} and db_tasks(admin, "globex") == {}


def test_tenants_are_isolated(new_client, make_user, admin):
    make_user("erin", acme="editor")
    make_user("gina", globex="editor")
    acme, globex = new_client(), new_client()
    acme.login("erin")
    globex.login("gina")

    their_project = create_project(globex, "Globex project")
    theirs = create(globex, their_project, "Globex task", assignee="gina")
    # acme holds no row at all: globex ids name nothing here.
    full = {
        "project_id": their_project["id"],
        "title": "x",
        "status": "done",
        "assignee": None,
        "due_date": None,
    }
    assert_error(acme.get(url(theirs), status=404), 404, "not_found")
    assert_error(acme.put(url(theirs), full, status=404), 404, "not_found")
    assert_error(acme.patch(url(theirs), {"title": "Mine"}, status=404), 404, "not_found")
    assert_error(acme.delete(url(theirs), status=404), 404, "not_found")
    assert acme.get("/api/tasks").json == {"items": [], "next": None}
    params = {"project_id": str(their_project["id"])}
    assert acme.get("/api/tasks", params=params).json == {"items": [], "next": None}
    assert acme.get("/api/tasks", params={"assignee": "gina"}).json == {"items": [], "next": None}
    # A project of another tenant is no project here.
    body = {"project_id": their_project["id"], "title": "Sneaky"}
    response = acme.post("/api/tasks", body, status=422)
    assert_error(response, 422, "validation_failed", {"project_id"})

    our_project = create_project(acme, "Acme project")
    ours = create(acme, our_project, "Acme task")
    assert acme.get("/api/tasks").json == {"items": [ours], "next": None}
    assert globex.get("/api/tasks").json == {"items": [theirs], "next": None}

    globex_rows = tenant_rows(admin, "globex", Task)
    assert [(t.id, t.project_id, t.title, t.version) for t in globex_rows] == [
        (theirs["id"], their_project["id"], "Globex task", 1)
    ]
    acme_rows = tenant_rows(admin, "acme", Task)
    assert [(t.id, t.project_id, t.title) for t in acme_rows] == [
        (ours["id"], our_project["id"], "Acme task")
    ]
