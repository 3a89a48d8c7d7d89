"""A tenant's life from the command line (issue 14): fast creation from a
template, ``tenant delete``, ``tenant export`` / ``tenant import``."""

import io
import json
import os
import tracemalloc
from datetime import UTC, datetime

import psycopg2
import pytest
import test_cli
from races import LockHolder, in_thread, libpq_url
from sqlalchemy import func, insert, select
from test_cli import HEAD, catalog_tenant_names, tenant_database_exists, unique

from conftest import tenant_rows
from pg_cluster import ClusterError, PostgresCluster
from tenantapp import transfer
from tenantapp.db import template
from tenantapp.db.provisioning import drop_database
from tenantapp.models.catalog import Membership, Tenant
from tenantapp.models.tenant import Project, Task

admin_cli = test_cli.admin_cli
ini_file = test_cli.ini_file


@pytest.fixture(scope="module")
def prepared_server():
    """A PostgreSQL server that allows prepared transactions (the suite's does not)."""
    try:
        cluster = PostgresCluster(settings={"max_prepared_transactions": 4}).start()
    except (ClusterError, OSError) as exc:
        pytest.fail(f"a PostgreSQL cluster could not start: {exc}")
    yield cluster
    cluster.destroy()


def memberships_of(admin, name):
    with admin.catalog.transaction(write=False) as db:
        return db.execute(select(Membership.user_id).join(Tenant).where(Tenant.name == name)).all()


def create_suspended(admin_cli, name, *extra):
    assert admin_cli("tenant", "create", name, *extra).code == 0
    assert admin_cli("tenant", "suspend", name).code == 0


# --- tenant delete -------------------------------------------------------------


def test_delete_without_yes_is_a_usage_error(admin_cli, admin):
    name = unique("del")
    create_suspended(admin_cli, name)
    result = admin_cli("tenant", "delete", name)
    assert result.code == 2
    assert name in catalog_tenant_names(admin)


def test_delete_refuses_an_active_tenant(admin_cli, admin, backend, db_urls):
    name = unique("del")
    assert admin_cli("tenant", "create", name).code == 0
    result = admin_cli("tenant", "delete", name, "--yes")
    assert result.code == 1
    assert "suspend" in result.one_error_line()
    assert name in catalog_tenant_names(admin)
    assert tenant_database_exists(backend, db_urls, name)


def test_delete_of_an_unknown_tenant_is_an_error(admin_cli):
    result = admin_cli("tenant", "delete", unique("nobody"), "--yes")
    assert result.code == 1
    assert "no such tenant" in result.one_error_line()


def test_delete_then_create_again_serves_an_empty_tenant(
    admin_cli, admin, app, backend, db_urls, client, make_user
):
    name = unique("del")
    assert admin_cli("tenant", "create", name).code == 0
    make_user("dora", **{name: "admin"})
    client.login("dora", tenant=name)
    client.post("/api/projects", {"name": "old data"}, status=201)
    assert len(client.get("/api/projects").json["items"]) == 1  # the app's pool is open
    assert admin_cli("tenant", "suspend", name).code == 0

    result = admin_cli("tenant", "delete", name, "--yes")
    assert result.code == 0, result.err
    assert not tenant_database_exists(backend, db_urls, name)
    if backend == "sqlite":
        path = db_urls["template"].format(name=name).removeprefix("sqlite:///")
        assert not any(os.path.exists(path + suffix) for suffix in ("", "-wal", "-shm"))
    assert name not in catalog_tenant_names(admin)
    assert memberships_of(admin, name) == []
    # The session that had it chosen has none now.
    assert client.get("/api/me").json["tenant"] is None
    assert client.get("/api/projects", status=403).json["error"]["code"] == "tenant_required"

    # The name can be used again: an empty tenant, served by the running app.
    assert admin_cli("tenant", "create", name).code == 0
    make_user("eve", **{name: "admin"})
    client.login("eve", tenant=name)
    assert client.get("/api/projects").json["items"] == []
    client.post("/api/projects", {"name": "new data"}, status=201)
    assert [p["name"] for p in client.get("/api/projects").json["items"]] == ["new data"]


