"""Projects through the whole app (API.md, "Tenant data"), on the real databases."""

from datetime import datetime

import pytest

from conftest import assert_error, tenant_rows, walk
from tenantapp.models.tenant import Project, Task
from tenantapp.models.types import utcnow

PROJECT_KEYS = {"id", "name", "description", "created_at", "updated_at", "version"}
READ_ONLY = ("id", "version", "created_at", "updated_at")


def create(client, name="Alpha", **fields):
    return client.post("/api/projects", {"name": name, **fields}, status=201).json


def url(project):
    return f"/api/projects/{project['id']}"


def db_projects(admin, tenant="acme"):
    return {p.id: p for p in tenant_rows(admin, tenant, Project)}


# --- create and read ------------------------------------------------------------


def test_create_answers_201_with_location_and_etag(editor):
    response = editor.post("/api/projects", {"name": "Alpha", "description": "first"}, status=201)
    project = response.json
    assert set(project) == PROJECT_KEYS
    assert isinstance(project["id"], int) and not isinstance(project["id"], bool)
    assert project["name"] == "Alpha"
    assert project["description"] == "first"
    assert project["version"] == 1
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"].endswith(f"/api/projects/{project['id']}")
    assert response.content_type == "application/json"
    # The Location names the new object.
    location = response.headers["Location"]
    got = editor.get(location[location.index("/api/") :])
    assert got.json == project


def test_description_defaults_to_empty(editor):
    assert create(editor, "Alpha")["description"] == ""


def test_get_answers_the_object_with_etag(editor, admin):
    project = create(editor, "Alpha", description="text")
    response = editor.get(url(project))
    assert response.json == project
    assert response.headers["ETag"] == '"1"'
    stored = db_projects(admin)[project["id"]]
    assert (stored.name, stored.description, stored.version) == ("Alpha", "text", 1)


def test_timestamps_are_utc_with_offset(editor, clock):
    project = create(editor, "Alpha")
    for key in ("created_at", "updated_at"):
        assert project[key].endswith("+00:00")
        assert datetime.fromisoformat(project[key]) == clock.now
    assert project["created_at"] == project["updated_at"]
    assert editor.get(url(project)).json == project


def test_unknown_project_is_404(editor):
    project = create(editor, "Alpha")
    editor.delete(url(project))
    body = {"name": "x", "description": ""}
    assert_error(editor.get(url(project), status=404), 404, "not_found")
    assert_error(editor.put(url(project), body, status=404), 404, "not_found")
    assert_error(editor.patch(url(project), body, status=404), 404, "not_found")
    assert_error(editor.delete(url(project), status=404), 404, "not_found")
    # 404 for the object comes before 412.
    response = editor.patch(url(project), body, headers={"If-Match": '"9"'}, status=404)
    assert_error(response, 404, "not_found")
    # An id no table can hold is no object either.
    assert_error(editor.get("/api/projects/99999999999999999999", status=404), 404, "not_found")


# --- validation -----------------------------------------------------------------


def test_name_is_stored_trimmed(editor, admin):
    project = create(editor, "  Alpha \t\n")
    assert project["name"] == "Alpha"
    assert db_projects(admin)[project["id"]].name == "Alpha"


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_empty_name_is_refused(editor, admin, name):
    response = editor.post("/api/projects", {"name": name}, status=422)
    assert_error(response, 422, "validation_failed", {"name"})
    assert db_projects(admin) == {}


def test_name_length_counts_characters_after_trimming(editor, admin):
    assert create(editor, "a" * 200)["name"] == "a" * 200
    assert create(editor, "  " + "b" * 200 + "  ")["name"] == "b" * 200
    assert create(editor, "ü" * 200)["name"] == "ü" * 200
    for name in ("c" * 201, "ö" * 201):
        response = editor.post("/api/projects", {"name": name}, status=422)
        assert_error(response, 422, "validation_failed", {"name"})
    assert len(db_projects(admin)) == 3


def test_description_up_to_10000_characters(editor, admin):
    assert create(editor, "A", description="d" * 10000)["description"] == "d" * 10000
    assert create(editor, "B", description="é" * 10000)["description"] == "é" * 10000
    response = editor.post("/api/projects", {"name": "C", "description": "d" * 10001}, status=422)
    assert_error(response, 422, "validation_failed", {"description"})
    assert sorted(p.name for p in db_projects(admin).values()) == ["A", "B"]


