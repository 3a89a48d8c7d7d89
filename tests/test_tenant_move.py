"""``tenant move`` while the tenant serves (issue 14, item 4), and what a
running app does meanwhile: reads go on, writes answer 503, a write that read
the old URL is run again on the new database, and every process follows the
catalog on its next request."""

import sqlite3

import psycopg2
import pytest
import test_cli
from alembic import command
from races import LockHolder, in_thread, libpq_url
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from test_cli import catalog_tenant_names, tenant_database_exists, unique

from conftest import tenant_rows
from tenantapp import cli as cli_module
from tenantapp import migrations
from tenantapp.db.engines import make_engine, normalize_url, writing_engine
from tenantapp.db.provisioning import create_database, drop_database
from tenantapp.db.relocation import MOVED_MESSAGE
from tenantapp.models.catalog import Tenant
from tenantapp.models.tenant import Project, Task
from tenantapp.services.insert_order import ID_ORDER_LOCKS

admin_cli = test_cli.admin_cli
ini_file = test_cli.ini_file

# The id-order lock of tasks (tenantapp.services.insert_order): a POST of a
# task waits on it after it has read the tenant's URL and checked its project.
TASK_INSERT_LOCK = "SELECT pg_advisory_xact_lock({}, {})".format(*ID_ORDER_LOCKS["tasks"])


def tenant_state(admin, name):
    with admin.catalog.transaction(write=False) as db:
        row = db.execute(select(Tenant.status, Tenant.db_url).where(Tenant.name == name)).one()
    return row.status, row.db_url


def set_status(admin, name, status):
    with admin.catalog.transaction() as db:
        db.execute(Tenant.__table__.update().where(Tenant.name == name).values(status=status))


def new_url(db_urls, name):
    return db_urls["template"].format(name=f"{name}_moved")


def old_url(db_urls, name):
    return db_urls["template"].format(name=name)


def write_in_flight(db_urls, name, client, title):
    """A task inserted into tenant ``name``'s old database by a connection of
    the test's own, in a transaction left open: a writer in flight, holding
    its lock until the test commits or releases it."""
    project_id = client.get("/api/projects").json["items"][0]["id"]
    writer = LockHolder(old_url(db_urls, name))
    writer.execute(
        "INSERT INTO tasks (project_id, title, title_key, status, created_at, updated_at, version) "
        "VALUES (%s, %s, %s, 'open', now(), now(), 1)",
        (project_id, title, title),
    )
    return writer


def write_directly(url, sql):
    """Run a write on ``url`` with a connection of the test's own; the error text or None."""
    engine = writing_engine(make_engine(url, pool_size=1, pool_timeout=2, connect_timeout=2))
    try:
        with engine.begin() as connection:
            connection.execute(text(sql))
    except Exception as exc:  # noqa: BLE001 - the message is what the test reads
        return str(exc)
    finally:
        engine.dispose()
    return None


@pytest.fixture
def busy_tenant(admin_cli, make_user, new_client):
    """A tenant with a project and three tasks, one of them edited twice, and a
    client (its admin) whose app has the tenant's pool open."""
    name = unique("mv")
    assert admin_cli("tenant", "create", name).code == 0
    make_user(f"{name}_admin", **{name: "admin"})
    client = new_client()
    client.login(f"{name}_admin", tenant=name)
    project = client.post("/api/projects", {"name": "Launch"}, status=201).json
    for title in ("one", "two", "three"):
        task = client.post(
            "/api/tasks", {"project_id": project["id"], "title": title}, status=201
        ).json
    for status in ("in_progress", "done"):
        task = client.patch(f"/api/tasks/{task['id']}", {"status": status}).json
    client.get("/api/tasks")  # the app's pool on the old database is open
    return name, client


def snapshot(admin, name):
    columns = {
        Project: ("id", "name", "description", "created_at", "updated_at", "version"),
        Task: ("id", "project_id", "title", "status", "created_at", "updated_at", "version"),
    }
    return {
        model.__name__: [
            tuple(getattr(row, c) for c in columns[model])
            for row in tenant_rows(admin, name, model)
        ]
        for model in (Project, Task)
    }


# --- the move ----------------------------------------------------------------------


