"""Engine options for long life: the only place that calls ``create_engine``.

PostgreSQL: psycopg2 whatever the URL says, a pre-ping of every connection
that sat idle in the pool for ``ping_after`` seconds or more (a connection the
server dropped overnight is replaced, not handed to a request), a bounded pool
with a checkout timeout and a connect timeout, and TCP keepalives with a TCP
user timeout: a server that stops answering (a black hole: no reset, no
answer) ends a connection within seconds instead of the kernel's quarter of
an hour, whether it was connecting (``connect_timeout``), sending, or waiting
for a result (see :func:`libpq_timeouts`). No session state is set on a
connection (no startup ``options``, no ``SET``): PgBouncer's transaction
pooling would lose it. The statement timeout is a setting of the database
itself, see :func:`tenantapp.db.provisioning.configure_database`. The driver
runs in autocommit: a reading session sends its SELECTs and nothing else; a
writing session uses the database's second Engine (:func:`writing_engine`, same
pool), which wraps its work in BEGIN ... COMMIT.

Why not ``pool_pre_ping=True``, which pings on *every* checkout: under load a
connection is back in use within milliseconds, and the extra round trip per
checkout cost a sixth of the main read path's time. A connection that dies
while busy (a server restart, ``pg_terminate_backend``) is not caught by any
ping either way: its error invalidates the pool and the request is retried
(see ``tenantapp.views.errors``), so nobody sees it.

SQLite: WAL, ``busy_timeout`` and ``foreign_keys=ON`` on every connection, and
BEGIN issued by us rather than by the ``sqlite3`` module (which would start
transactions late and never for SELECT). A writing transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on ``busy_timeout`` instead of
one failing with "database is locked" when it upgrades its read lock.
"""

import functools
import os
import sqlite3
import threading
import time

import psycopg2.extensions
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.util import LRUCache
from sqlalchemy.util import queue as pool_queue

from tenantapp.db.budget import ReleasesSlotOnClose

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
    ping_after=10,
    must_exist=False,
    budget=None,
):
    """Create an Engine for ``url`` with the options above.

    ``must_exist`` (SQLite): open the file read-write without creating it, so
    a missing tenant file is an error rather than a new empty database.
    ``budget``: a :class:`ConnectionBudget` every new connection must fit in.
    ``ping_after``: seconds idle after which a connection is pinged before use
    (0: on every checkout, like ``pool_pre_ping``).

    The Engine shares its dialect and compiled-statement cache with every
    other Engine of the same server (see :class:`SharedDialect`): a tenant's
    first request compiles nothing another tenant already compiled. It has no
    event listener of its own on PostgreSQL (one on SQLite): a new connection
    is set up by the pool's creator, the pings are listeners of the pool
    *class*, registered once, and a transaction's end is the DBAPI
    connection's (:class:`AutocommitConnection`). Making an Engine is on the
    path of a cold tenant's first request: 110 µs with its seven listeners,
    30–40 µs without.
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        watched = path if path is not None and must_exist else None
        if watched is not None:
            url = url.set(database=f"file:{path}?mode=rw", query={"uri": "true"})
        connect_args = {
            "timeout": connect_timeout,
            "check_same_thread": False,
            "factory": SQLiteConnection,
        }
        set_up = functools.partial(
            _set_up_sqlite, busy_timeout_ms=max(connect_timeout, 5) * 1000, watched=watched
        )
        pool_class = SQLitePool
    elif backend == "postgresql":
        connect_args = {
            **libpq_timeouts(connect_timeout),
            "application_name": "tenantapp",
            "connection_factory": AutocommitConnection,
        }
        set_up = functools.partial(_set_up_postgresql, ping_after=ping_after)
        pool_class = PostgresPool
    else:
        raise ValueError(f"unsupported database URL: {url.render_as_string()}")
    engine = shared_dialect(url).engine(
        url,
        connect_args,
        set_up,
        pool_class=pool_class,
        budget=budget,
        pool_size=pool_size,
        max_overflow=0,
        timeout=pool_timeout,
        # LIFO keeps few connections warm; idle ones age out behind them.
        use_lifo=True,
    )
    if backend == "sqlite":
        _sqlite_transactions(engine)
    return engine


# Compiled statements kept per server: the app has a few dozen distinct
# statements, so this is never pruned in practice (SQLAlchemy's per-Engine
# default is 500).
COMPILED_CACHE_SIZE = 1000

_shared_dialects = {}
_shared_dialects_lock = threading.Lock()


def shared_dialect(url):
    """The :class:`SharedDialect` of ``url``'s server (one per process for SQLite)."""
    url = normalize_url(url)
    if url.get_backend_name() == "sqlite":
        key = (url.drivername,)
    else:
        # Same driver, host, port, role and options: the same server, whatever database.
        key = (
            url.drivername,
            url.host,
            url.port,
            url.username,
            url.password,
            tuple(sorted(url.query.items())),
        )
    shared = _shared_dialects.get(key)
    if shared is None:
        with _shared_dialects_lock:
            shared = _shared_dialects.get(key)
            if shared is None:
                shared = _shared_dialects[key] = SharedDialect(url)
    return shared