def test_name_is_required(editor):
    response = editor.post("/api/projects", {"description": "x"}, status=422)
    assert_error(response, 422, "validation_failed", {"name"})


@pytest.mark.parametrize("duplicate", ["Alpha", "alpha", "ALPHA", "  aLpHa  "])
def test_duplicate_name_ignoring_case_is_422(editor, admin, duplicate):
    create(editor, "Alpha")
    response = editor.post("/api/projects", {"name": duplicate}, status=422)
    assert_error(response, 422, "validation_failed", {"name"})
    assert [p.name for p in db_projects(admin).values()] == ["Alpha"]


def test_duplicate_name_ignoring_case_beyond_ascii(editor, admin):
    create(editor, "Ärger")
    response = editor.post("/api/projects", {"name": "ärger"}, status=422)
    assert_error(response, 422, "validation_failed", {"name"})
    assert [p.name for p in db_projects(admin).values()] == ["Ärger"]


def test_rename_to_a_duplicate_is_422(editor, admin):
    alpha = create(editor, "Alpha")
    beta = create(editor, "Beta")
    response = editor.patch(url(beta), {"name": "ALPHA"}, status=422)
    assert_error(response, 422, "validation_failed", {"name"})
    response = editor.put(url(beta), {"name": " alpha ", "description": ""}, status=422)
    assert_error(response, 422, "validation_failed", {"name"})
    stored = db_projects(admin)
    assert (stored[beta["id"]].name, stored[beta["id"]].version) == ("Beta", 1)
    assert (stored[alpha["id"]].name, stored[alpha["id"]].version) == ("Alpha", 1)


def test_rename_to_own_name_in_another_case(editor):
    project = create(editor, "Alpha")
    renamed = editor.patch(url(project), {"name": "ALPHA"}).json
    assert (renamed["name"], renamed["version"]) == ("ALPHA", 2)


def test_name_of_a_deleted_project_is_free_again(editor):
    project = create(editor, "Alpha")
    editor.delete(url(project))
    assert create(editor, "alpha")["name"] == "alpha"


@pytest.mark.parametrize(
    "body,fields",
    [
        ({"name": 5}, {"name"}),
        ({"name": True}, {"name"}),
        ({"name": ["Alpha"]}, {"name"}),
        ({"name": {"text": "Alpha"}}, {"name"}),
        ({"name": None}, {"name"}),
        ({"name": "Alpha", "description": None}, {"description"}),
        ({"name": "Alpha", "description": 7}, {"description"}),
        ({"name": "Al\u0000pha"}, {"name"}),
        ({"name": "Alpha", "description": "nul \u0000 inside"}, {"description"}),
        ({"name": "Alpha", "colour": "red"}, {"colour"}),
        ({"name": "Alpha", "id": 1}, {"id"}),
        ({"name": "Alpha", "version": 1}, {"version"}),
        ({"name": "Alpha", "created_at": "2026-11-21T10:00:00+00:00"}, {"created_at"}),
        ({"name": "Alpha", "updated_at": "2026-11-21T10:00:00+00:00"}, {"updated_at"}),
        ({}, {"name"}),
    ],
)
def test_create_refuses_bad_bodies(editor, admin, body, fields):
    response = editor.post("/api/projects", body, status=422)
    assert_error(response, 422, "validation_failed", fields)
    assert db_projects(admin) == {}


@pytest.mark.parametrize("raw", [b'{"name": NaN}', b'{"name": "A", "x": Infinity}', b"[1]", b"{"])
def test_body_that_is_no_json_object_is_400(editor, admin, raw):
    response = editor.raw("POST", "/api/projects", raw, status=400)
    assert_error(response, 400, "invalid_json")
    assert db_projects(admin) == {}


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(
    "body,fields",
    [
        ({"name": 5, "description": ""}, {"name"}),
        ({"name": None, "description": ""}, {"name"}),
        ({"name": "Beta", "description": None}, {"description"}),
        ({"name": "B\u0000", "description": ""}, {"name"}),
        ({"name": "   ", "description": ""}, {"name"}),
        ({"name": "Beta", "description": "", "colour": "red"}, {"colour"}),
        ({"name": "Beta", "description": "", "id": 1}, {"id"}),
        ({"name": "Beta", "description": "", "version": 1}, {"version"}),
        ({"name": "Beta", "description": "", "created_at": "x"}, {"created_at"}),
        ({"name": "Beta", "description": "", "updated_at": "x"}, {"updated_at"}),
    ],
)
def test_update_refuses_bad_bodies(editor, admin, method, body, fields):
    project = create(editor, "Alpha", description="keep")
    response = getattr(editor, method)(url(project), body, status=422)
    assert_error(response, 422, "validation_failed", fields)
    stored = db_projects(admin)[project["id"]]
    assert (stored.name, stored.description, stored.version) == ("Alpha", "keep", 1)