def test_move_copies_everything_and_the_running_app_follows(
    admin_cli, admin, busy_tenant, db_urls, backend
):
    name, client = busy_tenant
    before = snapshot(admin, name)
    target = new_url(db_urls, name)

    result = admin_cli("tenant", "move", name, "--url", target)

    assert result.code == 0, result.err
    assert f"tenant {name} moved to" in result.out
    assert "1 project(s), 3 task(s)" in result.out
    assert "old database kept" in result.out
    stored = normalize_url(target).render_as_string(hide_password=False)
    assert tenant_state(admin, name) == ("active", stored)
    # Ids, versions and timestamps as they were, read from the new database.
    assert snapshot(admin, name) == before
    # The running app reads the new database from its next request and writes there.
    assert [t["title"] for t in client.get("/api/tasks").json["items"]] == ["one", "two", "three"]
    project_id = before["Project"][0][0]
    created = client.post(
        "/api/tasks", {"project_id": project_id, "title": "four"}, status=201
    ).json
    assert created["id"] > max(row[0] for row in before["Task"])  # ids continue
    assert [t.title for t in tenant_rows(admin, name, Task)][-1] == "four"
    # The old database is kept, as it was, and refuses every write.
    old = old_url(db_urls, name)
    assert tenant_database_exists(backend, db_urls, name)
    for sql in (
        "UPDATE tasks SET title = 'lost'",
        "DELETE FROM tasks",
        "INSERT INTO projects (name, name_key, description, created_at, updated_at, version) "
        "VALUES ('x', 'x', '', '2026-01-01', '2026-01-01', 1)",
    ):
        assert MOVED_MESSAGE in (write_directly(old, sql) or ""), sql


def test_move_with_drop_old_removes_the_old_database(
    admin_cli, admin, busy_tenant, db_urls, backend
):
    name, client = busy_tenant

    result = admin_cli("tenant", "move", name, "--url", new_url(db_urls, name), "--drop-old")

    assert result.code == 0, result.err
    assert "dropped" in result.out
    assert not tenant_database_exists(backend, db_urls, name)
    assert len(client.get("/api/tasks").json["items"]) == 3
    client.post("/api/projects", {"name": "after"}, status=201)


@pytest.mark.postgresql_only
def test_the_app_keeps_serving_a_moved_tenant_when_its_old_server_is_gone(
    admin_cli, admin, make_user, new_client, db_urls, second_server
):
    name = unique("mv")
    assert admin_cli("tenant", "create", name, "--url", second_server.url(f"t_{name}")).code == 0
    make_user(f"{name}_admin", **{name: "admin"})
    client = new_client()
    client.login(f"{name}_admin", tenant=name)
    client.post("/api/projects", {"name": "Kept"}, status=201)

    result = admin_cli("tenant", "move", name, "--url", new_url(db_urls, name))
    assert result.code == 0, result.err
    second_server.stop()
    try:
        assert [p["name"] for p in client.get("/api/projects").json["items"]] == ["Kept"]
        client.post("/api/projects", {"name": "Written after"}, status=201)
    finally:
        second_server.start()


def test_writes_answer_503_and_reads_go_on_while_a_tenant_moves(
    admin_cli, admin, busy_tenant, new_client
):
    name, client = busy_tenant
    task_id = client.get("/api/tasks").json["items"][0]["id"]
    set_status(admin, name, "moving")  # what `tenant move` holds while it copies

    assert len(client.get("/api/tasks").json["items"]) == 3
    assert client.get(f"/api/tasks/{task_id}").json["title"] == "one"
    for response in (
        client.post("/api/projects", {"name": "refused"}, status=503),
        client.patch(f"/api/tasks/{task_id}", {"title": "refused"}, status=503),
        client.delete(f"/api/tasks/{task_id}", status=503),
    ):
        assert response.json["error"]["code"] == "service_unavailable"
        assert "moving" in response.json["error"]["message"]
        assert int(response.headers["Retry-After"]) > 0
    # A page's form answers with the HTML error page, the same status.
    page = client.test_app.get("/projects")
    assert page.status_int == 200
    # The tenant can be chosen, and is listed as usable.
    client.put("/api/session/tenant", {"tenant": name})
    listed = admin_cli("tenant", "list")
    assert any(line.split()[:2] == [name, "moving"] for line in listed.out.splitlines())
    assert [t.title for t in tenant_rows(admin, name, Task)] == ["one", "two", "three"]

    # An interrupted move is ended by resuming the tenant.
    assert admin_cli("tenant", "resume", name).code == 0
    client.post("/api/projects", {"name": "accepted"}, status=201)


@pytest.mark.postgresql_only
def test_a_write_in_flight_when_the_move_starts_is_moved_with_it(
    admin_cli, admin, busy_tenant, db_urls
):
    name, client = busy_tenant
    in_flight = write_in_flight(db_urls, name, client, "in flight")
    move = in_thread(admin_cli, "tenant", "move", name, "--url", new_url(db_urls, name))
    try:
        in_flight.wait_for_waiters(1)  # the move waits for the writer in flight
        # Meanwhile the tenant reads, and refuses new writes.
        assert len(client.get("/api/tasks").json["items"]) == 3
        client.post("/api/projects", {"name": "refused"}, status=503)
    finally:
        in_flight.commit()
    result = move.result()

    assert result.code == 0, result.err
    assert [t.title for t in tenant_rows(admin, name, Task)][-1] == "in flight"
    assert len(client.get("/api/tasks").json["items"]) == 4


