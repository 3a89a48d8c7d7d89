"""The database misbehaves: dropped connections and outages, on a real server."""

import pytest
from sqlalchemy import text

from conftest import PASSWORD, dispose_app

pytestmark = pytest.mark.postgresql_only


def terminate_app_connections(admin):
    """pg_terminate_backend every tenantapp connection but this one, as a
    server restart or an idle-connection killer would."""
    with admin.catalog.engine.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'tenantapp' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    # The fixtures' own pools lost their connections too.
    admin.catalog.dispose()
    admin.directory.dispose_all()
    return killed


def test_dropped_connections_are_replaced_and_nobody_sees_an_error(editor, admin, app):
    project = editor.post("/api/projects", {"name": "Survivor"}, status=201).json
    editor.get("/api/projects")
    killed = terminate_app_connections(admin)
    assert killed >= 2  # at least the app's catalog and acme connections
    # The very next requests, reads and writes, succeed.
    assert editor.get("/api/projects").json["items"][0]["name"] == "Survivor"
    editor.post("/api/tasks", {"project_id": project["id"], "title": "After"}, status=201)
    terminate_app_connections(admin)
    editor.post("/api/tasks", {"project_id": project["id"], "title": "Again"}, status=201)
    terminate_app_connections(admin)
    editor.patch(f"/api/projects/{project['id']}", {"description": "still here"})
    assert [t["title"] for t in editor.get("/api/tasks").json["items"]] == ["After", "Again"]


def test_an_idle_connection_is_pinged_and_replaced_before_use(settings, admin, make_user, caplog):
    """The overnight case: connections idle past ``pool_ping_after`` are pinged
    at checkout; a dead one is replaced there, before the request uses it."""
    import webtest

    from tenantapp import make_app

    make_user("ann", acme="editor")
    app = make_app(dict(settings, **{"tenantapp.pool_ping_after": "0"}))
    client = webtest.TestApp(app)
    client.post_json("/api/login", {"username": "ann", "password": PASSWORD})
    client.get("/api/projects")
    terminate_app_connections(admin)
    with caplog.at_level("WARNING", logger="tenantapp"):
        client.get("/api/projects")
    dispose_app(app)
    # No request failed and was retried: the ping caught every dead connection.
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
