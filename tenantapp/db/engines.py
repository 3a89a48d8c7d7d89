"""Engine options for long life: the only place that calls ``create_engine``.

PostgreSQL: psycopg2 whatever the URL says, ``pool_pre_ping`` (a connection
the server dropped overnight is replaced, not handed to a request), a bounded
pool with a checkout timeout, a connect timeout and a statement timeout.

SQLite: WAL, ``busy_timeout`` and ``foreign_keys=ON`` on every connection, and
BEGIN issued by us rather than by the ``sqlite3`` module (which would start
transactions late and never for SELECT). A writing transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on ``busy_timeout`` instead of
one failing with "database is locked" when it upgrades its read lock.
"""

import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

# The execution option a Session sets when its transaction will write.
WRITE_OPTION = "tenantapp_write"


def normalize_url(url):
    """Return ``url`` as a SQLAlchemy URL, with psycopg2 for bare PostgreSQL URLs.

    SQLAlchemy 2.1 would pick psycopg 3 for ``postgresql://``; the contract
    says psycopg2.
    """
    url = make_url(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    return url


def is_sqlite(url):
    return normalize_url(url).get_backend_name() == "sqlite"


def sqlite_path(url):
    """The file path of an SQLite URL, or None for an in-memory database."""
    database = normalize_url(url).database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        database = database[5:].split("?", 1)[0]
    return os.path.abspath(database)


def make_engine(
    url,
    *,
    pool_size,
    pool_timeout,
    connect_timeout,
    statement_timeout_ms,
    must_exist=False,
    budget=None,
):
    """Create an Engine for ``url`` with the options above.

    ``must_exist`` (SQLite): open the file read-write without creating it, so
    a missing tenant file is an error rather than a new empty database.
    ``budget``: a :class:`ConnectionBudget` every new connection must fit in.
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    options = {
        "pool_pre_ping": True,
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_timeout": pool_timeout,
        # LIFO keeps few connections warm; idle ones age out behind them.
        "pool_use_lifo": True,
    }
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is not None and must_exist:
            url = url.set(database=f"file:{path}?mode=rw", query={"uri": "true"})
        options["connect_args"] = {"timeout": connect_timeout, "check_same_thread": False}
        engine = create_engine(url, **options)
        _configure_sqlite(engine, busy_timeout_ms=max(connect_timeout, 5) * 1000)
    elif backend == "postgresql":
        connect_args = {"connect_timeout": connect_timeout, "application_name": "tenantapp"}
        if statement_timeout_ms:
            connect_args["options"] = f"-c statement_timeout={statement_timeout_ms}"
        options["connect_args"] = connect_args
        engine = create_engine(url, **options)
    else:
        raise ValueError(f"unsupported database URL: {url.render_as_string()}")
    if budget is not None:
        budget.watch(engine)
    return engine


def _configure_sqlite(engine, busy_timeout_ms):
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, connection_record):
        # Let SQLAlchemy, not the sqlite3 module, decide when to BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
