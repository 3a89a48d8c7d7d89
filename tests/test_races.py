"""Races and crafted ids (issue 11): what two requests at once, or a URL
nobody meant, can do to a tenant's data.

- An id in a URL is plain ASCII digits, written the way the API writes it;
  anything else is 404 ``not_found``, never another object and never a 500.
- A project deleted while tasks are created in it (or moved into it): 2xx,
  404 or 422, never a 500 and never an orphan task.
- A kept cursor is a feed: no row ever appears behind it.

The PostgreSQL races are forced with tests/races.py: a lock held by a
connection of the test's own, requests parked on it, released on cue.
"""

import json
import re
import time
from contextlib import contextmanager
from urllib.parse import quote

import psycopg2
import pytest
from races import WAIT_LIMIT, LockHolder, in_thread, libpq_url

from conftest import assert_error, tenant_rows, walk
from tenantapp.models.tenant import Project, Task

# --- helpers ---------------------------------------------------------------------


def create_project(client, name="Alpha"):
    return client.post("/api/projects", {"name": name}, status=201).json


def create_task(client, project, title="T"):
    body = {"project_id": project["id"], "title": title}
    return client.post("/api/tasks", body, status=201).json


def send(client, method, path, body=None):
    """``method path`` with ``body`` as JSON (None: no body); any status."""
    if body is None:
        return client.raw(method, path, b"", content_type=None)
    return client.raw(method, path, json.dumps(body).encode())


def tenant_url(admin, tenant="acme"):
    return libpq_url(admin.directory.factory(tenant).url)


@contextmanager
def lock_holder(admin):
    """A LockHolder on acme's database, released whatever the test does."""
    holder = LockHolder(tenant_url(admin))
    try:
        yield holder
    finally:
        if not holder.connection.closed:
            holder.release()


def wait_until(condition, what):
    """Return once ``condition()`` is true (it is something PostgreSQL or a
    thread will report; reaching the limit is a failure, not a timing guess)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def blocked_backends(admin):
    """Backends of acme's database waiting on a lock someone holds, right now."""
    with psycopg2.connect(tenant_url(admin)) as observer, observer.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0"
        )
        count = cursor.fetchone()[0]
    observer.close()
    return count


def orphan_tasks(admin):
    """Tasks whose project is gone (the foreign key should make these impossible)."""
    project_ids = {p.id for p in tenant_rows(admin, "acme", Project)}
    return [t.id for t in tenant_rows(admin, "acme", Task) if t.project_id not in project_ids]


@pytest.fixture
def writers(new_client, make_user):
    """A factory of independent editors of acme (one per thread)."""
    make_user("wendy", acme="editor")

    def make():
        client = new_client()
        client.login("wendy")
        return client

    return make


# --- 1 and 2: an id is plain ASCII digits, in range, written canonically ----------

# Digits of other scripts, one family per entry: the digit d is family[d].
DIGIT_FAMILIES = {
    "fullwidth": "０１２３４５６７８９",
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "devanagari": "०१२३४५६७८९",
    "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹",
}


def in_script(number, family):
    return "".join(DIGIT_FAMILIES[family][int(d)] for d in str(number))


# What a crafted id is made of, given the id of an object that exists: the
# forms that name it in another spelling, and ids no table can hold.
CRAFTED_IDS = {
    **{family: (lambda n, f=family: in_script(n, f)) for family in DIGIT_FAMILIES},
    "plus sign": lambda n: f"+{n}",
    "minus sign": lambda n: f"-{n}",
    "decimal": lambda n: f"{n}.0",
    "leading space": lambda n: f" {n}",
    "trailing newline": lambda n: f"{n}\n",
    "leading zeros within 10 characters": lambda n: str(n).rjust(10, "0"),
    "leading zeros beyond 10 characters": lambda n: str(n).rjust(12, "0"),
    "zero": lambda n: "0",
    "2**31 - 1 (no such row)": lambda n: str(2**31 - 1),
    "2**31": lambda n: str(2**31),
    "11 digits": lambda n: "1" + "0" * 10,
    "4400 sevens": lambda n: "7" * 4400,
    "5000 nines": lambda n: "9" * 5000,
}