def test_read_only_field_with_its_current_value_is_still_refused(editor):
    project = create(editor, "Alpha")
    body = {"name": "Alpha", "description": "", "id": project["id"], "version": 1}
    response = editor.put(url(project), body, status=422)
    assert_error(response, 422, "validation_failed", {"id", "version"})


# --- PUT and PATCH --------------------------------------------------------------


def test_put_replaces_every_field(editor, admin, clock):
    project = create(editor, "Alpha", description="old")
    clock.advance(60)
    response = editor.put(url(project), {"name": " Beta ", "description": "new"})
    replaced = response.json
    assert replaced["id"] == project["id"]
    assert (replaced["name"], replaced["description"], replaced["version"]) == ("Beta", "new", 2)
    assert replaced["created_at"] == project["created_at"]
    assert datetime.fromisoformat(replaced["updated_at"]) == clock.now
    assert replaced["updated_at"].endswith("+00:00")
    assert response.headers["ETag"] == '"2"'
    assert editor.get(url(project)).json == replaced
    stored = db_projects(admin)[project["id"]]
    assert (stored.name, stored.description, stored.version) == ("Beta", "new", 2)


@pytest.mark.parametrize(
    "body,missing",
    [
        ({"name": "Beta"}, {"description"}),
        ({"description": "x"}, {"name"}),
        ({}, {"name", "description"}),
    ],
)
def test_put_without_every_writable_field_is_422(editor, admin, body, missing):
    project = create(editor, "Alpha", description="old")
    response = editor.put(url(project), body, status=422)
    assert_error(response, 422, "validation_failed", missing)
    stored = db_projects(admin)[project["id"]]
    assert (stored.name, stored.description, stored.version) == ("Alpha", "old", 1)


def test_patch_changes_only_the_fields_sent(editor, admin):
    project = create(editor, "Alpha", description="old")
    patched = editor.patch(url(project), {"description": "new"})
    assert patched.headers["ETag"] == '"2"'
    assert (patched.json["name"], patched.json["description"]) == ("Alpha", "new")
    patched = editor.patch(url(project), {"name": "  Beta  "}).json
    assert (patched["name"], patched["description"], patched["version"]) == ("Beta", "new", 3)
    stored = db_projects(admin)[project["id"]]
    assert (stored.name, stored.description, stored.version) == ("Beta", "new", 3)


def test_patch_that_changes_nothing_keeps_the_version(editor, admin, clock):
    project = create(editor, "Alpha", description="same")
    clock.advance(60)
    for body in ({}, {"name": "Alpha"}, {"name": "  Alpha "}, {"description": "same"}):
        response = editor.patch(url(project), body)
        assert response.status_int == 200
        assert response.json == project, body
        assert response.headers["ETag"] == '"1"'
    stored = db_projects(admin)[project["id"]]
    assert stored.version == 1


def test_put_with_the_same_values_keeps_the_version(editor):
    project = create(editor, "Alpha", description="same")
    response = editor.put(url(project), {"name": "Alpha", "description": "same"})
    assert response.json == project
    assert response.headers["ETag"] == '"1"'


def test_version_grows_by_one_per_change(editor, clock):
    project = create(editor, "Alpha")
    versions = [project["version"]]
    for body in ({"name": "B"}, {"description": "x"}, {"name": "C", "description": "y"}):
        clock.advance(1)
        versions.append(editor.patch(url(project), body).json["version"])
    clock.advance(1)
    versions.append(editor.put(url(project), {"name": "D", "description": ""}).json["version"])
    assert versions == [1, 2, 3, 4, 5]
    assert editor.get(url(project)).headers["ETag"] == '"5"'


# --- If-Match -------------------------------------------------------------------


