"""Creating databases: a tenant's (``tenant create``) and the catalog (``init``).

Also what a tenant's database URL may be (:func:`tenant_database_url`), when
two URLs name the same database (:func:`database_identity`), and how a URL is
shown (:func:`displayable_url`, never with its password).
"""

import contextlib
import os

from sqlalchemy import URL, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from tenantapp.db.engines import normalize_url, sqlite_path

# Seconds to wait for a server when the caller does not say (the CLI passes
# its connect_timeout setting).
DEFAULT_CONNECT_TIMEOUT = 10

_EXPECTED = "postgresql://USER@HOST[:PORT]/DATABASE or sqlite:///PATH"


class UnusableDatabaseURL(ValueError):
    """A database URL that cannot hold a tenant; the message shows no password."""


def displayable_url(url):
    """``url`` as text for messages and logs: no password, neither after the
    user name nor as a ``password=`` query parameter."""
    try:
        url = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return "(an unreadable URL)"
    secrets = [key for key in url.query if key.lower() == "password"]
    return url.difference_update_query(secrets).render_as_string(hide_password=True)


def _sqlite_in_memory(url):
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return True
    return url.query.get("mode") == "memory"


def tenant_database_url(raw):
    """The URL to store for a tenant database given as ``raw`` (``--url``).

    Refused with :class:`UnusableDatabaseURL`: an unreadable URL, a backend
    other than PostgreSQL (psycopg2) and SQLite, an in-memory SQLite database,
    a PostgreSQL URL without a database. Normalized so that every process
    opens the same database with it: PostgreSQL with its driver spelled out
    (``postgresql+psycopg2://``), SQLite as an absolute file path resolved
    against the current directory (the server runs from another one).
    """
    try:
        url = normalize_url(raw)
    except (ArgumentError, ValueError, TypeError):
        # Not echoed: the text may hold a password.
        raise UnusableDatabaseURL(f"invalid database URL, expected {_EXPECTED}") from None
    shown = displayable_url(raw)  # as the operator wrote it
    backend = url.get_backend_name()
    if backend == "sqlite":
        if _sqlite_in_memory(url):
            raise UnusableDatabaseURL(
                f"the database URL {shown} is an in-memory SQLite database: "
                "a tenant needs a file, sqlite:///PATH"
            )
        path = sqlite_path(url)
        if os.path.isdir(path):
            raise UnusableDatabaseURL(f"the database URL {shown} names a folder, not a file")
        return URL.create(url.drivername, database=path)
    if backend == "postgresql":
        if url.drivername != "postgresql+psycopg2":
            raise UnusableDatabaseURL(
                f"the database URL {shown} names the driver {url.get_driver_name()}: "
                "tenantapp uses psycopg2 (postgresql:// or postgresql+psycopg2://)"
            )
        if not url.database:
            raise UnusableDatabaseURL(f"the database URL {shown} names no database")
        return url
    raise UnusableDatabaseURL(
        f"unsupported database URL {shown}: tenantapp uses PostgreSQL or SQLite, {_EXPECTED}"
    )