# What the id routes match; the id is read (and refused) after that.
ROUTE_SHAPED = re.compile(r"[0-9]{1,10}")


@pytest.mark.parametrize("crafted", list(CRAFTED_IDS))
def test_a_crafted_id_is_404_for_every_method_and_changes_nothing(editor, admin, crafted):
    project = create_project(editor)
    task = create_task(editor, project)
    project_id = CRAFTED_IDS[crafted](project["id"])
    task_id = CRAFTED_IDS[crafted](task["id"])
    paths = {
        f"/api/projects/{quote(project_id)}": {"name": "Renamed", "description": ""},
        f"/api/projects/{quote(project_id)}/tasks": {"name": "Renamed", "description": ""},
        f"/api/tasks/{quote(task_id)}": {"title": "Renamed"},
    }
    for path, body in paths.items():
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            response = send(editor, method, path, body if method in ("PUT", "PATCH") else None)
            if path.endswith("/tasks") and method != "GET" and ROUTE_SHAPED.fullmatch(project_id):
                # The route exists (the router answers before the id is read;
                # API.md, "Errors"), this method does not.
                assert_error(response, 405, "method_not_allowed")
                assert response.headers["Allow"] == "GET, HEAD"
            else:
                assert_error(response, 404, "not_found")
    [stored_project] = tenant_rows(admin, "acme", Project)
    [stored_task] = tenant_rows(admin, "acme", Task)
    assert (stored_project.name, stored_project.version) == ("Alpha", 1)
    assert (stored_task.title, stored_task.version) == ("T", 1)


def test_the_canonical_id_still_names_the_object(editor):
    project = create_project(editor)
    task = create_task(editor, project)
    assert editor.get(f"/api/projects/{project['id']}").json == project
    assert editor.get(f"/api/tasks/{task['id']}").json == task
    assert [t["id"] for t in editor.get(f"/api/projects/{project['id']}/tasks").json["items"]] == [
        task["id"]
    ]


def test_an_id_route_pattern_takes_ten_ascii_digits_at_most():
    from pyramid.urldispatch import _compile_route

    from tenantapp.routes import OBJECT_ID

    # Pyramid reads one level of braces inside a marker's regex: {1,10} is
    # the regex's, not the end of the marker.
    match, generate = _compile_route(f"/api/tasks/{OBJECT_ID}")
    assert match("/api/tasks/2147483647") == {"id": "2147483647"}
    assert match("/api/tasks/12345678901") is None
    assert match("/api/tasks/١") is None
    assert generate({"id": 42}) == "/api/tasks/42"


@pytest.mark.parametrize(
    "path, page",
    [
        ("/api/tasks", False),
        ("/api/projects", False),
        ("/api/me", False),
        # Not /healthz itself: a mistyped URL, answered with the error page.
        ("/healthz", True),
        ("/readyz", True),
        ("/login", True),
        ("/projects", True),
    ],
)
def test_a_path_with_a_trailing_newline_is_no_route(editor, path, page):
    # A route's regex ends in "$", which Python also matches before a final
    # newline: "/api/tasks%0A" was the task list, "/login%0A" the login page.
    response = editor.get(quote(f"{path}\n"), status="*")
    if page:
        assert (response.status_int, response.content_type) == (404, "text/html")
    else:
        assert_error(response, 404, "not_found")
    # The same for a method the route does not take: no 405 for a path that is no route.
    response = editor.test_app.request(quote(f"{path}\n"), method="PATCH", expect_errors=True)
    assert response.status_int == 404


# --- 3: a project deleted while tasks are created in it or moved into it ----------


@pytest.mark.postgresql_only
def test_a_task_create_waits_for_a_project_delete_then_answers_422(editor, admin):
    project = create_project(editor)
    with lock_holder(admin) as holder:
        holder.execute("DELETE FROM projects WHERE id = %s", (project["id"],))
        create = in_thread(
            send, editor, "POST", "/api/tasks", {"project_id": project["id"], "title": "T"}
        )
        holder.wait_for_waiters(1)
        holder.commit()
        response = create.result()
    assert_error(response, 422, "validation_failed", {"project_id"})
    assert tenant_rows(admin, "acme", Task) == []