@pytest.mark.parametrize("if_match", ['"1"', 'W/"1"', "*"])
def test_if_match_that_matches_applies_patch_and_put(editor, if_match):
    project = create(editor, "Alpha")
    patched = editor.patch(url(project), {"name": "Beta"}, headers={"If-Match": if_match}).json
    assert patched["version"] == 2
    current = if_match.replace("1", "2")
    replaced = editor.put(
        url(project), {"name": "Gamma", "description": ""}, headers={"If-Match": current}
    ).json
    assert (replaced["name"], replaced["version"]) == ("Gamma", 3)


@pytest.mark.parametrize("if_match", ['"1"', 'W/"1"', "*"])
def test_if_match_that_matches_applies_delete(editor, admin, if_match):
    project = create(editor, "Alpha")
    editor.delete(url(project), headers={"If-Match": if_match})
    assert db_projects(admin) == {}


@pytest.mark.parametrize("stale", ['"1"', 'W/"1"', '"3"', '"abc"', "1"])
def test_stale_if_match_is_412_and_changes_nothing(editor, admin, stale):
    project = create(editor, "Alpha", description="old")
    editor.patch(url(project), {"name": "Beta"})  # now version 2
    before = db_projects(admin)[project["id"]]
    headers = {"If-Match": stale}
    response = editor.patch(url(project), {"name": "Gamma"}, headers=headers, status=412)
    assert_error(response, 412, "precondition_failed")
    response = editor.put(
        url(project), {"name": "Gamma", "description": "x"}, headers=headers, status=412
    )
    assert_error(response, 412, "precondition_failed")
    assert_error(
        editor.delete(url(project), headers=headers, status=412), 412, "precondition_failed"
    )
    after = db_projects(admin)[project["id"]]
    assert (after.name, after.description, after.version, after.updated_at) == (
        before.name,
        before.description,
        2,
        before.updated_at,
    )


def test_stale_if_match_delete_keeps_the_tasks(editor, admin):
    project = create(editor, "Alpha")
    editor.post("/api/tasks", {"project_id": project["id"], "title": "T"}, status=201)
    editor.patch(url(project), {"name": "Beta"})
    editor.delete(url(project), headers={"If-Match": '"1"'}, status=412)
    assert list(db_projects(admin)) == [project["id"]]
    assert [t.project_id for t in tenant_rows(admin, "acme", Task)] == [project["id"]]


def test_412_comes_before_422(editor):
    project = create(editor, "Alpha")
    response = editor.patch(url(project), {"name": 5}, headers={"If-Match": '"7"'}, status=412)
    assert_error(response, 412, "precondition_failed")


def test_without_if_match_the_write_applies_to_the_current_version(new_client, make_user):
    make_user("erin", acme="editor")
    make_user("emil", acme="editor")
    first, second = new_client(), new_client()
    first.login("erin")
    second.login("emil")
    project = create(first, "Alpha")
    first.patch(url(project), {"name": "Beta"})
    # The second client never saw version 2 and sends no If-Match: it wins.
    assert second.patch(url(project), {"description": "by emil"}).json["version"] == 3
    got = first.get(url(project)).json
    assert (got["name"], got["description"], got["version"]) == ("Beta", "by emil", 3)


# --- DELETE ---------------------------------------------------------------------


def test_delete_answers_204_then_404(editor, admin):
    project = create(editor, "Alpha")
    response = editor.delete(url(project))
    assert response.status_int == 204
    assert response.body == b""
    assert_error(editor.get(url(project), status=404), 404, "not_found")
    assert_error(editor.delete(url(project), status=404), 404, "not_found")
    assert db_projects(admin) == {}


def test_delete_takes_the_tasks_with_it(editor, admin):
    doomed = create(editor, "Doomed")
    kept = create(editor, "Kept")
    doomed_tasks = [
        editor.post("/api/tasks", {"project_id": doomed["id"], "title": f"t{i}"}, status=201).json
        for i in range(3)
    ]
    kept_task = editor.post(
        "/api/tasks", {"project_id": kept["id"], "title": "stays"}, status=201
    ).json
    assert len(tenant_rows(admin, "acme", Task)) == 4
    editor.delete(url(doomed))
    assert [t.id for t in tenant_rows(admin, "acme", Task)] == [kept_task["id"]]
    assert list(db_projects(admin)) == [kept["id"]]
    for task in doomed_tasks:
        assert_error(editor.get(f"/api/tasks/{task['id']}", status=404), 404, "not_found")
    assert_error(editor.get(f"{url(doomed)}/tasks", status=404), 404, "not_found")
    assert editor.get("/api/tasks").json == {"items": [kept_task], "next": None}


