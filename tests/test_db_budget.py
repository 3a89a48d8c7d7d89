"""The connection budget gives back every slot exactly once, and waits only when it must.

A slot comes back whatever closes the connection: its pool, an
invalidation, a detached close, a connect that fails after the connection
opened, the garbage collector. Idle connections anywhere (in busy pools, in
pools of evicted tenants) make room before anyone waits, and a waiting
request keeps making room until its deadline. The truth about what is open
is the database's (``pg_stat_activity``) or, on SQLite, the process's open
files.
"""

import contextlib
import gc
import os
import random
import threading
import time

import psycopg2
import pytest
from proc_net import connections_to
from races import WAIT_LIMIT, in_thread, libpq_url
from sqlalchemy import event, text

from conftest import dispose_app, logged_in
from tenantapp import make_app
from tenantapp.db.engines import normalize_url, sqlite_path
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import Tenant


def small_app(settings, **limits):
    """An app of the test's own with a tiny budget (3 connections by default)."""
    values = {
        "max_connections": 3,
        "catalog_pool_size": 1,
        "tenant_pool_size": 2,
        "max_tenant_engines": 8,
        "pool_timeout": 2,
        **limits,
    }
    return make_app(dict(settings, **{f"tenantapp.{k}": str(v) for k, v in values.items()}))


def directory_of(app):
    return app.registry.getUtility(ITenantDirectory)


def catalog_of(app):
    return app.registry.getUtility(IDBFactory, "catalog")


class OpenConnections:
    """Connections really open to some tenants' databases, as the server (or the OS) sees them.

    SQLite: the files the process has open. SQLite keeps a closed
    connection's file open while another connection of the process holds the
    same database (closing it would drop that one's POSIX locks), so there
    the count is exact when nothing else is open to those databases.
    """

    def __init__(self, backend, admin):
        self.backend = backend
        self.admin = admin

    def count(self, tenants):
        urls = [normalize_url(self.admin.directory.url_for(name)) for name in tenants]
        if self.backend == "sqlite":
            paths = {sqlite_path(url) for url in urls}
            found = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    found += os.readlink(f"/proc/self/fd/{fd}") in paths
                except OSError:
                    continue  # closed meanwhile (the listing's own fd)
            return found
        observer = psycopg2.connect(libpq_url(self.admin.catalog.url))
        try:
            with observer.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)",
                    ([url.database for url in urls],),
                )
                return cursor.fetchone()[0]
        finally:
            observer.close()

    def settle(self, tenants, expected):
        """The count once it equals ``expected`` (a closed connection's backend
        exits a moment after the client closed it), or the last count seen."""
        deadline = time.monotonic() + WAIT_LIMIT / 2
        while True:
            found = self.count(tenants)
            if found == expected() or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@pytest.fixture
def open_connections(backend, admin):
    return OpenConnections(backend, admin)


def test_a_connect_that_fails_after_the_connection_opened_gives_its_slot_back(
    settings, admin, make_user, backend
):
    """SQLAlchemy closes a connection whose set-up failed without any pool event."""
    admin.tenant_create("half_open")
    make_user("hal", half_open="editor")
    app = small_app(settings, max_connections=4)
    budget = app.registry.connection_budget
    client = logged_in(app, "hal", tenant="half_open")
    client.get("/api/projects")
    factory = directory_of(app).factory("half_open")
    factory.dispose()
    before = budget.in_use
    # A real error from the database on the freshly opened connection: the
    # server ends the session (PostgreSQL), or a statement fails (SQLite).
    failing = (
        "SELECT pg_terminate_backend(pg_backend_pid())"
        if backend == "postgresql"
        else "SELECT * FROM no_such_table"
    )

    def fail_while_setting_up(dbapi_connection, connection_record):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(failing)
        finally:
            cursor.close()

    event.listen(factory.engine, "connect", fail_while_setting_up)
    try:
        for attempt in range(6):  # more connects than the whole budget
            response = client.get("/api/projects", status=503)
            assert response.json["error"]["code"] == "service_unavailable"
            assert budget.in_use == before, f"a slot kept after failed connect {attempt + 1}"
    finally:
        event.remove(factory.engine, "connect", fail_while_setting_up)
    client.get("/api/projects")
    dispose_app(app)