def database_identity(url):
    """What makes two URLs the same database, whatever their spelling (None:
    an in-memory database, which is nobody else's).

    PostgreSQL: the host (its case ignored; ``localhost`` and ``127.0.0.1``
    stay two hosts, as they may be two servers), the port (5432 when not
    given) and the database name; neither the driver nor the user and
    password make it another database. SQLite: the absolute file path with
    symbolic links resolved, relative paths taken from the current directory.
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if _sqlite_in_memory(url):
            return None
        return ("sqlite", os.path.normcase(os.path.realpath(sqlite_path(url))))
    host = url.host or url.query.get("host") or ""
    port = url.port or url.query.get("port") or 5432
    if isinstance(host, tuple):  # several hosts: libpq's failover list
        host = ",".join(host)
    if isinstance(port, tuple):
        port = ",".join(port)
    if not host.startswith("/"):  # a Unix socket folder is a path: case matters
        host = host.lower()
    return (backend, host, str(port), url.database)


def create_database(url, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Create the database ``url`` names when it does not exist yet.

    PostgreSQL: ``CREATE DATABASE`` through the server's ``postgres``
    database, giving up after ``connect_timeout`` seconds on a server that
    does not answer. SQLite: the file (and its folder). Returns True if created.
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is None or os.path.exists(path):
            return False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode = WAL")
        engine.dispose()
        return True
    if backend == "postgresql":
        name = url.database
        server = server_engine(url, connect_timeout)
        try:
            with server.connect() as connection:
                if database_exists(connection, name):
                    return False
                connection.exec_driver_sql(f"CREATE DATABASE {quoted(connection, name)}")
                return True
        finally:
            server.dispose()
    raise ValueError(f"unsupported database URL: {displayable_url(url)}")


def configure_database(url, statement_timeout_ms, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Database-level settings that must hold on every connection, even through
    PgBouncer: the statement timeout and UTC. PostgreSQL only; needs the
    database's owner (or a superuser). Returns a warning, or None when done.
    """
    url = normalize_url(url)
    if url.get_backend_name() != "postgresql":
        return None
    engine = create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": connect_timeout},
    )
    try:
        with engine.connect() as connection:
            database = quoted(connection, url.database)
            connection.exec_driver_sql(
                f"ALTER DATABASE {database} SET statement_timeout = {int(statement_timeout_ms)}"
            )
            connection.exec_driver_sql(f"ALTER DATABASE {database} SET timezone = 'UTC'")
    except Exception as exc:  # noqa: BLE001 - a missing privilege is a warning, not a failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"could not set the statement timeout of {url.database}: {first}"
    finally:
        engine.dispose()
    return None


class DatabaseInUse(Exception):
    """A database that cannot be dropped now (e.g. transactions left prepared)."""


def drop_database(url, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Drop the database ``url`` names; nothing to do when it is gone already
    (a second run finishes what a failed one began). Returns True if dropped.

    PostgreSQL: refused with :class:`DatabaseInUse` while it has transactions
    left prepared (``recover`` settles them); the app's remaining connections
    are ended (``WITH (FORCE)``, PostgreSQL 13+). SQLite: the file and its
    ``-wal`` and ``-shm`` companions.
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        existed = os.path.exists(path)
        for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
            with contextlib.suppress(FileNotFoundError):  # gone already: the aim
                os.remove(name)
        return existed
    if backend == "postgresql":
        name = url.database
        server = server_engine(url, connect_timeout)
        try:
            with server.connect() as connection:
                prepared = connection.execute(
                    text("SELECT count(*) FROM pg_prepared_xacts WHERE database = :name"),
                    {"name": name},
                ).scalar_one()
                if prepared:
                    raise DatabaseInUse(
                        f"the database {name} has {prepared} transaction(s) left prepared: "
                        "run recover first"
                    )
                if not database_exists(connection, name):
                    return False
                connection.exec_driver_sql(
                    f"DROP DATABASE IF EXISTS {quoted(connection, name)} WITH (FORCE)"
                )
                return True
        finally:
            server.dispose()
    raise ValueError(f"unsupported database URL: {displayable_url(url)}")


def server_engine(url, connect_timeout):
    """An engine on the server's ``postgres`` database, outside transactions
    (CREATE and DROP DATABASE cannot run inside one); one connection at a time."""
    return create_engine(
        url.set(database="postgres"),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": connect_timeout},
    )


def database_exists(connection, name):
    """True when the server of ``connection`` has a database called ``name``."""
    return (
        connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        is not None
    )


def quoted(connection, name):
    """``name`` as an SQL identifier (database names go into DDL, not parameters)."""
    return connection.dialect.identifier_preparer.quote_identifier(name)