@pytest.mark.postgresql_only
def test_a_write_that_read_the_old_url_runs_again_on_the_new_database(
    admin_cli, admin, busy_tenant, db_urls
):
    name, client = busy_tenant
    project_id = client.get("/api/projects").json["items"][0]["id"]
    # A POST parked after it read the tenant's (old) URL and checked the project.
    parked = LockHolder(old_url(db_urls, name))
    parked.execute(TASK_INSERT_LOCK)
    post = in_thread(client.post, "/api/tasks", {"project_id": project_id, "title": "late"}, 201)
    try:
        parked.wait_for_waiters(1)
        result = admin_cli("tenant", "move", name, "--url", new_url(db_urls, name))
        assert result.code == 0, result.err
    finally:
        parked.release()
    created = post.result().json

    # Its insert met the old database's fence; run again, it wrote to the new one.
    new_titles = [t.title for t in tenant_rows(admin, name, Task)]
    assert new_titles[-1] == "late"
    assert created["title"] == "late"
    with psycopg2.connect(libpq_url(old_url(db_urls, name))) as old, old.cursor() as cursor:
        cursor.execute("SELECT title FROM tasks ORDER BY id")
        assert [row[0] for row in cursor.fetchall()] == ["one", "two", "three"]
    old.close()


@pytest.mark.postgresql_only
def test_a_failed_move_switches_nothing(admin_cli, admin, busy_tenant, db_urls, monkeypatch):
    name, client = busy_tenant
    monkeypatch.setattr(cli_module, "MOVE_LOCK_WAIT_S", 0.3)
    # A writer that never finishes in time: the move gives up waiting.
    in_flight = write_in_flight(db_urls, name, client, "slow writer")
    try:
        result = admin_cli("tenant", "move", name, "--url", new_url(db_urls, name))
    finally:
        in_flight.commit()

    assert result.code == 1
    assert "nothing switched" in result.one_error_line()
    assert tenant_state(admin, name) == ("active", None)
    assert not tenant_database_exists("postgresql", db_urls, f"{name}_moved")
    # Writes resume on the old database, the slow writer's row with them.
    client.post("/api/projects", {"name": "after the failure"}, status=201)
    assert [t.title for t in tenant_rows(admin, name, Task)][-1] == "slow writer"
    # No fence was left behind.
    assert write_directly(old_url(db_urls, name), "UPDATE tasks SET title = title") is None


# --- refusals ----------------------------------------------------------------------


def test_move_refusals_change_nothing(admin_cli, admin, busy_tenant, db_urls):
    name, client = busy_tenant
    other = unique("mv")
    assert admin_cli("tenant", "create", other).code == 0
    cases = [
        ((unique("nobody"), "--url", new_url(db_urls, name)), "no such tenant"),
        ((name, "--url", old_url(db_urls, name)), "already"),
        ((name, "--url", old_url(db_urls, other)), "two tenants never share a database"),
        ((name, "--url", "mysql://db/x"), "URL"),
    ]
    for args, message in cases:
        result = admin_cli("tenant", "move", *args)
        assert result.code == 1, args
        assert message in result.one_error_line(), (args, result.err)
    result = admin_cli("tenant", "move", name)
    assert result.code == 2  # --url is required
    assert tenant_state(admin, name) == ("active", None)
    assert len(client.get("/api/tasks").json["items"]) == 3


def test_move_refuses_a_database_with_projects_and_keeps_it(admin_cli, admin, busy_tenant, db_urls):
    name, client = busy_tenant
    target = new_url(db_urls, name)
    create_database(target)
    migrations.upgrade_url(target)
    assert (
        write_directly(
            target,
            "INSERT INTO projects (name, name_key, description, created_at, updated_at, version) "
            "VALUES ('Theirs', 'theirs', '', '2026-01-01', '2026-01-01', 1)",
        )
        is None
    )

    result = admin_cli("tenant", "move", name, "--url", target)

    assert result.code == 1
    assert "has projects" in result.one_error_line()
    assert tenant_state(admin, name) == ("active", None)
    assert write_directly(target, "UPDATE projects SET description = 'still here'") is None
    drop_database(target)


def test_a_second_move_of_a_moving_tenant_is_refused(admin_cli, admin, busy_tenant, db_urls):
    name, _ = busy_tenant
    set_status(admin, name, "moving")
    result = admin_cli("tenant", "move", name, "--url", new_url(db_urls, name))
    assert result.code == 1
    assert "moving already" in result.one_error_line()
    assert tenant_state(admin, name) == ("moving", None)
    assert name in catalog_tenant_names(admin)