def test_every_way_a_connection_closes_gives_its_slot_back_once(settings, admin, open_connections):
    admin.tenant_create("closer")
    app = small_app(settings, max_connections=6, tenant_pool_size=3)
    budget = app.registry.connection_budget
    factory = directory_of(app).factory("closer")
    engine = factory.engine
    catalog_of(app).dispose()  # the catalog was read (start-up, lookup): count the tenant's only

    def assert_open(expected):
        assert budget.in_use == expected
        assert open_connections.settle(["closer"], lambda: expected) == expected

    assert_open(0)
    with engine.connect() as connection:  # back to its pool, then closed with it
        connection.execute(text("SELECT 1"))
    assert_open(1)
    factory.dispose()
    assert_open(0)

    connection = engine.connect()  # invalidated while in use
    connection.invalidate()
    connection.close()
    assert_open(0)

    raw = engine.raw_connection()  # detached from its pool, then closed
    raw.detach()
    raw.close()
    assert_open(0)

    raw = engine.raw_connection()  # detached and dropped: the collector closes it
    raw.detach()
    del raw
    gc.collect()
    assert_open(0)

    held = [engine.connect() for _ in range(3)]  # the count goes up again, one by one
    assert_open(3)
    for connection in held:
        connection.close()
    dispose_app(app)
    assert_open(0)


def test_a_pool_emptied_while_a_request_takes_a_connection_leaks_nothing(
    settings, admin, make_user, open_connections
):
    """Evicting a tenant empties its pool; a request that already holds the
    tenant's engine takes a connection right then (forced here: inside the
    close of the evicted pool's idle connection)."""
    for name in ("evicted", "evictor"):
        admin.tenant_create(name)
    make_user("eve", evictor="editor")
    app = small_app(settings, max_connections=4, max_tenant_engines=1)
    budget = app.registry.connection_budget
    directory = directory_of(app)
    evicted = directory.factory("evicted")
    with evicted.engine.connect():
        pass  # one idle connection in the pool about to be emptied
    late = evicted.session()  # a request that has its engine, not yet its connection
    taken = []

    def take_while_emptying(dbapi_connection, connection_record):
        if not taken:
            taken.append(late.connection())

    event.listen(evicted.engine, "close", take_while_emptying)
    client = logged_in(app, "eve", tenant="evictor")
    client.get("/api/projects")  # a second tenant: the first is evicted (cap 1)
    event.remove(evicted.engine, "close", take_while_emptying)
    assert taken, "the evicted tenant's pool was not emptied"
    late.execute(text("SELECT 1"))
    late.close()  # the request ends, its connection goes back to its pool
    taken.clear()

    directory.dispose_all()
    catalog_of(app).dispose()
    gc.collect()
    tenants = ["evicted", "evictor"]
    assert (budget.in_use, open_connections.settle(tenants, lambda: 0)) == (0, 0)
    dispose_app(app)


def test_idle_connections_of_a_busy_pool_make_room(settings, admin, make_user, open_connections):
    for name in ("busy_x", "busy_y"):
        admin.tenant_create(name)
    make_user("bo", busy_y="editor")
    app = small_app(settings)  # 3 connections: the catalog's and busy_x's two
    budget = app.registry.connection_budget
    client = logged_in(app, "bo", tenant="busy_y")
    busy = directory_of(app).factory("busy_x")
    in_use, idle = busy.session(), busy.session()
    in_use.connection()
    idle.connection()
    idle.close()  # busy_x: one connection in use, one idle
    assert budget.in_use == 3

    started = time.monotonic()
    client.get("/api/projects")  # busy_y needs a connection: busy_x's idle one makes room
    assert time.monotonic() - started < 1.0
    assert in_use.execute(text("SELECT 1")).scalar_one() == 1  # untouched
    assert busy.made_engine.pool.checkedout() == 1
    assert budget.in_use == 3  # the catalog's, busy_x's in use, busy_y's
    in_use.close()
    dispose_app(app)
    assert (budget.in_use, open_connections.settle(["busy_x", "busy_y"], lambda: 0)) == (0, 0)


