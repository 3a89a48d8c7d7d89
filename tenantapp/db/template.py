"""Template databases: a new tenant is a copy of one at the newest schema.

Running every migration for every new tenant is what makes ``tenant create``
slow. Instead each server that gets tenants keeps a template database at the
newest tenant schema, named for that revision (``tenantapp_template_<rev>``),
and a tenant's database is cloned from it (``CREATE DATABASE ... TEMPLATE``).
No connection is allowed to the template (``ALLOW_CONNECTIONS false``):
PostgreSQL refuses to clone a database someone is connected to. SQLite: a file
beside the tenant files (``.template-<rev>.sqlite``), written under a
temporary name and renamed, copied the same way.

A template that cannot be used (no CREATEDB privilege, a race with another
command, a half-built one that is busy) raises :class:`TemplateUnusable`; the
caller then creates and migrates the database as before.
"""

import contextlib
import glob
import os
import shutil
import sqlite3
import uuid

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tenantapp import migrations
from tenantapp.db.engines import normalize_url, sqlite_path
from tenantapp.db.provisioning import DEFAULT_CONNECT_TIMEOUT, quoted, server_engine

PREFIX = "tenantapp_template_"
SQLITE_PREFIX = ".template-"


class TemplateUnusable(Exception):
    """The template could not be made or cloned; the message says why (one line)."""


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _unless_unreachable(error):
    """Re-raise ``error`` when the server could not be reached at all: then
    creating the database without the template fails as well (and would wait
    a second connect timeout to say so)."""
    if isinstance(error, DBAPIError) and error.statement is None:
        raise error


def template_name(revision):
    """The template database's name on a PostgreSQL server, for ``revision``."""
    return f"{PREFIX}{revision}"


def sqlite_template_path(tenant_path, revision):
    """The template file beside the tenant file ``tenant_path``, for ``revision``."""
    return os.path.join(os.path.dirname(tenant_path), f"{SQLITE_PREFIX}{revision}.sqlite")


def ensure_template(url, revision=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Make the template for ``revision`` (default: the newest) on the server
    (PostgreSQL) or in the folder (SQLite) of the tenant database ``url``,
    when it is not there; drop the templates of other revisions. Returns
    True when one was made. Raises :class:`TemplateUnusable`.
    """
    revision = revision or migrations.head_revision("tenant")
    url = normalize_url(url)
    try:
        if url.get_backend_name() == "sqlite":
            return _ensure_sqlite(sqlite_path(url), revision, connect_timeout)
        return _ensure_postgresql(url, revision, connect_timeout)
    except TemplateUnusable:
        raise
    except (SQLAlchemyError, OSError, sqlite3.Error, migrations.DatabaseMissing) as exc:
        _unless_unreachable(exc)
        raise TemplateUnusable(f"the template could not be made: {_first_line(exc)}") from None


def create_from_template(url, revision=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Create the tenant database ``url`` as a copy of the template (made when
    missing). Returns False, copying nothing, when the database exists
    already. Raises :class:`TemplateUnusable`.
    """
    revision = revision or migrations.head_revision("tenant")
    url = normalize_url(url)
    ensure_template(url, revision, connect_timeout)
    try:
        if url.get_backend_name() == "sqlite":
            return _clone_sqlite(sqlite_path(url), revision)
        return _clone_postgresql(url, revision, connect_timeout)
    except (SQLAlchemyError, OSError) as exc:
        _unless_unreachable(exc)
        raise TemplateUnusable(f"the template could not be copied: {_first_line(exc)}") from None


# --- PostgreSQL ------------------------------------------------------------------


def _ensure_postgresql(url, revision, connect_timeout):
    name = template_name(revision)
    server = server_engine(url, connect_timeout)
    try:
        with server.connect() as connection:
            allows = connection.execute(
                text("SELECT datallowconn FROM pg_database WHERE datname = :name"),
                {"name": name},
            ).first()
            if allows is not None and not allows.datallowconn:
                return False  # ready: connections are refused only once it is built
            if allows is not None:
                # Left half-built by a command that failed (or being built by
                # another right now: then this DROP fails and we fall back).
                connection.exec_driver_sql(f"DROP DATABASE {quoted(connection, name)}")
            connection.exec_driver_sql(f"CREATE DATABASE {quoted(connection, name)}")
        migrations.upgrade_url(url.set(database=name), "tenant", connect_timeout)
        with server.connect() as connection:
            connection.exec_driver_sql(
                f"ALTER DATABASE {quoted(connection, name)} ALLOW_CONNECTIONS false"
            )
            # Sessions that were still closing when connections were disallowed.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            stale = connection.execute(
                text(
                    "SELECT datname FROM pg_database "
                    "WHERE starts_with(datname, :prefix) AND datname <> :name"
                ),
                {"prefix": PREFIX, "name": name},
            ).scalars()
            for old in list(stale):
                # Another command may be cloning it this moment: it stays then.
                with contextlib.suppress(SQLAlchemyError):
                    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted(connection, old)}")
        return True
    finally:
        server.dispose()


def _clone_postgresql(url, revision, connect_timeout):
    server = server_engine(url, connect_timeout)
    try:
        with server.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if exists:
                return False
            # PostgreSQL 15+ copies block by block through the WAL by default,
            # the whole catalog included; a file copy (and a checkpoint) is
            # quicker for a small template. Before 15, a file copy is all there is.
            file_copy = connection.dialect.server_version_info >= (15,)
            connection.exec_driver_sql(
                f"CREATE DATABASE {quoted(connection, url.database)} "
                f"TEMPLATE {quoted(connection, template_name(revision))}"
                + (" STRATEGY FILE_COPY" if file_copy else "")
            )
        return True
    finally:
        server.dispose()


# --- SQLite ----------------------------------------------------------------------


def _ensure_sqlite(tenant_path, revision, connect_timeout):
    template = sqlite_template_path(tenant_path, revision)
    if os.path.isfile(template):
        return False
    folder = os.path.dirname(template)
    os.makedirs(folder, exist_ok=True)
    building = f"{template}.{uuid.uuid4().hex}.tmp"
    try:
        sqlite3.connect(building).close()  # an empty file is an empty database
        migrations.upgrade_url(f"sqlite:///{building}", "tenant", connect_timeout)
        # One self-contained file: no -wal beside it to copy too.
        with contextlib.closing(sqlite3.connect(building)) as connection:
            connection.execute("PRAGMA journal_mode = DELETE")
        os.replace(building, template)  # atomic: a reader sees all of it or none
    finally:
        for leftover in (building, f"{building}-wal", f"{building}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
    for old in glob.glob(os.path.join(glob.escape(folder), f"{SQLITE_PREFIX}*.sqlite")):
        if old != template:
            with contextlib.suppress(OSError):
                os.remove(old)
    return True


def _clone_sqlite(tenant_path, revision):
    if os.path.exists(tenant_path):
        return False
    copying = f"{tenant_path}.{uuid.uuid4().hex}.tmp"
    try:
        shutil.copyfile(sqlite_template_path(tenant_path, revision), copying)
        try:
            # A link, not a rename: it never replaces a file created meanwhile.
            os.link(copying, tenant_path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(copying)
    return True
