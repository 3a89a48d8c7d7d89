"""tenantapp-admin under operator mistakes, races and dead servers (issue 11).

Two tenants never share a database, whatever the spelling of its URL; a
migration is not cut by the statement timeout and does not queue behind a
lock for long; a dead server does not hang the command line; reading never
creates a database; stored URLs mean the same file for every process; an
in-memory database is no tenant; a database password is never printed.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import time

import psycopg2
import pytest
import test_cli
from races import WAIT_LIMIT, LockHolder
from sqlalchemy import select, text
from test_cli import (
    HEAD,
    SCRIPT,
    Result,
    catalog_tenant_names,
    database_snapshot,
    downgrade_to_base,
    tenant_list,
    unique,
)

from tenantapp import migrations
from tenantapp.db import provisioning
from tenantapp.db.provisioning import configure_database, create_database
from tenantapp.models.catalog import Tenant
from tenantapp.models.tenant import Project

# test_cli's fixtures, for this module's tests too.
admin_cli = test_cli.admin_cli
ini_file = test_cli.ini_file

# Bounds a command must finish within (assertions on a bound, not on timing):
# the test ini sets a connect timeout of 2 s.
DEAD_SERVER_BOUND = 15.0
# After its lock wait began, a migration gives up within its lock_timeout;
# this margin covers the rest of the command.
LOCK_WAIT_MARGIN = 8.0


def start_script(*argv):
    """The console script in a process of its own, not waited for (in a
    session of its own: its migration workers are killed with it)."""
    return subprocess.Popen(
        [SCRIPT, *map(str, argv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process, limit):
    """Wait for ``process`` at most ``limit`` seconds -> Result; fails the test when
    it is still running then (and kills it and its workers)."""
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"still running after {limit} s; stderr so far: {err[-500:]!r}")
    return Result(process.returncode, out, err)


def run_bounded(limit, *argv):
    started = time.monotonic()
    result = finish(start_script(*argv), limit)
    return result, time.monotonic() - started


def catalog_db_url(admin, name):
    with admin.catalog.transaction(write=False) as db:
        return db.execute(select(Tenant.db_url).where(Tenant.name == name)).scalar_one()


def add_catalog_row(admin, name, url):
    """A tenant the catalog lists at ``url`` (as a tenant on a server that later died)."""
    with admin.catalog.transaction() as db:
        db.add(Tenant(name=name, display_name=name, status="active", db_url=url))


def remove_sqlite_file(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


@pytest.fixture
def black_hole():
    """A PostgreSQL URL at a TCP black hole: a socket that listens (the kernel
    completes the handshake) and never answers, like a hung server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    yield f"postgresql://postgres@127.0.0.1:{port}/tenant_void"
    listener.close()


# --- 1. two tenants never share a database -------------------------------------------


@pytest.mark.parametrize(
    "first,second,same",
    [
        (
            "postgresql://app:pw@Db1.Example.COM/t",
            "postgresql+psycopg2://other@db1.example.com/t",
            1,
        ),
        ("postgresql://db1/t", "postgresql://db1:5432/t", 1),
        ("postgres://db1/t", "postgresql://u:x@db1/t", 1),
        ("postgresql://db1/t", "postgresql://db1:5433/t", 0),
        ("postgresql://localhost/t", "postgresql://127.0.0.1/t", 0),
        ("postgresql://db1/t", "postgresql://db1/T", 0),
        ("postgresql://db1/t", "postgresql://db2/t", 0),
        ("postgresql://db1/t", "postgresql://db1/t2", 0),
        ("postgresql:///t?host=/run/pg", "postgresql:///t?host=/run/pg&port=5432", 1),
        ("postgresql:///t?host=/run/pg", "postgresql:///t?host=/tmp", 0),
        ("sqlite:///{cwd}/a.sqlite", "sqlite:///a.sqlite", 1),
        ("sqlite:///{cwd}/a.sqlite", "sqlite:///./sub/../a.sqlite", 1),
        ("sqlite:///{cwd}/a.sqlite", "sqlite:///{cwd}/link/../a.sqlite", 1),
        ("sqlite:///{cwd}/real/a.sqlite", "sqlite:///link/a.sqlite", 1),
        ("sqlite:///{cwd}/a.sqlite", "sqlite:///b.sqlite", 0),
        ("sqlite:///{cwd}/a.sqlite", "postgresql://db1/a", 0),
    ],
)
def test_database_identity_ignores_the_spelling(tmp_path, monkeypatch, first, second, same):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    first, second = (u.format(cwd=tmp_path) for u in (first, second))
    identity = provisioning.database_identity
    assert (identity(first) == identity(second)) == bool(same)