# --- lists ----------------------------------------------------------------------


def test_empty_list(editor):
    assert editor.get("/api/projects").json == {"items": [], "next": None}


def test_list_in_id_order_with_the_object_representation(editor, admin):
    created = [create(editor, name) for name in ("Zeta", "alpha", "Mu")]
    editor.patch(url(created[0]), {"description": "changed"})
    created[0] = editor.get(url(created[0])).json
    page = editor.get("/api/projects").json
    assert page == {"items": created, "next": None}
    assert [p["id"] for p in page["items"]] == sorted(db_projects(admin))


def test_default_limit_is_50(editor):
    created = [create(editor, f"p{i:02}")["id"] for i in range(51)]
    page = editor.get("/api/projects").json
    assert [p["id"] for p in page["items"]] == created[:50]
    assert page["next"] is not None
    rest = editor.get("/api/projects", params={"after": page["next"]}).json
    assert [p["id"] for p in rest["items"]] == created[50:]
    assert rest["next"] is None


def test_limit_bounds(editor):
    created = [create(editor, f"p{i}")["id"] for i in range(3)]
    page = editor.get("/api/projects", params={"limit": "1"}).json
    assert [p["id"] for p in page["items"]] == created[:1]
    assert page["next"] is not None
    page = editor.get("/api/projects", params={"limit": "200"}).json
    assert [p["id"] for p in page["items"]] == created
    assert page["next"] is None


def test_limit_200_returns_200_rows(editor, admin):
    with admin.directory.factory("acme").transaction() as db:
        now = utcnow()
        db.add_all(
            Project(name=f"bulk {i}", description="", created_at=now, updated_at=now)
            for i in range(201)
        )
    ids = sorted(db_projects(admin))
    page = editor.get("/api/projects", params={"limit": "200"}).json
    assert [p["id"] for p in page["items"]] == ids[:200]
    assert page["next"] is not None
    rest = editor.get("/api/projects", params={"limit": "200", "after": page["next"]}).json
    assert [p["id"] for p in rest["items"]] == ids[200:]
    assert rest["next"] is None


@pytest.mark.parametrize("limit", ["0", "201", "abc", "-1", "", "1.5", "10000"])
def test_bad_limit_is_400(editor, limit):
    create(editor, "Alpha")
    response = editor.get("/api/projects", params={"limit": limit}, status=400)
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("after", ["garbage", "", "1", "aWQ6", "aWQ6LTE", "%%%", "aWQ6MQ=="])
def test_bad_cursor_is_400(editor, after):
    create(editor, "Alpha")
    response = editor.get("/api/projects", params={"after": after}, status=400)
    assert_error(response, 400, "bad_request")


def test_walking_pages_returns_every_row_once(editor):
    created = [create(editor, f"p{i}")["id"] for i in range(7)]
    for limit in (1, 2, 3, 7, 8):
        items = walk(editor, "/api/projects", limit)
        assert [p["id"] for p in items] == created, limit


def test_walking_pages_while_rows_are_added(editor):
    created = [create(editor, f"p{i}")["id"] for i in range(5)]
    counter = iter(range(100))

    def add_one():
        created.append(create(editor, f"added {next(counter)}")["id"])

    items = walk(editor, "/api/projects", 2, between_pages=add_one)
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids)
    # Every row there was at the start is in, and so is every row added since
    # (they come after), each exactly once.
    assert ids == created


def test_walking_pages_while_rows_are_deleted(editor):
    created = [create(editor, f"p{i}")["id"] for i in range(6)]
    deleted = []

    def delete_first_remaining():
        for project_id in created:
            if project_id not in deleted:
                editor.delete(f"/api/projects/{project_id}")
                deleted.append(project_id)
                return

    items = walk(editor, "/api/projects", 2, between_pages=delete_first_remaining)
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids)
    # Rows never deleted are all there.
    assert set(created) - set(deleted) <= set(ids)


# --- who may do what -------------------------------------------------------------