class SharedDialect:
    """One SQLAlchemy dialect, and one compiled-statement cache, for every
    Engine of one database server.

    SQLAlchemy keys its compiled cache by dialect *instance* and keeps one
    cache per Engine (``query_cache_size``): with one ``create_engine`` per
    tenant, every tenant compiles and stores every statement again (~0.4 MB
    per Engine with the app's statements) and its first connection runs the
    dialect's set-up queries (server version, hstore, isolation level). The
    documented way to share a cache between Engines is the ``compiled_cache``
    execution option, with the caveat that the Engines must have the same
    dialect (sqlalchemy#5002): so the dialect is shared too. It is made by
    ``create_engine`` (a prototype Engine that never pools a connection),
    initialized on the server's first connection, and each tenant Engine is
    an :class:`sqlalchemy.engine.Engine` over its own pool and this dialect,
    its cache the shared one. A statement compiled for PostgreSQL is never
    served to SQLite, nor one of another server: the cache key holds the
    dialect, and each server has its own.
    """

    def __init__(self, url):
        self._initialized = False
        # The connect function the prototype uses, per thread while it initializes.
        self._opener = threading.local()
        # The prototype: creates the dialect, and initializes it through its
        # first connection (opened by the tenant Engine that needs it).
        self._prototype = create_engine(url, poolclass=NullPool, creator=self._open_for_prototype)
        self.dialect = self._prototype.dialect
        self.compiled_cache = LRUCache(COMPILED_CACHE_SIZE)
        # What the dialect sets up on each new DBAPI connection (driver extras).
        self._on_connect = self.dialect.on_connect_url(url)

    def _open_for_prototype(self):
        return self._opener.connect()

    def _initialize(self, open_connection):
        # No lock of ours around the connect: threads that get here together
        # connect side by side (each bounded by its connect timeout), and
        # SQLAlchemy runs the dialect's initialization once, on the first
        # connection that succeeds.
        self._opener.connect = open_connection
        try:
            # Connecting is the point: SQLAlchemy initializes the dialect then.
            self._prototype.connect().close()
        finally:
            self._opener.connect = None
        self._initialized = True

    def engine(self, url, connect_args, set_up, *, pool_class, budget=None, **pool_options):
        """A new Engine for ``url`` over a ``pool_class`` of ``pool_options``.

        Each new DBAPI connection fits in ``budget`` (if any) and is counted
        for it (its class gives the slot back on close, see
        :class:`tenantapp.db.budget.ReleasesSlotOnClose`), then gets the
        dialect's driver set-up and ``set_up(dbapi_connection)``. A set-up that
        fails closes the connection (and so frees its slot) before raising.
        """
        dialect = self.dialect
        cargs, cparams = dialect.create_connect_args(url)
        cparams = {**cparams, **connect_args}
        on_connect = self._on_connect
        engine = None

        def open_connection():
            if budget is None:
                dbapi_connection = dialect.connect(*cargs, **cparams)
            else:
                dbapi_connection = budget.open(engine, lambda: dialect.connect(*cargs, **cparams))
            try:
                if on_connect is not None:
                    on_connect(dbapi_connection)
                set_up(dbapi_connection)
            except BaseException:
                dbapi_connection.close()
                raise
            return dbapi_connection

        def creator():
            dbapi_connection = open_connection()
            if not self._initialized:
                # Once the server answered (a dead one costs one connect
                # timeout, not two): set the dialect up on a connection of its own.
                try:
                    self._initialize(open_connection)
                except BaseException:
                    dbapi_connection.close()
                    raise
            return dbapi_connection

        pool = pool_class(creator, dialect=dialect, **pool_options)
        engine = Engine(
            pool,
            dialect,
            url,
            query_cache_size=0,  # no cache of its own: the shared one, below
            execution_options={"compiled_cache": self.compiled_cache},
        )
        return engine