def test_delete_finishes_what_a_failed_run_left(admin_cli, admin, backend, db_urls):
    # A run whose catalog commit failed after the drop: the database is gone,
    # the suspended tenant is still in the catalog. Running again finishes it.
    name = unique("del")
    create_suspended(admin_cli, name)
    drop_database(db_urls["template"].format(name=name))
    result = admin_cli("tenant", "delete", name, "--yes")
    assert result.code == 0, result.err
    assert name not in catalog_tenant_names(admin)


@pytest.mark.postgresql_only
def test_delete_refused_while_transactions_are_prepared_then_finished(
    admin_cli, admin, prepared_server
):
    name = unique("del")
    url = prepared_server.url(f"tenant_{name}")
    create_suspended(admin_cli, name, "--url", url)
    pending = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    with pending.cursor() as cursor:
        cursor.execute("CREATE TABLE left_prepared (x integer)")
        cursor.execute(f"PREPARE TRANSACTION '{name}'")
    pending.close()

    result = admin_cli("tenant", "delete", name, "--yes")
    assert result.code == 1
    assert "prepared" in result.one_error_line()
    assert name in catalog_tenant_names(admin)  # nothing removed: run it again later
    with admin.catalog.transaction(write=False) as db:
        assert db.execute(select(Tenant.status).where(Tenant.name == name)).scalar() == "suspended"

    settle = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    settle.autocommit = True
    with settle.cursor() as cursor:
        cursor.execute(f"ROLLBACK PREPARED '{name}'")  # in its own database, as it must
    settle.close()
    result = admin_cli("tenant", "delete", name, "--yes")
    assert result.code == 0, result.err
    assert name not in catalog_tenant_names(admin)


@pytest.mark.postgresql_only
def test_delete_ends_open_connections_to_the_database(admin_cli, admin, backend, db_urls):
    name = unique("del")
    create_suspended(admin_cli, name)
    holder = LockHolder(db_urls["template"].format(name=name))
    holder.execute("SELECT 1")  # a transaction left open on it
    result = admin_cli("tenant", "delete", name, "--yes")
    assert result.code == 0, result.err
    assert not tenant_database_exists(backend, db_urls, name)
    with pytest.raises(psycopg2.Error):
        holder.execute("SELECT 1")
    holder.connection.close()


# --- tenant create from the template ---------------------------------------------


def template_databases(db_urls):
    return {d for d in test_cli.pg_databases(db_urls) if d.startswith(template.PREFIX)}


def sqlite_templates(db_urls):
    folder = os.path.dirname(db_urls["template"].removeprefix("sqlite:///"))
    return {f for f in os.listdir(folder) if f.startswith(template.SQLITE_PREFIX)}


def test_tenant_created_from_the_template_is_at_head_and_works(
    admin_cli, backend, db_urls, client, make_user
):
    # init (the admin fixture's) made the template.
    if backend == "sqlite":
        assert sqlite_templates(db_urls) == {f".template-{HEAD}.sqlite"}
    else:
        assert template_databases(db_urls) == {template.template_name(HEAD)}
    name = unique("tpl")
    result = admin_cli("tenant", "create", name)
    assert result.code == 0, result.err
    assert result.err == ""  # no fallback warning: it was copied
    assert test_cli.tenant_list(admin_cli)[name]["schema_version"] == HEAD
    make_user("tina", **{name: "editor"})
    client.login("tina", tenant=name)
    created = client.post("/api/projects", {"name": "from the template"}, status=201).json
    task = client.post("/api/tasks", {"project_id": created["id"], "title": "t"}, status=201)
    assert task.json["project_id"] == created["id"]


