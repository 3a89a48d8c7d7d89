"""Fixtures: the real app on real databases (SQLite or a throwaway PostgreSQL).

``pytest --backend sqlite`` or ``--backend postgresql`` (``make test`` runs
both). The catalog is migrated and the tenants ``acme`` and ``globex`` are
created once per run with the admin commands; before each test every row is
deleted, so tests are isolated by their own rows and commits are real (a
request's transaction really commits; threads and other processes see it).
"""

import os
import sys

import pytest
import webtest
from sqlalchemy import delete, select, update

from tenantapp import make_app
from tenantapp.auth import throttle
from tenantapp.cli import Admin
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import LoginFailure, LoginSession, Membership, Tenant, User
from tenantapp.models.tenant import Project, Task
from tenantapp.models.types import utcnow

sys.path.insert(0, os.path.dirname(__file__))
from pg_cluster import ClusterError, PostgresCluster  # noqa: E402

SECRET = "tests-only-secret-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
BASE_TENANTS = ("acme", "globex")


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("TENANTAPP_TEST_BACKEND", "sqlite"),
        help="database backend for the whole run",
    )


def pytest_report_header(config):
    return f"tenantapp test backend: {config.getoption('--backend')}"


@pytest.fixture(scope="session")
def backend(request):
    return request.config.getoption("--backend")


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL server of this run's own; failing to start fails the run."""
    try:
        cluster = PostgresCluster().start()
    except (ClusterError, OSError) as exc:
        pytest.exit(f"the PostgreSQL test cluster could not start: {exc}", returncode=1)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def second_server():
    """Another PostgreSQL server, for the tests of outages and of tenants on
    several servers (one per module: a module may stop and start it)."""
    try:
        cluster = PostgresCluster().start()
    except (ClusterError, OSError) as exc:
        pytest.fail(f"a second PostgreSQL cluster could not start: {exc}")
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def db_urls(backend, tmp_path_factory, request):
    if backend == "sqlite":
        folder = tmp_path_factory.mktemp("sqlite")
        return {
            "catalog": f"sqlite:///{folder}/catalog.sqlite",
            "template": f"sqlite:///{folder}/tenants/{{name}}.sqlite",
        }
    cluster = request.getfixturevalue("pg_cluster")
    return {"catalog": cluster.url("catalog"), "template": cluster.url("tenant_{name}")}


@pytest.fixture(scope="session")
def settings(db_urls):
    return {
        "tenantapp.catalog_url": db_urls["catalog"],
        "tenantapp.tenant_url_template": db_urls["template"],
        "tenantapp.secret": SECRET,
        "tenantapp.connect_timeout": "2",
        "tenantapp.pool_timeout": "3",
        "pyramid.includes": "testviews",
        # Cheap argon2 parameters: hundreds of logins in the suite. The code
        # path is the production one; only the work factor is smaller.
        "tenantapp.argon2_time_cost": "1",
        "tenantapp.argon2_memory_kib": "1024",
        "tenantapp.argon2_parallelism": "1",
    }


@pytest.fixture(scope="session")
def admin(settings):
    """The admin commands, in an app of their own (as another process would be)."""
    registry = make_app(settings).registry
    admin = Admin(registry, out=open(os.devnull, "w"))
    admin.init()
    for name in BASE_TENANTS:
        admin.tenant_create(name, display_name=name.capitalize() + " Inc")
    yield admin
    registry.getUtility(ITenantDirectory).dispose_all()
    registry.getUtility(IDBFactory, "catalog").dispose()


@pytest.fixture(scope="session")
def wsgi_app(admin, settings):
    app = make_app(settings)
    yield app
    app.registry.getUtility(ITenantDirectory).dispose_all()
    app.registry.getUtility(IDBFactory, "catalog").dispose()


def all_factories(registry):
    directory = registry.getUtility(ITenantDirectory)
    return [registry.getUtility(IDBFactory, "catalog"), *directory._factories.values()]


def checked_out(registry):
    """{database: connections lent out} for every pool of ``registry``."""
    return {f.name: f.checked_out() for f in all_factories(registry) if f.checked_out()}


