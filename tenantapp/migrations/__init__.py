"""Alembic, run from code: one history for the catalog, one for every tenant.

Each database records its own version in its ``alembic_version`` table, so a
half-migrated fleet shows which tenant is where, and running the migration
again resumes where it stopped.

A migration runs without the database's statement timeout (a long one is not
cut half-way) but with a short lock timeout: one that waits for a lock held by
a long transaction gives up and is reported, rather than queueing every
request behind its own lock request (:func:`bound_migration_timeouts`).
Connections made here give up on a server that does not answer after a
connect timeout, and never create an SQLite file (:class:`DatabaseMissing`).
"""

import functools
import os

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from tenantapp.db.engines import make_engine, normalize_url, sqlite_path, writing_engine
from tenantapp.db.provisioning import DEFAULT_CONNECT_TIMEOUT, displayable_url

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = ("catalog", "tenant")

# Seconds a migration statement waits for a lock before it fails.
MIGRATION_LOCK_TIMEOUT_S = 5


class DatabaseMissing(Exception):
    """The database a URL names is not there (an SQLite file): reported, never
    created by reading or migrating it."""


def bound_migration_timeouts(connection):
    """Called by both Alembic environments inside the migration's transaction.

    PostgreSQL: ``SET LOCAL`` (this transaction only, safe behind PgBouncer)
    ``statement_timeout = 0``, since the database's own (set for requests by
    ``configure_database``) would kill a long migration half-way, and a
    ``lock_timeout`` of :data:`MIGRATION_LOCK_TIMEOUT_S`: a migration queued
    behind a long transaction's lock would make every request that needs the
    table queue behind it.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT_S}s'")


def alembic_config(schema, connection=None):
    """An Alembic Config for ``schema`` ('catalog' or 'tenant')."""
    if schema not in SCHEMAS:
        raise ValueError(schema)
    config = Config()
    config.set_main_option("script_location", os.path.join(HERE, schema))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision(schema):
    """The newest revision of ``schema``'s history (read once per process)."""
    return ScriptDirectory.from_config(alembic_config(schema)).get_current_head()


def current_revision(connection):
    """The revision a database is at, or None when it has no schema yet."""
    # Imported here: Alembic's runtime (and its DDL for every backend) is for
    # the commands that read or migrate a schema, not every import of this module.
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


_STORED_REVISION = text("SELECT version_num FROM alembic_version")


def catalog_behind(connection):
    """What to do when the catalog's schema is older than this code, else None.

    One plain query: /readyz asks every few seconds, and Alembic's
    MigrationContext would log two lines per call.
    """
    stored, needed = connection.execute(_STORED_REVISION).scalar(), head_revision("catalog")
    if stored == needed:
        return None
    return (
        f"the catalog schema is at {stored}, this version needs {needed}: "
        "run tenantapp-admin CONFIG init"
    )


def upgrade(engine, schema):
    """Bring the database behind ``engine`` to the newest revision of ``schema``.

    Idempotent: a database already at head is left as it is. Not for two
    threads at once: Alembic's ``context`` is process-global (see
    :func:`upgrade_url`, which the fleet migration runs in worker processes).
    """
    from alembic import command

    _migrate(engine, schema, command.upgrade, "head")


def downgrade(engine, schema, revision):
    """Take the database behind ``engine`` back to ``revision`` (tests, operators)."""
    from alembic import command

    _migrate(engine, schema, command.downgrade, revision)


def _migrate(engine, schema, step, revision):
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                step(alembic_config(schema, connection), revision)
            return
        # SQLite alters a table by copying it and dropping the old one (batch
        # mode), and with foreign keys on that drop deletes the rows that
        # point at it (ON DELETE CASCADE): memberships gone with a migration
        # of tenants. The pragma is a no-op in a transaction, so it goes on
        # the driver's connection, before the BEGIN.
        driver = connection.connection.dbapi_connection
        driver.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                step(alembic_config(schema, connection), revision)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise RuntimeError(f"migration broke a foreign key: {tuple(broken)}")
        finally:
            driver.execute("PRAGMA foreign_keys = ON")


def _script_engine(url, connect_timeout):
    """An Engine of one connection for a command: a connect timeout, and an
    SQLite file opened only if it exists (DatabaseMissing otherwise)."""
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database URL: {displayable_url(url)}")
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is None:
            raise DatabaseMissing("database missing: an in-memory SQLite URL")
        if not os.path.isfile(path):
            raise DatabaseMissing(f"database missing: no file {path}")
    return make_engine(
        url,
        pool_size=1,
        pool_timeout=connect_timeout,
        connect_timeout=connect_timeout,
        must_exist=True,
    )


def revision_at(url, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """The revision of the database at ``url`` (None: no schema yet); raises when
    it cannot be reached within ``connect_timeout`` seconds, DatabaseMissing
    when it does not exist. Safe in threads (it does not run Alembic's env)."""
    engine = _script_engine(url, connect_timeout)
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()


def stored_revision(url, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """The revision recorded in the database at ``url``, with one query.

    None when it has no ``alembic_version`` table (no schema yet) or an
    empty one. For the fleet migration's first pass (which tenants are
    behind?): no Alembic MigrationContext (which asks whether the table
    exists first), and an Engine over the server's shared dialect, so
    neither the dialect's set-up queries nor a compilation per database.
    Raises like :func:`revision_at`; safe in threads.
    """
    engine = _script_engine(url, connect_timeout)
    try:
        with engine.connect() as connection:
            try:
                return connection.exec_driver_sql(_STORED_REVISION.text).scalar()
            except (ProgrammingError, OperationalError) as exc:
                if _no_version_table(exc):
                    return None
                raise
    finally:
        engine.dispose()


def _no_version_table(error):
    # PostgreSQL: undefined_table; SQLite: "no such table".
    code = getattr(error.orig, "pgcode", None)
    return code == "42P01" or "no such table: alembic_version" in str(error.orig)


def upgrade_url(url, schema="tenant", connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Upgrade the database at ``url`` with an engine of its own; returns its revision.

    Runs in a worker process of ``tenant migrate --jobs N``.
    """
    engine = _script_engine(url, connect_timeout)
    try:
        upgrade(writing_engine(engine), schema)
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()
