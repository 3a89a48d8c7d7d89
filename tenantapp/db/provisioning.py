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