@pytest.fixture(autouse=True)
def clean_databases(request, admin):
    """Delete every row before the test (the base tenants stay, active)."""
    with admin.catalog.transaction() as db:
        for model in (LoginFailure, LoginSession, Membership, User):
            db.execute(delete(model))
        db.execute(delete(Tenant).where(Tenant.name.not_in(BASE_TENANTS)))
        db.execute(update(Tenant).values(status="active"))
    for name in BASE_TENANTS:
        with admin.directory.factory(name).transaction() as db:
            db.execute(delete(Task))
            db.execute(delete(Project))
    yield


@pytest.fixture
def app(wsgi_app):
    """The WSGI app with the real clock; after the test no pool lends a connection
    (lifecycle rule 1, checked after every test)."""
    from tenantapp.models.types import utcnow as real_clock

    wsgi_app.registry.clock = real_clock
    yield wsgi_app
    assert checked_out(wsgi_app.registry) == {}, "a connection was not returned to its pool"


class Clock:
    """A clock the test turns forward (throttling and session expiry, no sleeps)."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(app):
    clock = Clock()
    app.registry.clock = clock
    return clock


_hashes = {}


@pytest.fixture
def make_user(admin):
    """Create a user with memberships: ``make_user("alice", acme="admin")``."""

    def make(username, password=PASSWORD, display_name=None, disabled=False, **roles):
        if password not in _hashes:
            _hashes[password] = admin.registry.passwords.hash(password)
        with admin.catalog.transaction() as db:
            user = User(
                username=username,
                display_name=display_name or username.title(),
                password_hash=_hashes[password],
                disabled=disabled,
            )
            db.add(user)
            db.flush()
            for tenant_name, role in roles.items():
                tenant = db.query(Tenant).filter_by(name=tenant_name).one()
                db.add(Membership(user_id=user.id, tenant_id=tenant.id, role=role))
            return user.id

    return make


class Client:
    """A browser-like API client: keeps its cookie and sends its CSRF token."""

    def __init__(self, app):
        self.test_app = webtest.TestApp(app)
        self.csrf = None

    def login(self, username, password=PASSWORD, tenant=None, status=200):
        body = {"username": username, "password": password}
        if tenant is not None:
            body["tenant"] = tenant
        response = self.test_app.post_json("/api/login", body, status=status)
        if response.status_int == 200:
            self.csrf = response.json["csrf_token"]
        return response

    def _headers(self, headers):
        merged = {"X-CSRF-Token": self.csrf} if self.csrf else {}
        merged.update(headers or {})
        return merged

    def get(self, url, status=200, headers=None, **kw):
        return self.test_app.get(url, status=status, headers=headers, **kw)

    def post(self, url, body=None, status=200, headers=None):
        return self.test_app.post_json(url, body, status=status, headers=self._headers(headers))

    def put(self, url, body=None, status=200, headers=None):
        return self.test_app.put_json(url, body, status=status, headers=self._headers(headers))

    def patch(self, url, body=None, status=200, headers=None):
        return self.test_app.patch_json(url, body, status=status, headers=self._headers(headers))

    def delete(self, url, status=204, headers=None):
        return self.test_app.delete(url, status=status, headers=self._headers(headers))

    def raw(
        self, method, url, body=b"", content_type="application/json", status=None, headers=None
    ):
        """Send ``body`` bytes as they are (malformed JSON, odd types)."""
        return self.test_app.request(
            url,
            method=method,
            body=body,
            status=status,
            headers={
                **self._headers(headers),
                **({"Content-Type": content_type} if content_type else {}),
            },
            expect_errors=True,
        )


@pytest.fixture
def new_client(app):
    """A factory of independent clients (each its own cookie jar)."""
    return lambda: Client(app)


@pytest.fixture
def client(new_client):
    return new_client()


@pytest.fixture
def editor(client, make_user):
    """A client logged in as an editor of acme, with acme chosen."""
    make_user("erin", acme="editor")
    client.login("erin")
    return client


def logged_in(app, username, tenant=None, password=PASSWORD):
    """A plain WebTest client of ``app``, logged in, sending its CSRF token."""
    client = webtest.TestApp(app)
    body = {"username": username, "password": password}
    if tenant:
        body["tenant"] = tenant
    csrf = client.post_json("/api/login", body).json["csrf_token"]
    client.extra_environ = {"HTTP_X_CSRF_TOKEN": csrf}
    return client


def dispose_app(app):
    """Close the pools of an app a test made for itself."""
    app.registry.getUtility(ITenantDirectory).dispose_all()
    app.registry.getUtility(IDBFactory, "catalog").dispose()


# What must never appear in an error body: stack traces, SQL, driver names,
# the test views' exception.
LEAK_MARKERS = (
    "traceback",
    'file "',
    "sqlalchemy",
    "psycopg",
    "sqlite",
    "select ",
    "insert ",
    "runtimeerror",
    "boom",
)


def assert_error(response, status, code, fields=None):
    """``response`` is API.md's error ``status`` and ``code``, and leaks nothing.

    A 422 lists its fields, each with a message (exactly ``fields`` when
    given). Returns the error object.
    """
    assert response.status_int == status, (response.status, response.body[:500])
    assert response.content_type == "application/json", response.headers
    body = response.json
    assert set(body) == {"error"}, body
    error = body["error"]
    expected = {"code", "message", "fields"} if code == "validation_failed" else {"code", "message"}
    assert set(error) == expected, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    if code == "validation_failed":
        assert isinstance(error["fields"], dict) and error["fields"]
        assert all(isinstance(m, str) and m for m in error["fields"].values()), error["fields"]
        if fields is not None:
            assert set(error["fields"]) == set(fields), error["fields"]
    text = response.body.decode("utf-8").lower()
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{marker!r} leaked into {text!r}"
    return error


def walk(client, path, limit, between_pages=None, **params):
    """Every item of every page of ``path``, following ``next`` to the end."""
    items, cursor = [], None
    for _ in range(1000):
        query = {"limit": str(limit), **params}
        if cursor is not None:
            query["after"] = cursor
        page = client.get(path, params=query).json
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            return items
        assert isinstance(cursor, str) and cursor
        if between_pages is not None:
            between_pages()
    raise AssertionError("the pages never ended")


def tenant_rows(admin, tenant, model):
    """Every row of ``model`` in ``tenant``'s database, read by another connection."""
    with admin.directory.factory(tenant).transaction(write=False) as db:
        return db.query(model).order_by(model.id).all()


