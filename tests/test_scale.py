"""Many tenants in one process: what a tenant costs once it was used.

Tenant Engines share their server's dialect and compiled-statement cache
(a tenant's first request compiles nothing another tenant compiled), an
evicted idle tenant keeps no Engine, and the registry holds no utility per
tenant. The cap on connections under many threads is the soak test of
tests/test_db_budget.py.
"""

import gc
import io
import tracemalloc

import pytest
from alembic import command
from sqlalchemy import event
from sqlalchemy.engine import Engine

from conftest import dispose_app, logged_in
from tenantapp import make_app, migrations
from tenantapp.cli import Admin
from tenantapp.db.engines import shared_dialect
from tenantapp.interfaces import IDBFactory, ITenantDirectory


def app_with(settings, **limits):
    """An app of the test's own, with ``tenantapp.*`` settings ``limits``."""
    return make_app(dict(settings, **{f"tenantapp.{k}": str(v) for k, v in limits.items()}))


class Compilations:
    """Which statements sent to each database were compiled for it (cache misses)."""

    def __init__(self):
        self.misses = {}  # database -> SQL compiled when sent there
        self.sent = {}  # database -> every SQL sent there

    def __enter__(self):
        event.listen(Engine, "after_cursor_execute", self.record)
        return self

    def __exit__(self, *exc):
        event.remove(Engine, "after_cursor_execute", self.record)

    def record(self, connection, cursor, statement, parameters, context, executemany):
        database = connection.engine.url.database or ""
        self.sent.setdefault(database, []).append(statement)
        if context is not None and context.cache_hit == context.dialect.CACHE_MISS:
            self.misses.setdefault(database, []).append(statement)

    def of(self, tenant, what):
        found = []
        for database, statements in getattr(self, what).items():
            if f"tenant_{tenant}" in database or f"/{tenant}.sqlite" in database:
                found += statements
        return found


def test_a_second_tenant_compiles_nothing_the_first_compiled(app, admin, make_user):
    """The same request on two tenants: the second one's statements all come
    from the cache the first one filled (one dialect, one cache per server)."""
    for name in ("share_one", "share_two"):
        admin.tenant_create(name)
    make_user("sam", share_one="editor", share_two="editor")
    client = logged_in(app, "sam", tenant="share_one")

    def use():
        project = client.post_json("/api/projects", {"name": "P"}, status=201).json
        client.post_json("/api/tasks", {"project_id": project["id"], "title": "T"}, status=201)
        client.get("/api/tasks?limit=50")
        client.get(f"/api/projects/{project['id']}")

    # The listener is on for both: with a statement listener, reads take
    # SQLAlchemy's compiling path (tenantapp.db.reads), so share_one fills
    # the cache whatever earlier tests left in it.
    with Compilations() as compiled:
        use()
        client.put_json("/api/session/tenant", {"tenant": "share_two"})
        use()
    assert compiled.of("share_one", "sent"), "the requests sent nothing to share_one"
    assert compiled.of("share_two", "sent"), "the requests sent nothing to share_two"
    assert compiled.of("share_two", "misses") == []


def test_an_evicted_idle_tenant_keeps_no_engine_and_no_registry_entry(settings, admin, make_user):
    """Beyond ``max_tenant_engines`` the least recently used idle tenant's
    Engine is dropped; no tenant is a registry utility."""
    for name in ("idle_one", "idle_two"):
        admin.tenant_create(name)
    make_user("ida", idle_one="viewer", idle_two="viewer")
    app = app_with(settings, max_tenant_engines=1)
    try:
        client = logged_in(app, "ida", tenant="idle_one")
        client.get("/api/tasks")
        directory = app.registry.getUtility(ITenantDirectory)
        first = directory.factory("idle_one")
        assert first.made_engine is not None
        client.put_json("/api/session/tenant", {"tenant": "idle_two"})
        client.get("/api/tasks")
        assert first.made_engine is None
        assert directory.factory("idle_two").made_engine is not None
        utilities = [name for name, _ in app.registry.getUtilitiesFor(IDBFactory)]
        assert utilities == ["catalog"]
        # Used again: a new Engine over the same shared dialect.
        client.put_json("/api/session/tenant", {"tenant": "idle_one"})
        assert client.get("/api/tasks").json["items"] == []
        assert first.made_engine.dialect is directory.factory("idle_two").engine.dialect
    finally:
        dispose_app(app)