def test_viewer_reads_but_may_not_write(new_client, make_user, admin):
    make_user("erin", acme="editor")
    make_user("vic", acme="viewer")
    editor, viewer = new_client(), new_client()
    editor.login("erin")
    viewer.login("vic")
    project = create(editor, "Alpha")
    task = editor.post("/api/tasks", {"project_id": project["id"], "title": "T"}, status=201).json

    assert viewer.get("/api/projects").json == {"items": [project], "next": None}
    response = viewer.get(url(project))
    assert response.json == project
    assert response.headers["ETag"] == '"1"'
    assert viewer.get(f"{url(project)}/tasks").json == {"items": [task], "next": None}

    checks = [
        viewer.post("/api/projects", {"name": "Beta"}, status=403),
        viewer.put(url(project), {"name": "Beta", "description": ""}, status=403),
        viewer.patch(url(project), {"name": "Beta"}, status=403),
        viewer.patch(url(project), {}, status=403),
        viewer.delete(url(project), status=403),
        # The role is checked before the object and the body (403 before 404 and 422).
        viewer.patch("/api/projects/2147483647", {"name": 5}, status=403),
        viewer.post("/api/projects", {"name": 5}, status=403),
    ]
    for response in checks:
        assert_error(response, 403, "forbidden")
    stored = db_projects(admin)
    assert list(stored) == [project["id"]]
    assert (stored[project["id"]].name, stored[project["id"]].version) == ("Alpha", 1)
    assert len(tenant_rows(admin, "acme", Task)) == 1


def test_admin_may_write(client, make_user):
    make_user("ada", acme="admin")
    client.login("ada")
    project = create(client, "Alpha")
    assert client.patch(url(project), {"name": "Beta"}).json["version"] == 2
    client.delete(url(project))


def test_without_a_chosen_tenant_is_403_tenant_required(client, make_user, admin):
    make_user("alice", acme="editor", globex="editor")
    assert client.login("alice").json["tenant"] is None
    responses = [
        client.get("/api/projects", status=403),
        client.get("/api/projects/1", status=403),
        client.get("/api/projects/1/tasks", status=403),
        client.post("/api/projects", {"name": "Alpha"}, status=403),
        client.put("/api/projects/1", {"name": "Alpha", "description": ""}, status=403),
        client.patch("/api/projects/1", {"name": "Alpha"}, status=403),
        client.delete("/api/projects/1", status=403),
    ]
    for response in responses:
        assert_error(response, 403, "tenant_required")
    assert db_projects(admin) == {} and db_projects(admin, "globex") == {}


def test_without_login_is_401(client):
    assert_error(client.get("/api/projects", status=401), 401, "unauthenticated")
    assert_error(client.post("/api/projects", {"name": "A"}, status=401), 401, "unauthenticated")


def test_tenants_are_isolated(new_client, make_user, admin):
    make_user("erin", acme="editor")
    make_user("gina", globex="editor")
    acme, globex = new_client(), new_client()
    acme.login("erin")
    globex.login("gina")

    theirs = create(globex, "Globex secret", description="theirs")
    # acme holds no project at all: the globex id names nothing here.
    assert_error(acme.get(url(theirs), status=404), 404, "not_found")
    assert_error(acme.get(f"{url(theirs)}/tasks", status=404), 404, "not_found")
    assert_error(acme.patch(url(theirs), {"name": "Mine"}, status=404), 404, "not_found")
    assert_error(
        acme.put(url(theirs), {"name": "Mine", "description": ""}, status=404), 404, "not_found"
    )
    assert_error(acme.delete(url(theirs), status=404), 404, "not_found")
    assert acme.get("/api/projects").json == {"items": [], "next": None}

    # Names are unique per tenant, not across tenants.
    ours = create(acme, "Globex secret", description="ours")
    assert acme.get("/api/projects").json == {"items": [ours], "next": None}
    assert globex.get("/api/projects").json == {"items": [theirs], "next": None}

    stored_globex = tenant_rows(admin, "globex", Project)
    assert [(p.id, p.name, p.description, p.version) for p in stored_globex] == [
        (theirs["id"], "Globex secret", "theirs", 1)
    ]
    stored_acme = tenant_rows(admin, "acme", Project)
    assert [(p.id, p.description) for p in stored_acme] == [(ours["id"], "ours")]