def test_create_refuses_the_database_of_another_tenant(
    admin_cli, admin, backend, db_urls, tmp_path, monkeypatch
):
    acme_url = db_urls["template"].format(name="acme")  # acme has no URL of its own
    if backend == "sqlite":
        folder = os.path.dirname(acme_url.removeprefix("sqlite:///"))
        (tmp_path / "alias").symlink_to(folder)
        monkeypatch.chdir(tmp_path)
        spellings = [
            acme_url,
            "sqlite:///alias/acme.sqlite",
            f"sqlite:///{folder}/../tenants/acme.sqlite",
        ]
    else:
        port = acme_url.split(":")[-1].split("/")[0]
        spellings = [
            acme_url,
            f"postgresql+psycopg2://someone:else@127.0.0.1:{port}/tenant_acme",
        ]
    before = database_snapshot(backend, db_urls)
    for url in spellings:
        evil = unique("evil")
        result = admin_cli("tenant", "create", evil, "--url", url)
        assert result.code == 1, (url, result.out, result.err)
        line = result.one_error_line()
        assert line.startswith("tenantapp-admin:") and "acme" in line, line
        assert evil not in catalog_tenant_names(admin)
    assert database_snapshot(backend, db_urls) == before


def test_create_refuses_a_template_name_whose_database_another_tenant_owns(
    admin_cli, admin, db_urls
):
    squatter, name = unique("squat"), unique("later")
    # ``squatter`` lives, by its own --url, where the template puts ``name``.
    own_url = db_urls["template"].format(name=name)
    assert admin_cli("tenant", "create", squatter, "--url", own_url).code == 0
    result = admin_cli("tenant", "create", name)
    assert result.code == 1, result.err
    assert squatter in result.one_error_line()
    assert name not in catalog_tenant_names(admin)
    # Its own, unused URL is accepted.
    other = unique("other")
    assert admin_cli("tenant", "create", other).code == 0


@pytest.mark.postgresql_only
def test_concurrent_creates_on_one_database_do_not_both_succeed(ini_file, admin, db_urls):
    shared = db_urls["template"].format(name=unique("shared"))
    # A database at the newest schema that no tenant uses yet: each create
    # finds it there, and both would register it.
    create_database(shared)
    migrations.upgrade_url(shared)
    first, second = unique("first"), unique("second")
    holder = LockHolder(db_urls["catalog"])
    try:
        # Parks both commands where they write the catalog.
        holder.execute("LOCK TABLE tenants IN SHARE MODE")
        processes = [
            start_script(ini_file, "tenant", "create", name, "--url", shared)
            for name in (first, second)
        ]
        holder.wait_for_waiters(2)
    finally:
        holder.release()
    results = [finish(process, WAIT_LIMIT) for process in processes]
    assert sorted(r.code for r in results) == [0, 1], results
    (winner,) = {first, second} & catalog_tenant_names(admin)
    refused = next(r for r in results if r.code == 1)
    assert "Traceback" not in refused.err
    # The last line is the refusal (a warning may precede it).
    assert winner in refused.err.strip().splitlines()[-1], refused.err


# --- 2. migrations: no statement timeout, a short lock timeout -----------------------


def hold_alembic_version(admin, name):
    """A transaction that holds what a migration of ``name`` from base needs:
    another migration of the same tenant, half done (its version row not
    committed yet)."""
    holder = LockHolder(admin.directory.factory(name).url)
    holder.execute("INSERT INTO alembic_version (version_num) VALUES (%s)", (HEAD,))
    return holder


@pytest.mark.postgresql_only
def test_a_migration_that_cannot_get_its_lock_fails_fast(admin_cli, ini_file, admin):
    name, other = unique("locked"), unique("free")
    for tenant in (name, other):
        assert admin_cli("tenant", "create", tenant).code == 0
        downgrade_to_base(admin, tenant)
    holder = hold_alembic_version(admin, name)
    try:
        process = start_script(ini_file, "tenant", "migrate", name, other)
        holder.wait_for_waiters(1)
        bound = migrations.MIGRATION_LOCK_TIMEOUT_S + LOCK_WAIT_MARGIN
        result = finish(process, bound)
    finally:
        holder.release()
    assert result.code == 1, result.err
    assert f"FAILED {name}" in result.err and "lock timeout" in result.err, result.err
    assert "Traceback" not in result.err
    rows = tenant_list(admin_cli)
    assert rows[name]["schema_version"] is None
    assert rows[other]["schema_version"] == HEAD
    # Run again once the lock is gone: it resumes.
    assert admin_cli("tenant", "migrate", name).code == 0
    assert tenant_list(admin_cli)[name]["schema_version"] == HEAD


