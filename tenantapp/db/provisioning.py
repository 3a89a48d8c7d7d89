"""Creating databases: a tenant's (``tenant create``) and the catalog (``init``)."""

import os

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tenantapp.db.engines import normalize_url, sqlite_path


def create_database(url):
    """Create the database ``url`` names when it does not exist yet.

    PostgreSQL: ``CREATE DATABASE`` through the server's ``postgres``
    database. SQLite: the file (and its folder). Returns True if created.
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
        server = create_engine(
            url.set(database="postgres"),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 10},
        )
        try:
            with server.connect() as connection:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if exists:
                    return False
                quoted = connection.dialect.identifier_preparer.quote_identifier(name)
                connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
                return True
        finally:
            server.dispose()
    raise ValueError(f"unsupported database URL: {url.render_as_string()}")


def configure_database(url, statement_timeout_ms):
    """Database-level settings that must hold on every connection, even through
    PgBouncer: the statement timeout and UTC. PostgreSQL only; needs the
    database's owner (or a superuser). Returns a warning, or None when done.
    """
    url = normalize_url(url)
    if url.get_backend_name() != "postgresql":
        return None
    engine = create_engine(
        url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
    )
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote_identifier(url.database)
            connection.exec_driver_sql(
                f"ALTER DATABASE {quoted} SET statement_timeout = {int(statement_timeout_ms)}"
            )
            connection.exec_driver_sql(f"ALTER DATABASE {quoted} SET timezone = 'UTC'")
    except Exception as exc:  # noqa: BLE001 - a missing privilege is a warning, not a failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"could not set the statement timeout of {url.database}: {first}"
    finally:
        engine.dispose()
    return None
