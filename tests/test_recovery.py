"""Faults at every step of a move, and the resolver (tenantapp.db.recovery).

A fault is injected in-process through ``registry.move_fault_hook`` (called
with the name of each step of the commit; it raises where the test wants),
or by the databases themselves (a server stopped, a backend terminated).
After each, and after the resolver has run, the project is in exactly one
tenant with all its tasks, and nothing is left prepared.
"""

import io
import os
import re
import signal
import subprocess
import sys
import time

import psycopg2
import pytest
from proc_net import listening_pid
from races import in_thread, libpq_url
from sqlalchemy import select
from test_project_move import nothing_left_prepared  # noqa: F401 - an autouse fixture

from conftest import PASSWORD, dispose_app, logged_in, tenant_rows
from tenantapp import make_app
from tenantapp.cli import Admin
from tenantapp.db import recovery
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import MoveDecision
from tenantapp.models.tenant import Project, Task

TASKS = 5


class InjectedFault(RuntimeError):
    """The fault a test's hook raises at a step of the commit."""


def make_project(client, name="Alpha", tasks=TASKS):
    project = client.post_json("/api/projects", {"name": name}).json
    for number in range(tasks):
        client.post_json("/api/tasks", {"project_id": project["id"], "title": f"t{number}"})
    return project


def where_is(admin, name="Alpha", tenants=("acme", "globex")):
    """{tenant: number of its tasks} for each tenant holding the project ``name``."""
    found = {}
    for tenant in tenants:
        for project in tenant_rows(admin, tenant, Project):
            if project.name == name:
                tasks = [t for t in tenant_rows(admin, tenant, Task) if t.project_id == project.id]
                found[tenant] = len(tasks)
    return found


def prepared_xacts(*clusters):
    gids = []
    for cluster in clusters:
        with psycopg2.connect(libpq_url(cluster.url("postgres"))) as conn, conn.cursor() as cur:
            cur.execute("SELECT gid FROM pg_prepared_xacts")
            gids += [row[0] for row in cur.fetchall()]
        conn.close()
    return gids


def decisions(admin):
    with admin.catalog.transaction(write=False) as db:
        return db.execute(select(MoveDecision)).scalars().all()


@pytest.fixture
def mover(app, make_user):
    make_user("mo", acme="editor", globex="editor")
    client = logged_in(app, "mo", tenant="acme")
    yield client
    app.registry.move_fault_hook = None


def fail_at(app, wanted, action=None):
    """Raise InjectedFault (or run ``action``) at the first step named ``wanted``
    (a ``prepared:`` step: whichever participant prepares first)."""
    fired = []

    def hook(step):
        if fired:
            return
        if step == wanted or (wanted == "prepared:first" and step.startswith("prepared:")):
            fired.append(step)
            if action is not None:
                action()
            else:
                raise InjectedFault(f"injected at {step}")

    app.registry.move_fault_hook = hook
    return fired


def move(client, project, status):
    return client.post_json(
        f"/api/projects/{project['id']}/move", {"tenant": "globex"}, status=status
    )


# --- faults before the decision: nothing moved ----------------------------------------


@pytest.mark.postgresql_only
@pytest.mark.parametrize("step", ["prepared:first", "prepared"])
def test_a_fault_before_the_decision_moves_nothing(step, app, mover, admin, pg_cluster):
    """After the first PREPARE, and after both: the coordinator rolls both back."""
    project = make_project(mover)
    fired = fail_at(app, step)
    move(mover, project, status=500)
    assert fired
    assert prepared_xacts(pg_cluster) == []
    assert where_is(admin) == {"acme": TASKS}
    recovery.resolve(app.registry, grace=0)
    assert where_is(admin) == {"acme": TASKS}
    assert decisions(admin) == []


@pytest.mark.sqlite_only
def test_sqlite_a_fault_before_the_target_commits_moves_nothing(app, mover, admin):
    """SQLite: the decision is committed, the target's commit is where the
    move happens; a fault before it leaves the project where it was."""
    project = make_project(mover)
    fail_at(app, "decided")
    move(mover, project, status=500)
    assert where_is(admin) == {"acme": TASKS}
    assert [d.outcome for d in decisions(admin)] == ["commit"]
    recovery.resolve(app.registry, grace=0)
    assert where_is(admin) == {"acme": TASKS}
    assert decisions(admin) == []


# --- faults after the decision: moved (the resolver finishes) -------------------------


