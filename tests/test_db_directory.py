"""The tenant directory follows the catalog: a tenant's database is where
``tenants.db_url`` says now, in every running process, with no restart."""

import os
import sqlite3
import time

import psycopg2
from races import WAIT_LIMIT, libpq_url
from sqlalchemy import create_engine, delete, select, update
from sqlalchemy.pool import NullPool

from conftest import logged_in
from tenantapp.db.engines import normalize_url, sqlite_path
from tenantapp.interfaces import ITenantDirectory
from tenantapp.models.catalog import Tenant
from tenantapp.models.tenant import Project


def project_names(url):
    """The projects of the database at ``url``, read by a connection of the test's own."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(select(Project.name).order_by(Project.id)).scalars().all()
    finally:
        engine.dispose()


def server(url):
    """An autocommit connection to the server of ``url`` (its ``postgres`` database)."""
    connection = psycopg2.connect(libpq_url(normalize_url(url).set(database="postgres")))
    connection.autocommit = True
    return connection


def copy_database(source_url, target_url, backend):
    """What an operator does to move a tenant: copy its database as it is now."""
    if backend == "sqlite":
        target = sqlite_path(target_url)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with sqlite3.connect(sqlite_path(source_url)) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        source.close()
        copy.close()
        return
    source, target = normalize_url(source_url).database, normalize_url(target_url).database
    connection = server(source_url)
    try:
        with connection.cursor() as cursor:
            # A template must have no session: end the pooled ones (as an operator would).
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (source,),
            )
            deadline = time.monotonic() + WAIT_LIMIT
            while True:
                try:
                    cursor.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
                    break
                except psycopg2.errors.ObjectInUse:  # a terminated backend still exiting
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
    finally:
        connection.close()


def open_to(url, backend):
    """Connections this process (every app in it) or anyone has open to ``url``'s database."""
    if backend == "sqlite":
        path = sqlite_path(url)
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                found += os.readlink(f"/proc/self/fd/{fd}") == path
            except OSError:
                continue
        return found
    connection = server(url)
    try:
        with connection.cursor() as cursor:
            deadline = time.monotonic() + WAIT_LIMIT / 2
            while True:  # a backend exits a moment after its client closed it
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    (normalize_url(url).database,),
                )
                found = cursor.fetchone()[0]
                if found == 0 or time.monotonic() > deadline:
                    return found
                time.sleep(0.02)
    finally:
        connection.close()


def drop(url, backend):
    if backend == "sqlite":
        path = sqlite_path(url)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    connection = server(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{normalize_url(url).database}" WITH (FORCE)')
    finally:
        connection.close()


def test_a_moved_tenant_is_written_in_its_new_database(app, admin, make_user, backend, db_urls):
    old_url = db_urls["template"].format(name="moved")
    new_url = db_urls["template"].format(name="moved_elsewhere")
    drop(new_url, backend)
    admin.tenant_create("moved")
    make_user("mo", moved="editor")
    client = logged_in(app, "mo", tenant="moved")
    client.post_json("/api/projects", {"name": "Before the move"}, status=201)

    copy_database(old_url, new_url, backend)
    old = app.registry.getUtility(ITenantDirectory).factory("moved")
    old.dispose()  # (PostgreSQL: the copy ended its sessions)
    in_flight = old.session()  # a request on the old database as the catalog changes
    assert in_flight.execute(select(Project.name)).scalars().all() == ["Before the move"]
    with admin.catalog.transaction() as db:
        db.execute(update(Tenant).where(Tenant.name == "moved").values(db_url=new_url))

    client.post_json("/api/projects", {"name": "After the move"}, status=201)
    # The request in flight finishes where it started; its connection is then closed.
    assert in_flight.execute(select(Project.name)).scalars().all() == ["Before the move"]
    in_flight.close()
    assert project_names(new_url) == ["Before the move", "After the move"]
    assert project_names(old_url) == ["Before the move"]
    names = [p["name"] for p in client.get("/api/projects").json["items"]]
    assert sorted(names) == ["After the move", "Before the move"]
    factory = app.registry.getUtility(ITenantDirectory).factory("moved")
    assert normalize_url(factory.url) == normalize_url(new_url)
    # The old database's pool is gone: nothing of this process is connected to it.
    assert open_to(old_url, backend) == 0


def test_a_tenant_deleted_and_created_again_elsewhere_is_served_from_there(
    app, admin, make_user, backend, db_urls
):
    first_url = db_urls["template"].format(name="phoenix")
    second_url = db_urls["template"].format(name="phoenix_reborn")
    drop(second_url, backend)
    admin.tenant_create("phoenix")
    make_user("ph", phoenix="editor")
    client = logged_in(app, "ph", tenant="phoenix")
    client.post_json("/api/projects", {"name": "First life"}, status=201)

    with admin.catalog.transaction() as db:
        db.execute(delete(Tenant).where(Tenant.name == "phoenix"))
    admin.tenant_create("phoenix", url=second_url)  # same name, another database
    admin.user_grant("ph", "phoenix", "editor")
    client = logged_in(app, "ph", tenant="phoenix")
    assert client.get("/api/projects").json["items"] == []
    client.post_json("/api/projects", {"name": "Second life"}, status=201)

    assert project_names(second_url) == ["Second life"]
    assert project_names(first_url) == ["First life"]
    assert open_to(first_url, backend) == 0
