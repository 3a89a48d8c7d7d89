"""Scale-out on one machine: tenants on several PostgreSQL servers, PgBouncer in
front of one, a bounded connection budget over many tenants, and a burst on
one tenant that does not starve the others."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from conftest import dispose_app, logged_in
from pg_cluster import PgBouncer
from tenantapp import make_app
from tenantapp.interfaces import ITenantDirectory

pytestmark = pytest.mark.postgresql_only


@pytest.fixture(scope="module")
def bouncer(second_server):
    pgbouncer = PgBouncer(second_server).start()
    yield pgbouncer
    pgbouncer.stop()


def test_tenants_on_two_servers_side_by_side(second_server, admin, app, make_user):
    admin.tenant_create("west", url=second_server.url("tenant_west"))
    make_user("ann", acme="editor", west="editor")
    client = logged_in(app, "ann", tenant="acme")
    client.post_json("/api/projects", {"name": "On the first server"}, status=201)
    client.put_json("/api/session/tenant", {"tenant": "west"})
    client.post_json("/api/projects", {"name": "On the second server"}, status=201)
    assert [p["name"] for p in client.get("/api/projects").json["items"]] == [
        "On the second server"
    ]
    client.put_json("/api/session/tenant", {"tenant": "acme"})
    assert [p["name"] for p in client.get("/api/projects").json["items"]] == ["On the first server"]
    with admin.directory.factory("west").engine.connect() as connection:
        port = connection.exec_driver_sql("SHOW port").scalar_one()
    assert int(port) == second_server.port


def test_the_whole_request_cycle_through_pgbouncer_transaction_pooling(
    bouncer, admin, app, make_user
):
    # Created, migrated and served through PgBouncer: no session state anywhere.
    admin.tenant_create("bounced", url=bouncer.url("tenant_bounced"))
    make_user("bea", bounced="editor")
    client = logged_in(app, "bea")
    project = client.post_json("/api/projects", {"name": "Pooled"}, status=201).json
    task = client.post_json(
        "/api/tasks", {"project_id": project["id"], "title": "Through the bouncer"}, status=201
    ).json
    client.patch_json(f"/api/tasks/{task['id']}", {"status": "done"}, headers={"If-Match": '"1"'})
    client.patch_json(
        f"/api/tasks/{task['id']}", {"status": "open"}, headers={"If-Match": '"1"'}, status=412
    )
    client.post_json("/api/projects", {"name": "pooled"}, status=422)  # a failed write
    errors = []

    def reader():
        for _ in range(10):
            items = client.get("/api/tasks").json["items"]
            if [t["status"] for t in items] != ["done"]:
                errors.append(items)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    client.delete(f"/api/projects/{project['id']}", status=204)
    assert client.get("/api/tasks").json["items"] == []
    client.post_json("/api/logout", status=204)
    client.get("/api/me", status=401)


def test_many_tenants_stay_within_the_connection_budget(settings, admin, make_user):
    names = [f"budget_{i:02d}" for i in range(30)]
    for name in names:
        admin.tenant_create(name)
    make_user("fay", **{name: "viewer" for name in names})
    limits = {
        "tenantapp.max_connections": "12",
        "tenantapp.catalog_pool_size": "3",
        "tenantapp.tenant_pool_size": "2",
        "tenantapp.max_tenant_engines": "5",
    }
    app = make_app(dict(settings, **limits))
    budget = app.registry.connection_budget
    directory = app.registry.getUtility(ITenantDirectory)
    client = logged_in(app, "fay")
    peak = 0
    for name in names:
        client.put_json("/api/session/tenant", {"tenant": name})
        client.get("/api/projects")
        peak = max(peak, budget.in_use)
        assert directory.live_engines() <= 5
    with admin.catalog.engine.connect() as connection:
        held = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantapp' "
                "AND datname LIKE 'tenant_budget%'"
            )
        ).scalar_one()
    print(
        f"\n30 tenants used once: peak {peak} connections in the budget, "
        f"{held} open to tenant databases, {directory.live_engines()} live tenant pools"
    )
    assert peak <= 12
    assert held <= 5 * 2
    dispose_app(app)


def test_a_burst_on_one_tenant_does_not_starve_another(settings, admin, make_user):
    make_user("gil", acme="editor", globex="editor")
    app = make_app(
        dict(settings, **{"tenantapp.tenant_pool_size": "2", "tenantapp.pool_timeout": "10"})
    )
    busy = logged_in(app, "gil", tenant="acme")
    calm = logged_in(app, "gil", tenant="globex")
    calm.get("/api/projects")

    with ThreadPoolExecutor(max_workers=6) as pool:
        burst = [pool.submit(busy.get, "/api/_test/sleep?seconds=0.5") for _ in range(6)]
        time.sleep(0.1)  # let the burst take acme's two connections
        started = time.monotonic()
        calm.get("/api/projects")
        calm_elapsed = time.monotonic() - started
        for job in burst:
            assert job.result(timeout=30).status_int == 200
    assert calm_elapsed < 0.4, calm_elapsed
    dispose_app(app)
