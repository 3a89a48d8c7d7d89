"""The app as it is deployed: pserve with the real ini files, checked from outside.

On the PostgreSQL run the server is ``pserve production.ini`` with its
settings from the environment; on the SQLite run, a copy of
development.ini pointed at the test databases.
"""

import contextlib
import itertools
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import PASSWORD
from live_server import PSERVE, ROOT, running_pserve, server_config
from pg_cluster import free_port


@contextlib.contextmanager
def running_server(backend, db_urls, tmp_path):
    """``pserve`` on the test databases in a process of its own; yields its URL."""
    folder = tmp_path / f"server-{next(_servers)}"
    folder.mkdir()
    ini, env = server_config(backend, db_urls, str(folder))
    with running_pserve(ini, env, str(folder)) as (base, _log):
        yield base


_servers = itertools.count()


@pytest.fixture
def server(backend, db_urls, tmp_path, admin):
    with running_server(backend, db_urls, tmp_path) as base:
        yield base


class Outside:
    """A client that talks HTTP to the server and keeps the raw cookie."""

    def __init__(self, base):
        self.base = base
        self.cookie = None
        self.csrf = None

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.cookie:
            request.add_header("Cookie", self.cookie)
        if self.csrf:
            request.add_header("X-CSRF-Token", self.csrf)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, response.headers, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, error.headers, json.loads(raw) if raw else None


def test_deployed_server_round_trip(server, make_user, backend):
    make_user("ann", acme="editor", globex="viewer")
    client = Outside(server)
    assert client.call("GET", "/healthz")[0] == 200
    assert client.call("GET", "/readyz")[0] == 200
    status, _, body = client.call("GET", "/api/me")
    assert (status, body["error"]["code"]) == (401, "unauthenticated")

    status, headers, me = client.call(
        "POST", "/api/login", {"username": "ann", "password": PASSWORD}
    )
    assert status == 200 and me["tenant"] is None
    set_cookie = headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert ("secure" in set_cookie.lower()) == (backend == "postgresql")  # production.ini only
    client.cookie = set_cookie.split(";")[0]
    client.csrf = me["csrf_token"]

    status, _, body = client.call("GET", "/api/projects")
    assert (status, body["error"]["code"]) == (403, "tenant_required")
    assert client.call("PUT", "/api/session/tenant", {"tenant": "acme"})[0] == 200
    status, headers, project = client.call("POST", "/api/projects", {"name": "Outside"})
    assert status == 201 and headers["ETag"] == '"1"'
    assert headers["Location"].endswith(f"/api/projects/{project['id']}")
    status, _, task = client.call(
        "POST", "/api/tasks", {"project_id": project["id"], "title": "From outside"}
    )
    assert status == 201
    status, headers, page = client.call("GET", "/api/tasks")
    assert status == 200 and [t["title"] for t in page["items"]] == ["From outside"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, body = client.call(
        "PATCH", f"/api/tasks/{task['id']}", {"status": "done"}, {"If-Match": '"7"'}
    )
    assert (status, body["error"]["code"]) == (412, "precondition_failed")
    assert client.call("DELETE", f"/api/projects/{project['id']}")[0] == 204
    assert client.call("GET", f"/api/tasks/{task['id']}")[0] == 404

    assert client.call("POST", "/api/logout")[0] == 204
    status, _, body = client.call("GET", "/api/me")
    assert (status, body["error"]["code"]) == (401, "unauthenticated")


def start_production_ini(env):
    """Run ``pserve production.ini`` with ``env``; it is expected to refuse."""
    return subprocess.run(
        [PSERVE, os.path.join(ROOT, "production.ini"), f"http_port={free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_ini_refuses_to_start_without_its_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTAPP_")}
    result = start_production_ini(env)
    assert result.returncode != 0
    assert "TENANTAPP_CATALOG_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_ini_refuses_a_short_secret(db_urls):
    _, env = server_config("postgresql", db_urls, None)
    result = start_production_ini(dict(env, TENANTAPP_SECRET="short"))
    assert result.returncode != 0
    assert "tenantapp.secret must be at least 32 characters" in result.stderr
    assert "Traceback" not in result.stderr


def test_revocation_done_through_one_process_is_refused_by_another(
    backend, db_urls, tmp_path, admin, make_user
):
    """Two pserve processes on the same catalog: a logout through one, and a
    role change, a suspension, a revocation and a disabling through the CLI,
    are each refused by the other process at its very next request."""
    make_user("ann", acme="editor")
    make_user("bob", acme="editor")
    with (
        running_server(backend, db_urls, tmp_path) as first,
        running_server(backend, db_urls, tmp_path) as second,
    ):

        def login_on_first(username):
            client = Outside(first)
            status, headers, me = client.call(
                "POST", "/api/login", {"username": username, "password": PASSWORD}
            )
            assert status == 200
            other = Outside(second)
            other.cookie = headers["Set-Cookie"].split(";")[0]
            other.csrf = me["csrf_token"]
            client.cookie, client.csrf = other.cookie, other.csrf
            return client, other

        def code(response):
            return response[0], (response[2] or {}).get("error", {}).get("code")

        # A logout through the first process ends the session on the second.
        on_first, on_second = login_on_first("bob")
        assert on_second.call("GET", "/api/projects")[0] == 200
        assert on_first.call("POST", "/api/logout")[0] == 204
        assert code(on_second.call("GET", "/api/projects")) == (401, "unauthenticated")

        _, ann = login_on_first("ann")
        assert ann.call("POST", "/api/projects", {"name": "Allowed"})[0] == 201
        admin.user_grant("ann", "acme", "viewer")
        assert code(ann.call("POST", "/api/projects", {"name": "No"})) == (403, "forbidden")
        admin.tenant_set_status("acme", "suspended")
        assert code(ann.call("GET", "/api/projects")) == (403, "tenant_suspended")
        admin.tenant_set_status("acme", "active")
        assert ann.call("GET", "/api/projects")[0] == 200
        admin.user_revoke("ann", "acme")
        assert code(ann.call("GET", "/api/projects")) == (403, "forbidden")
        assert ann.call("GET", "/api/me")[2]["tenant"] is None
        admin.user_set_disabled("ann", True)
        assert code(ann.call("GET", "/api/me")) == (401, "unauthenticated")


def test_the_server_makes_the_unknown_user_hash_before_it_serves(wsgi_app, monkeypatch):
    # The argon2 hash an unknown user's password is checked against is made
    # on first use (a CLI command never needs it), so the server runner must
    # make it before the first request: no login pays for it.
    from tenantapp import server
    from tenantapp.auth.passwords import Passwords

    passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    assert "dummy_hash" not in vars(passwords)
    monkeypatch.setattr(wsgi_app.registry, "passwords", passwords)
    served = []
    monkeypatch.setattr(server.waitress, "serve", lambda app, **options: served.append(app))
    server.serve(wsgi_app, {"http_port": "0"})
    assert served == [wsgi_app]
    assert "dummy_hash" in vars(passwords)
    assert passwords.verify(None, "anything") is False