@pytest.mark.postgresql_only
def test_a_task_move_waits_for_a_project_delete_then_answers_422(editor, admin):
    home = create_project(editor, "Home")
    doomed = create_project(editor, "Doomed")
    task = create_task(editor, home)
    with lock_holder(admin) as holder:
        holder.execute("DELETE FROM projects WHERE id = %s", (doomed["id"],))
        move = in_thread(
            send, editor, "PATCH", f"/api/tasks/{task['id']}", {"project_id": doomed["id"]}
        )
        holder.wait_for_waiters(1)
        holder.commit()
        response = move.result()
    assert_error(response, 422, "validation_failed", {"project_id"})
    [stored] = tenant_rows(admin, "acme", Task)
    assert (stored.project_id, stored.version) == (home["id"], 1)


# A task written into the project by another transaction, as the app writes it.
HELD_TASK_WRITES = {
    "created": (
        "INSERT INTO tasks (project_id, title, title_key, status, created_at, updated_at,"
        " version) VALUES (%(project)s, 'Held', 'held', 'open', now(), now(), 1)"
    ),
    "moved": "UPDATE tasks SET project_id = %(project)s, version = version + 1 WHERE id = %(task)s",
}


@pytest.mark.postgresql_only
@pytest.mark.parametrize("write", list(HELD_TASK_WRITES))
def test_a_project_delete_waits_for_a_task_written_into_it_and_takes_it_along(editor, admin, write):
    home = create_project(editor, "Home")
    doomed = create_project(editor, "Doomed")
    task = create_task(editor, home)
    with lock_holder(admin) as holder:
        holder.execute("SELECT id FROM projects WHERE id = %s FOR KEY SHARE", (doomed["id"],))
        holder.execute(HELD_TASK_WRITES[write], {"project": doomed["id"], "task": task["id"]})
        delete = in_thread(send, editor, "DELETE", f"/api/projects/{doomed['id']}")
        holder.wait_for_waiters(1)
        holder.commit()
        response = delete.result()
    assert response.status_int == 204, response.body
    assert orphan_tasks(admin) == []
    remaining = tenant_rows(admin, "acme", Task)
    assert all(t.project_id == home["id"] for t in remaining)
    assert len(remaining) == (1 if write == "created" else 0)


@pytest.mark.postgresql_only
def test_a_project_delete_waits_for_a_task_create_of_the_app(writers, admin):
    from tenantapp.services.insert_order import ID_ORDER_LOCKS

    creator, deleter = writers(), writers()
    project = create_project(creator)
    with lock_holder(admin) as holder:
        # Park the app's create after it checked (and locked) the project:
        # it then waits for the lock on the order of task ids.
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", ID_ORDER_LOCKS["tasks"])
        create = in_thread(
            send, creator, "POST", "/api/tasks", {"project_id": project["id"], "title": "T"}
        )
        holder.wait_for_waiters(1)
        delete = in_thread(send, deleter, "DELETE", f"/api/projects/{project['id']}")
        wait_until(lambda: blocked_backends(admin) == 2, "the delete waits for the create")
        holder.release()
        created, deleted = create.result(), delete.result()
    assert created.status_int == 201, created.body
    assert deleted.status_int == 204, deleted.body
    assert tenant_rows(admin, "acme", Task) == []


@pytest.mark.postgresql_only
def test_a_task_create_does_not_wait_for_a_project_update(editor, admin):
    project = create_project(editor)
    with lock_holder(admin) as holder:
        # What PATCH /api/projects/{id} does: a change that keeps the id.
        holder.execute(
            "UPDATE projects SET description = 'busy', version = version + 1 WHERE id = %s",
            (project["id"],),
        )
        create = in_thread(
            send, editor, "POST", "/api/tasks", {"project_id": project["id"], "title": "T"}
        )
        wait_until(lambda: create.done() or holder.waiters() > 0, "the create ends or waits")
        assert holder.waiters() == 0, "a task create waited for a change of its project's fields"
        response = create.result()
    assert response.status_int == 201, response.body