def member_roles(admin, tenant="acme"):
    """{username: role} of ``tenant``'s members, read by another connection."""
    with admin.catalog.transaction(write=False) as db:
        rows = db.execute(
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(Tenant.name == tenant)
        ).all()
    return dict(rows)


def sessions_of(admin, username):
    """The login sessions of ``username`` in the catalog (ORM rows, detached)."""
    with admin.catalog.transaction(write=False) as db:
        return (
            db.execute(
                select(LoginSession)
                .join(User, User.id == LoginSession.user_id)
                .where(User.username == username)
            )
            .scalars()
            .all()
        )


def last_used(admin, username):
    """The stored "last used" of ``username``'s only login session."""
    (session,) = sessions_of(admin, username)
    return session.last_used_at


def failures(admin, username):
    """How many failed logins are stored for ``username``."""
    with admin.catalog.transaction(write=False) as db:
        return throttle.failure_count(db, username)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "postgresql_only: needs a PostgreSQL server (terminating backends, restarts); "
        "collected in the PostgreSQL run, deselected in the SQLite run",
    )
    config.addinivalue_line(
        "markers",
        "sqlite_only: runs once per make test (a real browser against pserve on the SQLite "
        "databases); collected in the SQLite run, deselected in the PostgreSQL run",
    )


def pytest_collection_modifyitems(config, items):
    # Not skipped: each of these tests belongs to the other run, which make
    # test always runs too; this run leaves them out and says how many.
    other_run = (
        "sqlite_only" if config.getoption("--backend") == "postgresql" else "postgresql_only"
    )
    deselected = [item for item in items if item.get_closest_marker(other_run)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other_run)]