@pytest.mark.sqlite_only
def test_sqlite_fence_is_no_validation_error(admin_cli, admin, busy_tenant, db_urls):
    # SQLite's fence raises an IntegrityError, which the services otherwise read
    # as a duplicate name: a write that meets it is run again, never a 422.
    name, client = busy_tenant
    old = old_url(db_urls, name)
    assert admin_cli("tenant", "move", name, "--url", new_url(db_urls, name)).code == 0
    connection = sqlite3.connect(old.removeprefix("sqlite:///"))
    with pytest.raises(sqlite3.IntegrityError, match=MOVED_MESSAGE):
        connection.execute("INSERT INTO projects (name) VALUES ('x')")
    connection.close()
    client.post("/api/projects", {"name": "Launch 2"}, status=201)


# --- the catalog migration -----------------------------------------------------------


def test_the_moving_status_migration_keeps_every_catalog_row(admin, backend, db_urls):
    # c0003 copies the tenants table on SQLite; with foreign keys on, dropping
    # the old copy would have deleted every membership and session with it.
    url = db_urls["template"].format(name=unique("catalog"))
    create_database(url)
    engine = writing_engine(make_engine(url, pool_size=1, pool_timeout=2, connect_timeout=2))
    try:
        with engine.begin() as connection:
            command.upgrade(migrations.alembic_config("catalog", connection), "c0002")
            connection.execute(
                text(
                    "INSERT INTO users (id, username, display_name, password_hash, disabled, "
                    "created_at) VALUES (1, 'u', 'U', 'x', false, '2026-01-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO tenants (id, name, display_name, status, created_at) "
                    "VALUES (1, 't', 'T', 'active', '2026-01-01')"
                )
            )
            connection.execute(
                text("INSERT INTO memberships (user_id, tenant_id, role) VALUES (1, 1, 'admin')")
            )
            connection.execute(
                text(
                    "INSERT INTO login_sessions (token_hash, user_id, tenant_id, created_at, "
                    "last_used_at) VALUES ('h', 1, 1, '2026-01-01', '2026-01-01')"
                )
            )
        migrations.upgrade(engine, "catalog")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM memberships")).scalar() == 1
            assert connection.execute(text("SELECT tenant_id FROM login_sessions")).scalar() == 1
            connection.execute(text("UPDATE tenants SET status = 'moving'"))
            with pytest.raises(IntegrityError):
                with connection.begin_nested():
                    connection.execute(text("UPDATE tenants SET status = 'gone'"))
            if backend == "sqlite":
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
        drop_database(url)


def terminate_waiters(holder):
    """Terminate the backends waiting on ``holder``'s locks; how many."""
    with psycopg2.connect(holder.url) as observer, observer.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE %s = ANY(pg_blocking_pids(pid))",
            (holder.pid,),
        )
        count = cursor.fetchone()[0]
    observer.close()
    return count


@pytest.mark.postgresql_only
def test_a_catalog_failing_after_the_copy_switches_nothing(admin_cli, admin, busy_tenant, db_urls):
    # The two databases of a move: the copy is committed in the new one, then
    # the catalog's switch fails. Forced: the move is parked behind a writer
    # in flight (after the tenant was marked moving), the tenant's catalog row
    # is then held, and the command's switch, waiting on it, loses its
    # connection.
    name, client = busy_tenant
    writer = write_in_flight(db_urls, name, client, "in flight")
    move = in_thread(admin_cli, "tenant", "move", name, "--url", new_url(db_urls, name))
    row = None
    try:
        writer.wait_for_waiters(1)  # marked moving, waiting to lock the old tables
        row = LockHolder(db_urls["catalog"])
        row.execute("SELECT 1 FROM tenants WHERE name = %s FOR UPDATE", (name,))
        writer.commit()  # the copy goes on: copied, fenced, then the switch waits
        row.wait_for_waiters(1)
        assert terminate_waiters(row) == 1
    finally:
        if row is not None:
            row.commit()  # the clean-up's own catalog writes go through
    result = move.result()

    assert result.code == 1
    assert "nothing switched" in result.one_error_line()
    assert tenant_state(admin, name) == ("active", None)
    assert not tenant_database_exists("postgresql", db_urls, f"{name}_moved")
    # The old database has everything, the writer's row included, and no fence.
    assert [t.title for t in tenant_rows(admin, name, Task)][-1] == "in flight"
    client.post("/api/projects", {"name": "after the failed switch"}, status=201)
    assert write_directly(old_url(db_urls, name), "UPDATE tasks SET title = title") is None