def test_a_request_waiting_for_the_budget_takes_a_connection_that_became_idle(
    settings, admin, make_user
):
    """The budget is spent by connections in use; one of them goes back to its
    pool (idle, still open) while a request waits: the request gets its room."""
    for name in ("wait_x", "wait_y"):
        admin.tenant_create(name)
    make_user("wu", wait_y="editor")
    app = small_app(settings)
    budget = app.registry.connection_budget
    directory = directory_of(app)
    client = logged_in(app, "wu", tenant="wait_y")
    catalog_of(app).dispose()
    sessions = [directory.factory(name).session() for name in ("wait_x", "wait_x", "wait_y")]
    for session in sessions:
        session.connection()
    assert budget.in_use == 3  # all in use, nothing idle anywhere

    tried = threading.Event()
    make_room = budget.make_room

    def make_room_then_say_so(*args):
        freed = make_room(*args)
        tried.set()
        return freed

    budget.make_room = make_room_then_say_so
    request = in_thread(client.get, "/api/projects", expect_errors=True)
    assert tried.wait(WAIT_LIMIT), "the request never found the budget spent"
    sessions[1].close()  # back to wait_x's pool: idle, still open
    response = request.result()
    assert response.status_int == 200, response.body[:300]
    for session in sessions:
        session.close()
    dispose_app(app)


def test_a_tenant_evicted_between_its_use_and_its_checkout_gives_its_connection_back(
    settings, admin, make_user, open_connections
):
    for name in ("late_x", "late_y"):
        admin.tenant_create(name)
    make_user("lu", late_y="editor")
    app = small_app(settings, max_tenant_engines=1)
    directory = directory_of(app)
    client = logged_in(app, "lu", tenant="late_y")
    late = directory.factory("late_x").session()  # late_x used ...
    client.get("/api/projects")  # ... evicted by late_y (cap 1) ...
    late.connection()  # ... and only now its connection is opened
    late.close()  # idle in the pool of a tenant the directory let go
    busy_y = directory.factory("late_y").session()
    busy_y.connection()  # late_y's only connection, in use

    started = time.monotonic()
    client.get("/api/projects")  # late_y needs a second one: the budget is spent
    assert time.monotonic() - started < 1.0
    assert open_connections.settle(["late_x"], lambda: 0) == 0
    busy_y.close()
    dispose_app(app)


# The soak ---------------------------------------------------------------------


class SocketSampler:
    """Samples :func:`proc_net.connections_to` in a thread of its own until stopped;
    ``peak`` is the most seen above what was open when it started."""

    def __init__(self, port, interval=0.005):
        self.port = port
        self.interval = interval
        self.baseline = connections_to(port)
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(connections_to(self.port) - self.baseline)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak(self):
        return max(self.samples, default=0)


SOAK_TENANTS = 200
SOAK_THREADS = 16
SOAK_ROUNDS = 50  # per thread: choose a tenant, read its projects
SOAK_HOT = 3


def clone_tenants(admin, names, template):
    """Tenant databases copied from ``template``'s (PostgreSQL), and their catalog rows."""
    server = psycopg2.connect(libpq_url(admin.catalog.url.set(database="postgres")))
    server.autocommit = True
    try:
        with server.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            existing = {row[0] for row in cursor.fetchall()}
            source = normalize_url(admin.directory.url_for(template)).database
            for name in names:
                database = normalize_url(admin.directory.url_for(name)).database
                if database not in existing:
                    cursor.execute(f'CREATE DATABASE "{database}" TEMPLATE "{source}"')
    finally:
        server.close()
    with admin.catalog.transaction() as db:
        db.add_all(Tenant(name=name, display_name=name, status="active") for name in names)