@pytest.mark.postgresql_only
def test_a_fault_at_the_decision_is_a_201_and_the_resolver_finishes(app, mover, admin, pg_cluster):
    """After the catalog's commit, before any COMMIT PREPARED."""
    project = make_project(mover)
    fail_at(app, "decided")
    response = move(mover, project, status=201)
    assert response.json["tasks"] == TASKS
    left = prepared_xacts(pg_cluster)
    assert len(left) == 2
    # This process's own move, no longer in flight: resolved at once, grace or not.
    result = recovery.resolve(app.registry, grace=3600)
    assert sorted(result.committed) == sorted(left)
    assert prepared_xacts(pg_cluster) == []
    assert where_is(admin) == {"globex": TASKS}
    assert decisions(admin) == []
    assert recovery.resolve(app.registry, grace=0).lines() == ["nothing to recover"]


def test_a_fault_after_the_first_commit_is_a_201_and_the_resolver_finishes(
    app, mover, admin, backend, request
):
    """After the first COMMIT PREPARED (SQLite: after the target's commit)."""
    project = make_project(mover)

    def hook(name, fired=[]):  # noqa: B006 (the hook's own memory)
        if not fired and name.startswith("committed:"):
            fired.append(name)
            raise InjectedFault(name)

    app.registry.move_fault_hook = hook
    response = move(mover, project, status=201)
    assert response.json["tasks"] == TASKS
    if backend == "postgresql":
        pg = request.getfixturevalue("pg_cluster")
        left = prepared_xacts(pg)
        assert len(left) == 1
        result = recovery.resolve(app.registry, grace=3600)
        assert result.committed == left
        assert prepared_xacts(pg) == []
    else:
        assert where_is(admin) == {"acme": TASKS, "globex": TASKS}  # until the resolver ran
        result = recovery.resolve(app.registry, grace=3600)
        assert len(result.finished) == 1
    assert where_is(admin) == {"globex": TASKS}
    assert decisions(admin) == []
    assert recovery.resolve(app.registry, grace=0).lines() == ["nothing to recover"]


@pytest.mark.postgresql_only
def test_the_target_server_stopped_before_the_move(second_server, app, admin, make_user):
    admin.tenant_create("remote", url=second_server.url("tenant_remote"))
    make_user("rex", acme="editor", remote="editor")
    client = logged_in(app, "rex", tenant="acme")
    project = make_project(client)
    second_server.stop()
    try:
        response = client.post_json(
            f"/api/projects/{project['id']}/move", {"tenant": "remote"}, status=503
        )
        assert response.json["error"]["code"] == "service_unavailable"
    finally:
        second_server.start()
    assert where_is(admin, tenants=("acme", "remote")) == {"acme": TASKS}
    assert prepared_xacts(second_server) == []


@pytest.mark.postgresql_only
@pytest.mark.parametrize("when", ["prepared:source", "decided"])
def test_the_target_server_stopped_during_the_move(
    when, second_server, app, admin, make_user, pg_cluster
):
    """Stopped (immediate: as a crash) at a step of the commit; the move ends
    whole or untouched once the server is back and the resolver has run."""
    admin.tenant_create("remote", url=second_server.url("tenant_remote"))
    make_user("rex", acme="editor", remote="editor")
    client = logged_in(app, "rex", tenant="acme")
    project = make_project(client)
    if when == "prepared:source":
        # Before the target prepares: the target cannot prepare, nothing moves.
        def hook(step):
            if step == "prepared:source":
                second_server.stop(mode="immediate")
    else:

        def hook(step):
            if step == "decided":
                second_server.stop(mode="immediate")

    app.registry.move_fault_hook = hook
    try:
        response = client.post_json(
            f"/api/projects/{project['id']}/move", {"tenant": "remote"}, expect_errors=True
        )
    finally:
        app.registry.move_fault_hook = None
        if not second_server.is_running():
            second_server.start()
    # The app's pool still holds connections to the old server process.
    app.registry.getUtility(ITenantDirectory).factory("remote").dispose()
    if when == "decided":
        assert response.status_int == 201
    else:
        assert response.status_int == 503, response.body
    result = recovery.resolve(app.registry, grace=0)
    assert not result.errors, result.errors
    expected = {"remote": TASKS} if when == "decided" else {"acme": TASKS}
    assert where_is(admin, tenants=("acme", "remote")) == expected
    assert prepared_xacts(pg_cluster, second_server) == []
    assert decisions(admin) == []