@pytest.mark.postgresql_only
def test_the_template_refuses_connections_so_cloning_never_finds_it_busy(admin_cli, db_urls):
    name = template.template_name(HEAD)
    url = db_urls["catalog"].rsplit("/", 1)[0] + f"/{name}"
    observer = LockHolder(db_urls["catalog"])
    allowed = observer.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,))
    observer.release()
    assert allowed == [(False,)]
    with pytest.raises(psycopg2.OperationalError, match="not currently accepting connections"):
        psycopg2.connect(libpq_url(url))
    # Two tenants created one after the other, each a clone, while another
    # tenant's connection stays open.
    first, second = unique("tpl"), unique("tpl")
    assert admin_cli("tenant", "create", first).code == 0
    holder = LockHolder(db_urls["template"].format(name=first))
    try:
        result = admin_cli("tenant", "create", second)
        assert result.code == 0 and result.err == "", result.err
    finally:
        holder.release()


def test_a_stale_template_is_replaced(admin_cli, admin, backend, db_urls):
    if backend == "sqlite":
        folder = os.path.dirname(db_urls["template"].removeprefix("sqlite:///"))
        os.remove(os.path.join(folder, f".template-{HEAD}.sqlite"))
        open(os.path.join(folder, ".template-t0000.sqlite"), "wb").close()
    else:
        holder = LockHolder(db_urls["catalog"])
        holder.connection.autocommit = True
        holder.execute(f'DROP DATABASE "{template.template_name(HEAD)}"')
        holder.execute('CREATE DATABASE "tenantapp_template_t0000"')
        holder.execute('ALTER DATABASE "tenantapp_template_t0000" ALLOW_CONNECTIONS false')
        holder.release()
    name = unique("tpl")
    result = admin_cli("tenant", "create", name)
    assert result.code == 0 and result.err == "", result.err
    if backend == "sqlite":
        assert sqlite_templates(db_urls) == {f".template-{HEAD}.sqlite"}
    else:
        assert template_databases(db_urls) == {template.template_name(HEAD)}
    assert test_cli.tenant_list(admin_cli)[name]["schema_version"] == HEAD


def test_init_and_migrate_remake_a_missing_template(admin_cli, backend, db_urls):
    def remove():
        if backend == "sqlite":
            folder = os.path.dirname(db_urls["template"].removeprefix("sqlite:///"))
            os.remove(os.path.join(folder, f".template-{HEAD}.sqlite"))
        else:
            drop_database(db_urls["catalog"].rsplit("/", 1)[0] + f"/{template.template_name(HEAD)}")

    def present():
        if backend == "sqlite":
            return sqlite_templates(db_urls) == {f".template-{HEAD}.sqlite"}
        return template_databases(db_urls) == {template.template_name(HEAD)}

    remove()
    assert not present()
    assert admin_cli("init").code == 0
    assert present()
    remove()
    assert admin_cli("tenant", "migrate", "--all").code == 0
    assert present()


def test_create_falls_back_to_migrating_when_the_template_is_unusable(
    admin_cli, backend, db_urls, client, make_user
):
    if backend == "sqlite":
        # A folder where the template file should be: it cannot be copied.
        folder = os.path.dirname(db_urls["template"].removeprefix("sqlite:///"))
        blocker = os.path.join(folder, f".template-{HEAD}.sqlite")
        os.remove(blocker)
        os.mkdir(blocker)
        holder = None
    else:
        # A half-built template somebody is connected to: it cannot be
        # dropped and made again, nor cloned.
        name = template.template_name(HEAD)
        admin_holder = LockHolder(db_urls["catalog"])
        admin_holder.connection.autocommit = True
        admin_holder.execute(f'DROP DATABASE "{name}"')
        admin_holder.execute(f'CREATE DATABASE "{name}"')
        admin_holder.release()
        holder = LockHolder(db_urls["catalog"].rsplit("/", 1)[0] + f"/{name}")
    try:
        tenant = unique("fb")
        result = admin_cli("tenant", "create", tenant)
        assert result.code == 0, result.err
        line = result.one_error_line()
        assert line.startswith("tenantapp-admin: warning:") and "migrating instead" in line
    finally:
        if backend == "sqlite":
            os.rmdir(blocker)
        else:
            holder.release()
    assert test_cli.tenant_list(admin_cli)[tenant]["schema_version"] == HEAD
    make_user("fred", **{tenant: "editor"})
    client.login("fred", tenant=tenant)
    client.post("/api/projects", {"name": "migrated"}, status=201)
    # The next create makes the template again and copies it.
    result = admin_cli("tenant", "create", unique("fb"))
    assert result.code == 0 and result.err == "", result.err