# Bytes a tenant may keep in a process once used and evicted (the issue's
# target is 20 MiB of RSS per 1,000 tenants).
KEPT_PER_TENANT = 20 * 1024


def test_a_tenant_used_once_keeps_little_memory(settings, admin, make_user):
    """Forty tenants used once each (a write and reads), four pools at most:
    what the process keeps per tenant is a few kilobytes, not a compiled
    cache and a dialect per tenant (~150 KB each before)."""
    names = [f"mem_{i:02d}" for i in range(48)]
    for name in names:
        admin.tenant_create(name)
    make_user("mem", **dict.fromkeys(names, "editor"))
    app = app_with(settings, max_tenant_engines=4)
    try:
        client = logged_in(app, "mem", tenant=names[0])

        def use(name):
            client.put_json("/api/session/tenant", {"tenant": name})
            project = client.post_json("/api/projects", {"name": "P"}, status=201).json
            client.post_json("/api/tasks", {"project_id": project["id"], "title": "T"}, status=201)
            client.get("/api/tasks?limit=50")

        for name in names[:8]:  # module-level caches (mappers, routes) warm
            use(name)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for name in names[8:]:
                use(name)
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        per_tenant = kept / len(names[8:])
        assert per_tenant < KEPT_PER_TENANT, f"{per_tenant / 1024:.1f} KiB kept per tenant"
    finally:
        dispose_app(app)


@pytest.mark.parametrize(
    ("one", "other", "shared"),
    [
        ("postgresql://app@db1/tenant_a", "postgresql+psycopg2://app@db1/tenant_b", True),
        ("postgresql://app@db1/tenant_a", "postgresql://app@db2/tenant_a", False),
        ("postgresql://app@db1/tenant_a", "postgresql://app@db1:5433/tenant_a", False),
        ("postgresql://app@db1/tenant_a", "sqlite:////tmp/tenant_a.sqlite", False),
        ("sqlite:////tmp/a/one.sqlite", "sqlite:////tmp/b/two.sqlite", True),
    ],
)
def test_a_dialect_is_shared_by_one_server_only(one, other, shared):
    """A statement compiled for one server (its version, its options) is never
    served to another, nor PostgreSQL's to SQLite: the cache key holds the dialect."""
    first, second = shared_dialect(one), shared_dialect(other)
    assert (first is second) is shared
    assert (first.dialect is second.dialect) is shared


def test_migrate_reads_one_row_of_a_tenant_at_head_and_migrates_the_one_behind(admin):
    """``tenant migrate``'s first pass sends each database one statement (its
    alembic_version), not an Alembic MigrationContext's questions; tenants at
    head get nothing else, and the command says so; a tenant behind is upgraded."""
    names = ["mig_head_one", "mig_head_two", "mig_behind"]
    for name in names:
        admin.tenant_create(name)
    behind = admin.directory.factory("mig_behind")
    with behind.write_engine.begin() as connection:
        command.downgrade(migrations.alembic_config("tenant", connection), "base")
    behind.dispose()
    head = migrations.head_revision("tenant")
    out = io.StringIO()
    with Compilations() as sent:
        Admin(admin.registry, out=out, err=io.StringIO()).tenant_migrate(names, jobs=2)
    for name in names:
        statements = [
            " ".join(sql.split())
            for sql in sent.of(name, "sent")
            if sql not in ("BEGIN", "ROLLBACK", "COMMIT")  # SQLite's own transaction
        ]
        assert statements == ["SELECT version_num FROM alembic_version"], name
    lines = out.getvalue().splitlines()
    assert lines == [
        f"2 tenant(s) already at {head}, not touched; 1 behind",
        f"3 of 3 tenant(s) at {head}",
    ]
    url = admin.directory.factory("mig_behind").url
    assert migrations.stored_revision(url) == head