@pytest.mark.postgresql_only
def test_soak_many_tenants_a_tiny_budget_and_evictions_all_the_time(
    settings, admin, make_user, open_connections, backend
):
    names = [f"soak_{i:03d}" for i in range(SOAK_TENANTS)]
    admin.tenant_create("soak_template")
    clone_tenants(admin, names, "soak_template")
    make_user("sam", **dict.fromkeys(names, "viewer"))
    app = small_app(
        settings,
        max_connections=8,
        catalog_pool_size=3,
        tenant_pool_size=2,
        max_tenant_engines=4,
        pool_timeout=3,
        login_max_attempts=1000,  # twelve logins of one user at once are no attack
    )
    budget = app.registry.connection_budget
    directory = directory_of(app)
    pressure = []
    make_room = budget.make_room

    def counted_make_room(*args):
        pressure.append(1)
        return make_room(*args)

    budget.make_room = counted_make_room
    answers = {}
    failures = []
    lock = threading.Lock()

    def worker(seed):
        chooser = random.Random(seed)
        client = logged_in(app, "sam")
        for _ in range(SOAK_ROUNDS):
            # Half the requests on a few hot tenants (their pools are busy and
            # idle at once), half on any of them (evictions all the time).
            name = chooser.choice(names[:SOAK_HOT] if chooser.random() < 0.5 else names)
            hot = name in names[:SOAK_HOT]
            for response in (
                client.put_json("/api/session/tenant", {"tenant": name}, expect_errors=True),
                # A hot tenant's request holds its connection a moment (the
                # database works, the GIL is free): its pool is busy for real.
                client.get(
                    "/api/_test/sleep?seconds=0.02" if hot else "/api/projects",
                    expect_errors=True,
                ),
            ):
                with lock:
                    answers[response.status_int] = answers.get(response.status_int, 0) + 1
                    if response.status_int != 200 and len(failures) < 5:
                        failures.append((name, response.status, response.text[:200]))

    # PostgreSQL: the sockets this process holds to the server, sampled
    # throughout (other apps of this run hold theirs, idle: the baseline).
    port = normalize_url(catalog_of(app).url).port if backend == "postgresql" else None
    catalog_of(app).dispose()  # nothing of this app's in the baseline
    assert budget.in_use == 0
    sampler = SocketSampler(port) if port is not None else contextlib.nullcontext()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(SOAK_THREADS)]
    with sampler:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    elapsed = time.monotonic() - started
    print(
        f"\nsoak: {sum(answers.values())} requests on {SOAK_TENANTS} tenants in {elapsed:.1f} s, "
        f"answers {answers}, budget spent {len(pressure)} times, "
        f"{budget.in_use} connections open, {directory.live_engines()} live tenant pools"
        + (
            f", at most {sampler.peak} sockets open ({len(sampler.samples)} samples)"
            if port
            else ""
        )
    )
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert answers == {200: SOAK_THREADS * SOAK_ROUNDS * 2}, failures
    if port is not None:
        assert len(sampler.samples) > 100, "too few samples to say anything"
        assert 0 < sampler.peak <= 8, f"{sampler.peak} connections open at once, the budget is 8"
    assert pressure, "the budget was never spent: the soak proved nothing"

    # What the budget counts is what the server sees (the catalog's idle
    # connections closed first: other apps of this run use the catalog too).
    catalog_of(app).dispose()
    gc.collect()
    seen = open_connections.settle(names, lambda: budget.in_use)
    assert budget.in_use == seen, f"the budget counts {budget.in_use}, the server sees {seen}"
    assert budget.in_use <= 8
    dispose_app(app)
    gc.collect()
    assert (budget.in_use, open_connections.settle(names, lambda: 0)) == (0, 0)