@pytest.mark.postgresql_only
def test_a_migration_is_not_cut_by_the_statement_timeout(admin_cli, ini_file, admin):
    name = unique("slow")
    assert admin_cli("tenant", "create", name).code == 0
    downgrade_to_base(admin, name)
    url = admin.directory.factory(name).url
    # The database's statement timeout (configure_database), made short: a
    # migration statement that runs longer than it must still finish.
    assert configure_database(url, statement_timeout_ms=1000) is None
    holder = hold_alembic_version(admin, name)
    try:
        process = start_script(ini_file, "tenant", "migrate", name)
        holder.wait_for_waiters(1)
        # The server's own clock: the waiting statement passes twice the
        # statement timeout and is still there, waiting.
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            rows = pg_query(
                holder.url,
                "SELECT now() - query_start > interval '2 seconds' FROM pg_stat_activity "
                "WHERE %s = ANY(pg_blocking_pids(pid))",
                (holder.pid,),
            )
            assert rows, "the migration stopped waiting: the statement timeout cut it"
            if rows[0][0]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        holder.release()
    result = finish(process, WAIT_LIMIT)
    assert result.code == 0, result.err
    assert tenant_list(admin_cli)[name]["schema_version"] == HEAD


def pg_query(url, sql, params=None):
    """The rows of one query, on a connection of its own."""
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


# --- 3. a dead server does not hang the command line ---------------------------------


def test_list_and_migrate_do_not_hang_on_a_dead_server(admin_cli, ini_file, admin, black_hole):
    void, other = unique("void"), unique("other")
    assert admin_cli("tenant", "create", other).code == 0
    downgrade_to_base(admin, other)
    add_catalog_row(admin, void, black_hole)

    result, elapsed = run_bounded(DEAD_SERVER_BOUND, ini_file, "tenant", "list", "--json")
    assert elapsed < DEAD_SERVER_BOUND
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert rows[void]["schema_version"] is None
    assert rows["acme"]["schema_version"] == HEAD
    assert void in result.err and "unreachable" in result.err, result.err

    result, elapsed = run_bounded(DEAD_SERVER_BOUND, ini_file, "tenant", "list")
    assert result.code == 0, result.err
    line = next(line for line in result.out.splitlines() if line.startswith(void))
    assert "unreachable" in line

    result, elapsed = run_bounded(DEAD_SERVER_BOUND, ini_file, "tenant", "migrate", void, other)
    assert elapsed < DEAD_SERVER_BOUND
    assert result.code == 1
    assert void in result.err and "Traceback" not in result.err
    assert tenant_list(admin_cli)[other]["schema_version"] == HEAD


# --- 4. reading never creates a database ----------------------------------------------


def test_list_and_migrate_report_a_missing_sqlite_file_without_creating_it(
    admin_cli, admin, tmp_path
):
    name = unique("gone")
    path = str(tmp_path / "files" / f"{name}.sqlite")
    assert admin_cli("tenant", "create", name, "--url", f"sqlite:///{path}").code == 0
    remove_sqlite_file(path)

    result = admin_cli("tenant", "list", "--json")
    assert not os.path.exists(path)
    assert result.code == 0, result.err
    assert {row["name"]: row for row in json.loads(result.out)}[name]["schema_version"] is None
    assert name in result.err and "missing" in result.err, result.err

    result = admin_cli("tenant", "list")
    assert "missing" in next(line for line in result.out.splitlines() if line.startswith(name))
    assert not os.path.exists(path)

    result = admin_cli("tenant", "migrate", name)
    assert not os.path.exists(path)
    assert result.code == 1
    assert name in result.err and "missing" in result.err, result.err


# --- 5. stored URLs mean the same database to every process --------------------------


def test_a_relative_sqlite_url_is_stored_absolute(
    admin_cli, admin, client, make_user, tmp_path, monkeypatch
):
    name = unique("rel")
    (tmp_path / "cli").mkdir()
    (tmp_path / "server").mkdir()
    monkeypatch.chdir(tmp_path / "cli")
    assert admin_cli("tenant", "create", name, "--url", f"sqlite:///var/{name}.sqlite").code == 0
    created = tmp_path / "cli" / "var" / f"{name}.sqlite"
    assert created.exists()

    # The server runs from another directory: it finds the same file.
    monkeypatch.chdir(tmp_path / "server")
    make_user("rita", **{name: "editor"})
    client.login("rita")
    client.post("/api/projects", {"name": "where the CLI put it"}, status=201)
    assert not (tmp_path / "server" / "var").exists()
    assert tenant_list(admin_cli)[name]["schema_version"] == HEAD
    with admin.directory.factory(name).transaction(write=False) as db:
        assert db.execute(select(Project.name)).scalars().all() == ["where the CLI put it"]
    assert catalog_db_url(admin, name) == f"sqlite:///{created}"


