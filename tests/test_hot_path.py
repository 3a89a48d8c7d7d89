"""Issue 15: the reads of the hot path (the login lookup, a page of tasks) go to
the driver directly on PostgreSQL (tenantapp.db.reads); they keep what
SQLAlchemy's execution path guaranteed: UTC timestamps, and a dropped
connection that is replaced without anybody seeing an error."""

import pytest
from sqlalchemy import event
from test_faults import terminate_app_connections

from conftest import dispose_app, logged_in
from tenantapp import make_app
from tenantapp.interfaces import IDBFactory, ITenantDirectory

pytestmark = pytest.mark.postgresql_only


def _set_time_zone(admin, zone):
    """The default session time zone of the catalog and acme's database
    (each new connection takes it)."""
    databases = (admin.catalog.url.database, admin.directory.factory("acme").url.database)
    with admin.catalog.engine.connect() as connection:
        for database in databases:
            connection.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone = '{zone}'")


def test_a_page_says_utc_whatever_the_sessions_time_zone(editor, admin, app):
    project = editor.post("/api/projects", {"name": "Clocks"}, status=201).json
    created = editor.post(
        "/api/tasks", {"project_id": project["id"], "title": "Kolkata"}, status=201
    ).json
    _set_time_zone(admin, "Asia/Kolkata")  # +05:30: psycopg2 answers in that offset
    try:
        dispose_app(app)  # the app's next connections are in the new time zone
        page = editor.get("/api/tasks").json["items"]
        assert [task["created_at"] for task in page] == [created["created_at"]]
        assert page[0]["created_at"].endswith("+00:00")
        assert page[0]["updated_at"] == created["updated_at"]
        # The login lookup read its timestamps in +05:30 too: still live.
        assert editor.get("/api/me").json["user"]["username"] == "erin"
    finally:
        _set_time_zone(admin, "UTC")
        dispose_app(app)


def test_a_page_read_on_dropped_connections_is_answered(editor, admin, app):
    project = editor.post("/api/projects", {"name": "Survivor"}, status=201).json
    editor.post("/api/tasks", {"project_id": project["id"], "title": "Still here"}, status=201)
    editor.get("/api/tasks")
    assert terminate_app_connections(admin) >= 2  # the app's catalog and acme connections
    # The login lookup, then the page, each meet a dead connection: each is
    # retried on a fresh one, and the answer is the page.
    response = editor.get("/api/tasks", status=200)
    assert [task["title"] for task in response.json["items"]] == ["Still here"]


def test_a_statement_listener_still_sees_the_reads(settings, make_user):
    """An engine with connection events (a statement listener, say) has them
    run: the reads take SQLAlchemy's own path there (an app of its own, since
    a listener stays on an engine)."""
    make_user("lena", acme="viewer")
    app = make_app(settings)
    seen = []

    def listener(connection, cursor, statement, *args):
        seen.append(statement)

    engines = (
        app.registry.getUtility(IDBFactory, "catalog").engine,
        app.registry.getUtility(ITenantDirectory).factory("acme").engine,
    )
    try:
        client = logged_in(app, "lena", tenant="acme")
        for engine in engines:
            event.listen(engine, "before_cursor_execute", listener)
        client.get("/api/tasks", status=200)
    finally:
        dispose_app(app)
    assert any("tenantapp_login_lookup" in statement for statement in seen)
    assert any("FROM tasks" in statement for statement in seen)