# --- tenant export / tenant import ------------------------------------------------


def fill(client):
    """Two projects and three tasks through the API; the API's own views of them."""
    first = client.post("/api/projects", {"name": "Alpha", "description": "ä ✓"}, status=201)
    second = client.post("/api/projects", {"name": "Beta"}, status=201).json
    client.patch(f"/api/projects/{second['id']}", {"description": "edited"})
    for title, extra in (
        ("one", {"assignee": "ann", "due_date": "2031-02-03"}),
        ("two", {"status": "done"}),
    ):
        client.post("/api/tasks", {"project_id": first.json["id"], "title": title, **extra}, 201)
    client.post("/api/tasks", {"project_id": second["id"], "title": "three"}, status=201)
    return (
        client.get("/api/projects").json["items"],
        client.get("/api/tasks").json["items"],
    )


def export_to(admin_cli, name, path):
    result = admin_cli("tenant", "export", name, str(path))
    assert result.code == 0, result.err
    return json.loads(path.read_text())


def test_export_then_import_keeps_ids_versions_and_timestamps(
    admin_cli, tmp_path, client, make_user
):
    source, target = unique("src"), unique("dst")
    for name in (source, target):
        assert admin_cli("tenant", "create", name).code == 0
    make_user("ivy", **{source: "editor", target: "editor"})
    client.login("ivy", tenant=source)
    projects, tasks = fill(client)
    client.delete(f"/api/tasks/{tasks[0]['id']}")  # a gap in the ids
    tasks = tasks[1:]

    document = export_to(admin_cli, source, tmp_path / "out.json")
    assert document["format"] == "tenantapp-export" and document["version"] == 1
    assert document["tenant"] == source and document["schema_revision"] == HEAD
    assert [p["id"] for p in document["projects"]] == [p["id"] for p in projects]

    result = admin_cli("tenant", "import", target, str(tmp_path / "out.json"))
    assert result.code == 0, result.err
    client.login("ivy", tenant=target)
    assert client.get("/api/projects").json["items"] == projects
    assert client.get("/api/tasks").json["items"] == tasks
    # New rows continue after the highest imported id.
    top = max(t["id"] for t in tasks)
    made = client.post("/api/tasks", {"project_id": projects[0]["id"], "title": "new"}, 201)
    assert made.json["id"] > top
    made = client.post("/api/projects", {"name": "Gamma"}, status=201)
    assert made.json["id"] > max(p["id"] for p in projects)


def test_export_to_standard_output(admin_cli, client, make_user):
    name = unique("src")
    assert admin_cli("tenant", "create", name).code == 0
    make_user("sam", **{name: "editor"})
    client.login("sam", tenant=name)
    fill(client)
    result = admin_cli("tenant", "export", name, "-")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert len(document["projects"]) == 2 and len(document["tasks"]) == 3


def test_import_refuses_a_tenant_with_projects(admin_cli, tmp_path, client, make_user):
    name = unique("src")
    assert admin_cli("tenant", "create", name).code == 0
    make_user("pat", **{name: "editor"})
    client.login("pat", tenant=name)
    projects, tasks = fill(client)
    export_to(admin_cli, name, tmp_path / "out.json")
    result = admin_cli("tenant", "import", name, str(tmp_path / "out.json"))
    assert result.code == 1
    assert "has projects already" in result.one_error_line()
    assert client.get("/api/tasks").json["items"] == tasks