def libpq_timeouts(connect_timeout):
    """libpq's parameters that bound every wait on a server that stopped answering.

    ``connect_timeout``: the whole connection set-up (TCP, TLS, startup and
    authentication); whole seconds, and libpq takes 1 as 2. Once connected,
    ``tcp_user_timeout`` closes the connection when data sent stays
    unacknowledged that long (the server vanished while we sent a query), and
    keepalives notice a server gone while we wait for a result (data
    acknowledged, then silence). A statement timeout cannot help there: it is
    the server's. Keepalives are TCP's, answered by the server's kernel: a
    long query is not cut. Unix sockets ignore these.
    """
    return {
        "connect_timeout": connect_timeout,
        "tcp_user_timeout": connect_timeout * 1000,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 1,
        "keepalives_count": 3,
    }


class TenantPool(QueuePool):
    """A QueuePool whose idle connections can be closed while others are lent out.

    ``QueuePool.dispose()`` closes the idle ones but also resets the pool's
    count of lent connections, and ``Engine.dispose()`` replaces the pool:
    a connection lent out meanwhile goes back to the old pool, where it stays
    open and out of reach (a leak of the connection budget). Here an idle
    entry's connection is closed and the entry goes back into the queue
    empty: its next checkout reconnects (as after an invalidation), the
    pool's counts are untouched, and a request waiting for this pool is woken
    as usual. (``_pool`` and ``_do_return_conn`` are QueuePool's own
    internals; tests/test_db_budget.py covers them.)
    """

    def close_idle(self, limit=None):
        """Close up to ``limit`` idle connections (all if None), least recently
        used first; return how many were closed."""
        entries = []
        closed = 0
        try:
            while True:
                try:
                    entries.append(self._pool.get(False))
                except pool_queue.Empty:
                    break
            # A LIFO queue: the first entry taken out is the most recently used.
            for entry in reversed(entries):
                if limit is not None and closed >= limit:
                    break
                if entry.dbapi_connection is not None:
                    entry.close()
                    closed += 1
        finally:
            for entry in reversed(entries):  # back in their order
                self._pool.put(entry, False)
        return closed

    def retire(self):
        """Close every connection of this pool, idle ones now, lent ones as they come back.

        For a database that is no longer where its name points (a moved
        tenant): requests in flight finish on their connection, nothing stays
        open after them. The return path is replaced on this pool object
        only; live pools keep QueuePool's own.
        """
        self._do_return_conn = self._close_and_return
        self.close_idle()

    def _close_and_return(self, entry):
        if entry.dbapi_connection is not None:
            entry.close()
        QueuePool._do_return_conn(self, entry)


def writing_engine(engine):
    """The Engine for sessions that write: ``engine``'s pool, ``WRITE_OPTION`` set.

    Both share one pool and one budget. On PostgreSQL only this one carries
    a connection event (BEGIN, below): an Engine with any connection event
    makes every statement on it look its listeners up, which cost a reading
    request a tenth of its time; the reading engine has none. The
    transaction's COMMIT or ROLLBACK is sent by the DBAPI connection itself
    (:class:`AutocommitConnection`).
    """
    writer = engine.execution_options(**{WRITE_OPTION: True})
    if engine.dialect.name == "postgresql":
        event.listen(writer, "begin", _send_begin)
    return writer


def _send_begin(connection):
    connection.exec_driver_sql("BEGIN")


class PostgresPool(TenantPool):
    """A :class:`TenantPool` of PostgreSQL connections, pinged when idle long
    (its listeners, below, are the class's: registered once, not per pool)."""


class SQLitePool(TenantPool):
    """A :class:`TenantPool` of SQLite connections, dropped when their file
    was replaced (the class's listener, below)."""


class SQLiteConnection(ReleasesSlotOnClose, sqlite3.Connection):
    """sqlite3's connection, whose close() gives its connection-budget slot back."""

    # The file this connection opened, (st_dev, st_ino), when it is watched.
    tenantapp_path = None
    tenantapp_file = None