@pytest.mark.postgresql_only
def test_a_project_update_does_not_wait_for_a_task_create(editor, admin):
    project = create_project(editor)
    with lock_holder(admin) as holder:
        # What a task create in the project holds until it commits.
        holder.execute("SELECT id FROM projects WHERE id = %s FOR KEY SHARE", (project["id"],))
        patch = in_thread(
            send, editor, "PATCH", f"/api/projects/{project['id']}", {"description": "d"}
        )
        wait_until(lambda: patch.done() or holder.waiters() > 0, "the patch ends or waits")
        assert holder.waiters() == 0, "a project update waited for a task create in it"
        response = patch.result()
    assert response.status_int == 200, response.body


def test_deleting_a_project_while_tasks_are_created_in_it_is_never_a_500(writers, admin):
    clients = [writers() for _ in range(4)]
    statuses = []
    for round_number in range(12):
        project = create_project(clients[0], f"Round {round_number}")
        calls = [in_thread(send, clients[0], "DELETE", f"/api/projects/{project['id']}")]
        calls += [
            in_thread(
                send, client, "POST", "/api/tasks", {"project_id": project["id"], "title": "T"}
            )
            for client in clients[1:]
        ]
        for call in calls:
            response = call.result()
            statuses.append(response.status_int)
            if response.status_int == 422:
                assert_error(response, 422, "validation_failed", {"project_id"})
    assert set(statuses) <= {201, 204, 422}, statuses
    assert statuses.count(204) == 12
    assert orphan_tasks(admin) == []
    assert tenant_rows(admin, "acme", Task) == []


# --- 4: a kept cursor is a feed -----------------------------------------------------


def walk_keeping_a_cursor(client, path):
    """Walk ``path`` one row a page; the ids seen and the last ``next`` handed out."""
    seen, kept, cursor = [], None, None
    for _ in range(1000):
        params = {"limit": "1", **({"after": cursor} if cursor else {})}
        page = client.get(path, params=params).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            return seen, kept
        kept = cursor
    raise AssertionError("the pages never ended")


@pytest.mark.postgresql_only
@pytest.mark.parametrize("table", ["tasks", "projects"])
def test_a_kept_cursor_returns_a_row_whose_writer_drew_its_id_first(writers, admin, table):
    from tenantapp.services.insert_order import ID_ORDER_LOCKS

    reader = writers()
    project = create_project(reader, "Base")
    if table == "tasks":
        path = "/api/tasks"
        for title in ("first", "second"):
            create_task(reader, project, title)
        insert = (
            "INSERT INTO tasks (project_id, title, title_key, status, created_at, updated_at,"
            " version) VALUES (%s, 'Held', 'held', 'open', now(), now(), 1) RETURNING id"
        )
        params = (project["id"],)
        bodies = [{"project_id": project["id"], "title": f"Racing {n}"} for n in range(2)]
    else:
        path = "/api/projects"
        create_project(reader, "Second")
        insert = (
            "INSERT INTO projects (name, name_key, description, created_at, updated_at, version)"
            " VALUES ('Held', 'held', '', now(), now(), 1) RETURNING id"
        )
        params = ()
        bodies = [{"name": f"Racing {n}"} for n in range(2)]
    with lock_holder(admin) as holder:
        # Writer A, as the app writes: the lock on the order of ids, then an
        # id drawn, and no commit yet.
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", ID_ORDER_LOCKS[table])
        [[held_id]] = holder.execute(insert, params)
        racing = [in_thread(send, writers(), "POST", path, body) for body in bodies]
        # Writers B and C either wait for A (ids in order) or commit past it.
        wait_until(
            lambda: all(call.done() for call in racing) or holder.waiters() == 2,
            "the racing writers commit or wait",
        )
        seen, kept = walk_keeping_a_cursor(reader, path)
        holder.commit()
        responses = [call.result() for call in racing]
    assert [r.status_int for r in responses] == [201, 201], [r.body for r in responses]
    assert kept is not None
    followed = [item["id"] for item in walk(reader, path, 1, after=kept)]
    assert held_id in followed, f"row {held_id} is behind the kept cursor; the feed had {followed}"
    every_id = [row["id"] for row in walk(reader, path, 200)]
    assert sorted(set(seen) | set(followed)) == every_id