def _good_document():
    stamp = "2030-01-02T03:04:05.123456+00:00"
    return {
        "format": "tenantapp-export",
        "version": 1,
        "tenant": "x",
        "schema_revision": HEAD,
        "projects": [
            {"id": 3, "name": "P", "description": "", "created_at": stamp,
             "updated_at": stamp, "version": 2},
        ],
        "tasks": [
            {"id": 7, "project_id": 3, "title": "T", "status": "open", "assignee": None,
             "due_date": None, "created_at": stamp, "updated_at": stamp, "version": 1},
            {"id": 9, "project_id": 3, "title": "U", "status": "done", "assignee": "a",
             "due_date": "2030-05-06", "created_at": stamp, "updated_at": stamp, "version": 4},
        ],
    }  # fmt: skip


def _bad(change):
    document = _good_document()
    change(document)
    return json.dumps(document, indent=1)


BAD_FILES = {
    "not_json": "this is not JSON",
    "truncated": json.dumps(_good_document(), indent=1)[:-40],
    "wrong_format": _bad(lambda d: d.update(format="something-else")),
    "wrong_version": _bad(lambda d: d.update(version=2)),
    "missing_field": _bad(lambda d: d["tasks"][1].pop("title")),
    "unknown_project": _bad(lambda d: d["tasks"][1].update(project_id=4)),
    "bad_date": _bad(lambda d: d["tasks"][1].update(due_date="2030-13-01")),
    "bad_time": _bad(lambda d: d["tasks"][1].update(created_at="yesterday")),
    "naive_time": _bad(lambda d: d["tasks"][1].update(created_at="2030-01-02T03:04:05")),
    "duplicate_task": _bad(lambda d: d["tasks"][1].update(id=7)),
    "duplicate_project": _bad(lambda d: d["projects"].append(dict(d["projects"][0]))),
    "bad_status": _bad(lambda d: d["tasks"][1].update(status="bogus")),
    "trailing": json.dumps(_good_document()) + " {}",
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_import_of_a_bad_file_writes_nothing(admin_cli, admin, tmp_path, case):
    name = unique("dst")
    assert admin_cli("tenant", "create", name).code == 0
    path = tmp_path / "bad.json"
    path.write_text(BAD_FILES[case])
    result = admin_cli("tenant", "import", name, str(path))
    assert result.code == 1
    assert "not imported: invalid file" in result.one_error_line()
    assert tenant_rows(admin, name, Project) == []
    assert tenant_rows(admin, name, Task) == []
    # And the good one goes in whole.
    path.write_text(json.dumps(_good_document()))
    assert admin_cli("tenant", "import", name, str(path)).code == 0
    assert [t.id for t in tenant_rows(admin, name, Task)] == [7, 9]


def _many_tasks(admin, name, count):
    stamp = datetime(2030, 1, 2, tzinfo=UTC)
    with admin.directory.factory(name).transaction() as db:
        db.execute(
            insert(Project.__table__),
            [{"id": 1, "name": "big", "name_key": "big", "description": "",
              "created_at": stamp, "updated_at": stamp, "version": 1}],
        )  # fmt: skip
        rows = [
            {"id": i, "project_id": 1, "title": f"task number {i} " + "x" * 100,
             "title_key": f"task number {i} " + "x" * 100, "status": "open",
             "assignee": "someone", "due_date": None, "created_at": stamp,
             "updated_at": stamp, "version": 1}
            for i in range(1, count + 1)
        ]  # fmt: skip
        for start in range(0, count, 5000):
            db.execute(insert(Task.__table__), rows[start : start + 5000])


def test_export_and_import_are_streamed(admin_cli, admin, tmp_path):
    source, target, warm = unique("big"), unique("big"), unique("warm")
    for name in (source, target, warm):
        assert admin_cli("tenant", "create", name).code == 0
    _many_tasks(admin, source, 20_000)
    path = tmp_path / "big.json"
    # The CLI commands once, then the transfer functions alone under tracemalloc
    # (a command's own start-up, its app's configuration, would blur the peak).
    assert admin_cli("tenant", "export", source, str(path)).code == 0
    size = path.stat().st_size
    assert size > 3_000_000
    url = admin.directory.url_for(source)
    # Once untraced: the first use fills caches of compiled statements and
    # types, a fixed cost that has nothing to do with the file.
    small = tmp_path / "small.json"
    small.write_text(json.dumps(_good_document()))
    with open(small) as stream, admin.directory.factory(warm).transaction() as session:
        transfer.import_tenant(session, stream)
    with open(tmp_path / "small-out.json", "w") as out:
        transfer.export_tenant(admin.directory.url_for(warm), warm, HEAD, out)
    tracemalloc.start()
    try:
        with open(tmp_path / "again.json", "w") as out:
            transfer.export_tenant(url, source, HEAD, out)
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        factory = admin.directory.factory(target)
        with open(path) as stream, factory.transaction() as session:
            assert transfer.import_tenant(session, stream) == (1, 20_000)
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "again.json").read_text() == path.read_text()
    # Holding the rows (or the document) would take several times the size.
    # The import's peak is a constant of the driver's batches (about 2.9 MB
    # on PostgreSQL for 10,000 as for 40,000 tasks), not of the file.
    assert export_peak < size / 4, (export_peak, size)
    assert import_peak < size / 2, (import_peak, size)
    with admin.directory.factory(target).transaction(write=False) as db:
        assert db.execute(select(func.count()).select_from(Task)).scalar() == 20_000