_OPEN_TRANSACTION = (
    psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
    psycopg2.extensions.TRANSACTION_STATUS_INERROR,
)


class AutocommitConnection(ReleasesSlotOnClose, psycopg2.extensions.connection):
    """psycopg2's connection in autocommit, whose commit() and rollback() end
    the explicit transaction that is open, if any, and otherwise return at once.

    The driver runs in autocommit (see :func:`_set_up_postgresql`) and a
    writing transaction is explicit SQL: ``BEGIN`` from the writing Engine,
    ``COMMIT`` or ``ROLLBACK`` from here, where SQLAlchemy ends every
    transaction (``Connection.commit()``/``rollback()``) and where its pool
    resets a connection checked in (so none is pooled in a transaction).
    With no transaction open they send nothing and return without releasing
    the GIL: psycopg2's own would release and retake it to do nothing, three
    times per request (SQLAlchemy calls rollback() whenever a connection goes
    back to its pool), and with 8 busy threads each release hands the GIL to
    another thread; a reading request under load was 6 % faster without
    them. A broken connection (status unknown) has nothing to end. Its
    close() gives its connection-budget slot back
    (:class:`tenantapp.db.budget.ReleasesSlotOnClose`).
    """

    # Seconds idle after which the connection is pinged before use.
    tenantapp_ping_after = 0

    def commit(self):
        if not self.autocommit:
            super().commit()
        elif self.get_transaction_status() in _OPEN_TRANSACTION:
            _execute(self, "COMMIT")

    def rollback(self):
        if not self.autocommit:
            super().rollback()
        elif self.get_transaction_status() in _OPEN_TRANSACTION:
            _execute(self, "ROLLBACK")


def _execute(dbapi_connection, sql):
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _set_up_postgresql(dbapi_connection, *, ping_after):
    """psycopg2 in autocommit; a writing transaction is explicit (see above).

    psycopg2 otherwise sends BEGIN before the first statement of every
    transaction, and a reading request pays BEGIN and COMMIT round trips for
    nothing (switching isolation levels per checkout cost as much). So the
    driver runs in autocommit, and a reading Session's SELECTs are one round
    trip each.
    """
    dbapi_connection.autocommit = True
    dbapi_connection.tenantapp_ping_after = ping_after


_IDLE_SINCE = "tenantapp_idle_since"


@event.listens_for(PostgresPool, "checkin")
def _remember_checkin(dbapi_connection, connection_record):
    connection_record.info[_IDLE_SINCE] = time.monotonic()


@event.listens_for(PostgresPool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy):
    """Ping a connection before use when it sat idle ``ping_after`` seconds or more.

    A failed ping raises DisconnectionError, on which the pool discards the
    connection and checks out (or opens) another: the request never sees it.
    """
    idle_since = connection_record.info.get(_IDLE_SINCE)
    if idle_since is None or time.monotonic() - idle_since < dbapi_connection.tenantapp_ping_after:
        return
    try:
        _execute(dbapi_connection, "SELECT 1")
    except psycopg2.Error as exc:
        raise DisconnectionError(f"connection failed its ping: {exc}") from exc


def _set_up_sqlite(dbapi_connection, *, busy_timeout_ms, watched):
    # Let SQLAlchemy, not the sqlite3 module, decide when to BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()
    if watched is not None:
        dbapi_connection.tenantapp_path = watched
        dbapi_connection.tenantapp_file = _file_identity(watched)


def _file_identity(path):
    status = os.stat(path)
    return (status.st_dev, status.st_ino)


@event.listens_for(SQLitePool, "checkout")
def _same_file(dbapi_connection, connection_record, connection_proxy):
    """Discard a pooled connection whose file was removed (``tenant delete``),
    or replaced by another (the same name created again): an open SQLite
    connection keeps reading the removed file. One ``stat`` per checkout."""
    path = dbapi_connection.tenantapp_path
    if path is None:
        return
    try:
        current = _file_identity(path)
    except OSError:
        current = None
    if current != dbapi_connection.tenantapp_file:
        raise DisconnectionError(f"the database file {path} was removed or replaced")


def _sqlite_transactions(engine):
    """BEGIN issued by us: ``BEGIN IMMEDIATE`` for a writing transaction."""

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