@pytest.mark.postgresql_only
def test_a_postgresql_url_is_stored_with_its_driver(admin_cli, admin, pg_cluster):
    name = unique("drv")
    assert admin_cli("tenant", "create", name, "--url", pg_cluster.url(f"t_{name}")).code == 0
    stored = catalog_db_url(admin, name)
    assert stored == pg_cluster.url(f"t_{name}").replace("postgresql://", "postgresql+psycopg2://")


# --- 6. an in-memory database is no tenant --------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///:memory:",
        "sqlite:///file::memory:?cache=shared",
        "sqlite:///file:whatever?mode=memory&uri=true",
    ],
)
def test_an_in_memory_database_is_refused(
    admin_cli, admin, backend, db_urls, url, tmp_path, monkeypatch
):
    workdir = tmp_path / "cwd"  # where a file would appear if one were made
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    name = unique("mem")
    before = database_snapshot(backend, db_urls)
    result = admin_cli("tenant", "create", name, "--url", url)
    assert result.code == 1, result.out
    assert "memory" in result.one_error_line()
    assert name not in catalog_tenant_names(admin)
    assert database_snapshot(backend, db_urls) == before
    assert os.listdir(workdir) == []


@pytest.mark.parametrize(
    "url",
    [
        "mysql://someone@db1/tenant_x",
        "postgresql+asyncpg://someone@db1/tenant_x",
        "postgresql://someone@db1",
        "postgresql://someone@db1:notaport/tenant_x",
        "not a url at all",
    ],
)
def test_an_unusable_url_is_refused_in_one_line(admin_cli, admin, url):
    name = unique("bad")
    result = admin_cli("tenant", "create", name, "--url", url)
    assert result.code == 1, result.out
    assert "url" in result.one_error_line().lower()
    assert name not in catalog_tenant_names(admin)


# --- 7. a database password is never printed ------------------------------------------

SECRET_PW = "s3cret-pw"


def assert_no_password(*texts):
    for output in texts:
        assert SECRET_PW not in output, output


def test_a_password_in_a_bad_url_is_not_printed(admin_cli, caplog, black_hole):
    caplog.set_level(logging.INFO)
    port = black_hole.split(":")[2].split("/")[0]
    for url in [
        f"mysql://someone:{SECRET_PW}@db1/tenant_x",
        f"mysql://someone@db1/tenant_x?password={SECRET_PW}",  # libpq's spelling, too
        f"postgresql://someone:{SECRET_PW}@db1:notaport/tenant_x",
        f"postgresql://someone:{SECRET_PW}@127.0.0.1:{port}/tenant_x",  # hangs: times out
        f"postgresql://someone:{SECRET_PW}@127.0.0.1:1/tenant_x",  # nothing listens
        f"postgresql://someone@127.0.0.1:1/tenant_x?password={SECRET_PW}",
        f"sqlite://someone:{SECRET_PW}@/:memory:",
        f"postgres ql://someone:{SECRET_PW}@db1/x",
    ]:
        result = admin_cli("tenant", "create", unique("pw"), "--url", url)
        assert result.code == 1, (url, result.out)
        result.one_error_line()
        assert_no_password(result.out, result.err)
    assert_no_password(caplog.text)


@pytest.mark.postgresql_only
def test_a_tenant_password_is_never_printed(admin_cli, ini_file, admin, pg_cluster, caplog):
    caplog.set_level(logging.INFO)
    name = unique("pw")
    url = pg_cluster.url(f"t_{name}", user=f"postgres:{SECRET_PW}")
    result = admin_cli("tenant", "create", name, "--url", url)
    assert result.code == 0, result.err
    assert_no_password(result.out, result.err)
    # Refused, naming the database it is about.
    result = admin_cli("tenant", "create", unique("again"), "--url", url)
    assert result.code == 1
    assert name in result.one_error_line()
    assert_no_password(result.out, result.err)
    for argv in (["tenant", "list"], ["tenant", "list", "--json"]):
        result = admin_cli(*argv)
        assert result.code == 0
        assert_no_password(result.out, result.err)
    downgrade_to_base(admin, name)
    result = admin_cli("tenant", "migrate", "--all")
    assert result.code == 0, result.err
    assert_no_password(result.out, result.err)
    assert_no_password(caplog.text)
    # A migration that fails (its server is gone) reports without the password.
    with admin.catalog.transaction() as db:
        db.execute(
            text("UPDATE tenants SET db_url = :url WHERE name = :name"),
            {"url": f"postgresql://postgres:{SECRET_PW}@127.0.0.1:1/t_{name}", "name": name},
        )
    for argv in (["tenant", "migrate", name], ["tenant", "list"]):
        result, _ = run_bounded(DEAD_SERVER_BOUND, ini_file, *argv)
        assert name in result.err
        assert_no_password(result.out, result.err)