@pytest.mark.postgresql_only
def test_export_from_postgresql_into_sqlite_and_back(admin_cli, admin, tmp_path, client, make_user):
    source, middle, back = unique("pg"), unique("lite"), unique("pg")
    assert admin_cli("tenant", "create", source).code == 0
    assert (
        admin_cli("tenant", "create", middle, "--url", f"sqlite:///{tmp_path}/m.sqlite").code == 0
    )
    assert admin_cli("tenant", "create", back).code == 0
    make_user("max", **{source: "editor", middle: "editor", back: "editor"})
    client.login("max", tenant=source)
    projects, tasks = fill(client)
    export_to(admin_cli, source, tmp_path / "pg.json")
    assert admin_cli("tenant", "import", middle, str(tmp_path / "pg.json")).code == 0
    client.login("max", tenant=middle)
    assert client.get("/api/tasks").json["items"] == tasks
    export_to(admin_cli, middle, tmp_path / "lite.json")
    assert admin_cli("tenant", "import", back, str(tmp_path / "lite.json")).code == 0
    client.login("max", tenant=back)
    assert client.get("/api/projects").json["items"] == projects
    assert client.get("/api/tasks").json["items"] == tasks


@pytest.mark.postgresql_only
def test_export_is_one_snapshot_of_a_live_tenant(admin_cli, admin, client, make_user):
    name = unique("live")
    assert admin_cli("tenant", "create", name).code == 0
    make_user("liv", **{name: "editor"})
    client.login("liv", tenant=name)
    projects, tasks = fill(client)
    url = admin.directory.url_for(name)
    # The export reads projects, then waits for the tasks table; meanwhile a
    # project and a task of it are committed. Read committed would show the
    # task without its project; one snapshot shows neither.
    holder = LockHolder(url)
    holder.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
    out = io.StringIO()
    export = in_thread(transfer.export_tenant, url, name, HEAD, out)
    holder.wait_for_waiters(1)
    late = holder.execute(
        "INSERT INTO projects (name, name_key, description, created_at, updated_at, version) "
        "VALUES ('late', 'late', '', now(), now(), 1) RETURNING id"
    )[0][0]
    holder.execute(
        "INSERT INTO tasks (project_id, title, title_key, status, created_at, updated_at, "
        "version) VALUES (%s, 'late', 'late', 'open', now(), now(), 1)",
        (late,),
    )
    holder.commit()
    assert export.result() == (2, 3)
    document = json.loads(out.getvalue())
    assert [p["id"] for p in document["projects"]] == [p["id"] for p in projects]
    assert [t["id"] for t in document["tasks"]] == [t["id"] for t in tasks]