@pytest.mark.postgresql_only
def test_the_catalog_failing_at_the_decision(app, mover, admin, pg_cluster):
    """The catalog's connection dies right before its commit (the decision):
    the move is in doubt; the coordinator settles it at once by the fence."""
    project = make_project(mover)

    def kill_catalog_transaction():
        with psycopg2.connect(libpq_url(pg_cluster.url("postgres"))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = 'catalog' AND state = 'idle in transaction'"
                )
                assert cur.rowcount >= 1
        conn.close()

    fail_at(app, "prepared", action=kill_catalog_transaction)
    response = move(mover, project, status=503)
    assert response.json["error"]["code"] == "service_unavailable"
    assert prepared_xacts(pg_cluster) == []
    assert where_is(admin) == {"acme": TASKS}
    recovery.resolve(app.registry, grace=0)
    assert where_is(admin) == {"acme": TASKS}
    assert decisions(admin) == []


@pytest.mark.postgresql_only
def test_the_catalog_refusing_writes(app, mover, admin, pg_cluster):
    project = make_project(mover)
    with psycopg2.connect(libpq_url(pg_cluster.url("postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER DATABASE catalog SET default_transaction_read_only = on")
    conn.close()
    admin.catalog.dispose()
    app.registry.getUtility(IDBFactory, "catalog").dispose()
    try:
        response = mover.post_json(
            f"/api/projects/{project['id']}/move", {"tenant": "globex"}, expect_errors=True
        )
        assert response.status_int == 503, response.body
    finally:
        with psycopg2.connect(libpq_url(pg_cluster.url("postgres"))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ALTER DATABASE catalog RESET default_transaction_read_only")
        conn.close()
        # Connections made meanwhile keep the setting they started with.
        admin.catalog.dispose()
        app.registry.getUtility(IDBFactory, "catalog").dispose()
    assert prepared_xacts(pg_cluster) == []
    assert where_is(admin) == {"acme": TASKS}


# --- the resolver and a live coordinator ----------------------------------------------


@pytest.mark.postgresql_only
def test_the_resolver_leaves_a_live_coordinators_move_alone(
    app, mover, admin, pg_cluster, settings
):
    """A move held between PREPARE and the decision while another process
    (here: the admin's app, another coordinator id only by its in-flight set)
    and a real second process run their resolver: nothing is rolled back."""
    import threading

    project = make_project(mover)
    reached, go_on = threading.Event(), threading.Event()

    def hold(step):
        if step == "prepared":
            reached.set()
            assert go_on.wait(30)

    app.registry.move_fault_hook = hold
    call = in_thread(move, mover, project, 201)
    assert reached.wait(30)
    try:
        # This process's resolver: the move is in flight.
        result = recovery.resolve(app.registry, grace=0)
        assert len(result.waiting) == 2 and not result.rolled_back
        # Another process of this host: the coordinator (this pid) is alive.
        output = subprocess.run(
            [sys.executable, "-c", RECOVER_SCRIPT],
            env=dict(
                os.environ,
                RECOVER_CATALOG=settings["tenantapp.catalog_url"],
                RECOVER_TEMPLATE=settings["tenantapp.tenant_url_template"],
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert output.returncode == 0, output.stderr
        assert "rolled back" not in output.stdout
        assert output.stdout.count("left to its coordinator") == 2, output.stdout
        assert len(prepared_xacts(pg_cluster)) == 2
    finally:
        go_on.set()
    assert call.result().status_int == 201
    assert where_is(admin) == {"globex": TASKS}
    assert prepared_xacts(pg_cluster) == []


@pytest.mark.postgresql_only
def test_a_pass_with_nothing_prepared_touches_no_tenant(settings, admin):
    """The resolver runs every minute in every process. With the catalog on
    the tenants' server it asks ``pg_prepared_xacts`` through the catalog: no
    tenant database gets a connection, no live tenant is evicted for it."""
    app = make_app(settings)
    try:
        directory = app.registry.getUtility(ITenantDirectory)
        result = recovery.resolve(app.registry, grace=0)
        assert (result.errors, result.committed, result.rolled_back) == ([], [], [])
        assert directory.live_engines() == 0
    finally:
        dispose_app(app)


# tenantapp-admin recover in another process, with no grace period.
RECOVER_SCRIPT = """
import os
from tenantapp import make_app
from tenantapp.cli import Admin
settings = {
    "tenantapp.catalog_url": os.environ["RECOVER_CATALOG"],
    "tenantapp.tenant_url_template": os.environ["RECOVER_TEMPLATE"],
    "tenantapp.secret": "s" * 40,
}
Admin(make_app(settings).registry).recover(grace=0)
"""


@pytest.mark.postgresql_only
def test_a_dead_coordinators_undecided_move_is_rolled_back_and_fenced(
    app, mover, admin, pg_cluster
):
    """Transactions prepared under the id of a process that no longer runs,
    with no decision: the resolver writes 'abort' first, then rolls back."""
    project = make_project(mover)
    dead = _dead_coordinator()
    source = admin.directory.factory("acme")
    gid = f"tenantapp:{'a' * 32}:source:{dead}"
    conn = psycopg2.connect(libpq_url(source.url))
    with conn.cursor() as cur:
        cur.execute("DELETE FROM projects WHERE id = %s", (project["id"],))
        cur.execute(f"PREPARE TRANSACTION '{gid}'")
    conn.close()
    assert where_is(admin) == {"acme": TASKS}  # not committed
    result = recovery.resolve(app.registry, grace=3600)
    assert result.rolled_back == [gid]
    assert prepared_xacts(pg_cluster) == []
    assert where_is(admin) == {"acme": TASKS}
    # The fence's 'abort' decision went with the last transaction of the move.
    assert decisions(admin) == []


def _dead_coordinator():
    """A coordinator id of this host naming a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = recovery.process_start(child.pid)
    child.wait()
    host = recovery.coordinator_id().split("/")[0]
    return f"{host}/{child.pid}/{start or 1}"


@pytest.mark.postgresql_only
def test_recover_command_prints_what_it_did(app, mover, admin, pg_cluster):
    project = make_project(mover)
    fail_at(app, "decided")
    move(mover, project, status=201)
    out = io.StringIO()
    Admin(app.registry, out=out).recover()
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("committed tenantapp:") for line in lines) == 2, lines
    out = io.StringIO()
    Admin(app.registry, out=out).recover()
    assert out.getvalue().splitlines() == ["nothing to recover"]
    assert where_is(admin) == {"globex": TASKS}


# --- a real crash ---------------------------------------------------------------------


def _ini_with(folder, extra, env_from):
    """production.ini with ``extra`` settings lines in its app section."""
    from live_server import ROOT

    with open(os.path.join(ROOT, "production.ini")) as f:
        text = f.read()
    for line in extra:
        key = line.split("=", 1)[0].strip()
        existing = re.search(rf"^{re.escape(key)} *=.*$", text, re.MULTILINE)
        if existing:
            text = text.replace(existing.group(0), line, 1)
        else:
            text = text.replace("[app:main]\n", f"[app:main]\n{line}\n", 1)
    ini = os.path.join(folder, f"server-{len(os.listdir(folder))}.ini")
    with open(ini, "w") as f:
        f.write(text)
    return ini


def _http(base, method, path, body=None, cookie=None, csrf=None):
    import json
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = f"session={cookie}"
    if csrf:
        headers["X-CSRF-Token"] = csrf
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers
    except OSError as exc:  # the server was killed mid-request
        return None, str(exc).encode(), {}


@pytest.mark.postgresql_only
def test_a_killed_process_leaves_nothing_behind(
    app, admin, make_user, db_urls, tmp_path, pg_cluster
):
    """SIGKILL of a pserve with 8 moves stopped inside their commit (4 before
    the decision, 4 after it); a second pserve resolves them within a minute,
    and ``tenantapp-admin recover`` then finds nothing left. Every project is
    in exactly one tenant with all its tasks. (Each move goes to a tenant of
    its own: moves into one tenant queue on its id-order lock.)"""
    import json

    from live_server import running_pserve, server_config

    targets = [f"crash{number}" for number in range(8)]
    for name in targets:
        admin.tenant_create(name)
    make_user("crash", acme="editor", **dict.fromkeys(targets, "editor"))
    client = logged_in(app, "crash", tenant="acme")
    projects = {name: make_project(client, f"Project for {name}", tasks=3) for name in targets}
    _ini, env = server_config("postgresql", db_urls, str(tmp_path))
    crash_log = tmp_path / "crash.log"
    env = dict(
        env,
        TENANTAPP_MOVE_CRASH_LOG=str(crash_log),
        PYTHONPATH=os.path.dirname(__file__) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    doomed_ini = _ini_with(
        str(tmp_path),
        [
            "pyramid.includes = move_crash_hooks",
            "tenantapp.move_resolver_interval = 0",
            # Each move stopped inside its commit holds a connection of acme's pool.
            "tenantapp.tenant_pool_size = 10",
        ],
        env,
    )
    with running_pserve(doomed_ini, env, str(tmp_path)) as (base, log_path):
        status, body, headers = _http(
            base,
            "POST",
            "/api/login",
            {"username": "crash", "password": PASSWORD, "tenant": "acme"},
        )
        assert status == 200, body
        cookie = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        csrf = json.loads(body)["csrf_token"]
        calls = [
            in_thread(
                _http,
                base,
                "POST",
                f"/api/projects/{project['id']}/move",
                {"tenant": target},
                cookie,
                csrf,
            )
            for target, project in projects.items()
        ]
        deadline = time.monotonic() + 30
        while not crash_log.exists() or len(crash_log.read_text().split()) < 8:
            assert time.monotonic() < deadline, (
                "the moves never reached their stop: "
                f"{[c.result()[:2] for c in calls if c.done()]} {open(log_path).read()[-3000:]}"
            )
            time.sleep(0.05)
        assert sorted(crash_log.read_text().split()) == ["decided"] * 4 + ["undecided"] * 4
        os.kill(_pserve_pid(base), signal.SIGKILL)
        for call in calls:
            assert call.result(limit=30)[0] is None  # no answer: the process died
    assert len(prepared_xacts(pg_cluster)) == 16  # 8 moves, 2 participants each

    # A second process resolves them (its resolver runs at start, then every 2 s).
    healthy_ini = _ini_with(str(tmp_path), ["tenantapp.move_resolver_interval = 2"], env)
    with running_pserve(healthy_ini, env, str(tmp_path)) as (base, log_path):
        deadline = time.monotonic() + 60
        # Resolved: no transaction left prepared, then no decision left (the
        # resolver deletes them at the end of its pass; stopping the process
        # between the two would leave them to `recover`).
        while prepared_xacts(pg_cluster) or decisions(admin):
            assert time.monotonic() < deadline, "not resolved within a minute"
            time.sleep(0.2)
        with open(log_path) as f:
            resolved = [line for line in f if "move recovery:" in line]
        assert len(resolved) == 16, resolved
    recover = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "tenantapp-admin"), healthy_ini, "recover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recover.returncode == 0, recover.stderr
    assert recover.stdout.splitlines() == ["nothing to recover"]
    # Decided: moved whole; undecided: untouched. Each project in one tenant.
    moved = 0
    for target, project in projects.items():
        where = where_is(admin, project["name"], tenants=("acme", target))
        assert where in ({"acme": 3}, {target: 3}), where
        moved += target in where
    assert moved == 4
    assert decisions(admin) == []


def _pserve_pid(base):
    """The pid of the process listening on ``base``'s port."""
    pid = listening_pid(int(base.rsplit(":", 1)[1]))
    assert pid is not None, f"no process listens on {base}"
    return pid


# --- a server without prepared transactions -------------------------------------------


@pytest.mark.postgresql_only
def test_without_prepared_transactions_a_move_is_a_clear_503_and_start_warns(
    settings, caplog, tmp_path
):
    from pg_cluster import PostgresCluster

    cluster = PostgresCluster(settings={"max_prepared_transactions": 0}).start()
    try:
        app = make_app(
            dict(
                settings,
                **{
                    "tenantapp.catalog_url": cluster.url("catalog"),
                    "tenantapp.tenant_url_template": cluster.url("tenant_{name}"),
                    "tenantapp.move_resolver_interval": "3600",
                },
            )
        )
        try:
            admin = Admin(app.registry, out=io.StringIO())
            admin.init()
            admin.tenant_create("acme")
            admin.tenant_create("globex")
            admin.user_create("zed", PASSWORD)
            admin.user_grant("zed", "acme", "editor")
            admin.user_grant("zed", "globex", "editor")
            with caplog.at_level("WARNING", logger="tenantapp"):
                resolver = recovery.start_resolver(app.registry)
                resolver.stop()
            warnings = [
                r.getMessage()
                for r in caplog.records
                if "max_prepared_transactions" in r.getMessage()
            ]
            assert warnings and "503" in warnings[0]
            client = logged_in(app, "zed", tenant="acme")
            project = make_project(client, tasks=2)
            response = client.post_json(
                f"/api/projects/{project['id']}/move", {"tenant": "globex"}, status=503
            )
            error = response.json["error"]
            assert error["code"] == "service_unavailable"
            assert "max_prepared_transactions" in error["message"]
            assert response.headers["Retry-After"]
            assert where_is(admin, tenants=("acme", "globex")) == {"acme": 2}
        finally:
            dispose_app(app)
    finally:
        cluster.destroy()
