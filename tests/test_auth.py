"""Login, tenant choice, me and logout through the whole app."""

import pytest


def test_login_with_two_tenants_chooses_none(client, make_user):
    make_user("alice", display_name="Alice A", acme="admin", globex="viewer")
    me = client.login("alice").json
    assert me["user"]["username"] == "alice"
    assert me["user"]["display_name"] == "Alice A"
    assert isinstance(me["user"]["id"], int)
    assert me["tenants"] == [
        {"name": "acme", "display_name": "Acme Inc", "role": "admin"},
        {"name": "globex", "display_name": "Globex Inc", "role": "viewer"},
    ]
    assert me["tenant"] is None
    assert me["csrf_token"]
    assert client.get("/api/me").json == me


def test_single_tenant_is_chosen_at_login(client, make_user):
    make_user("bob", globex="editor")
    me = client.login("bob").json
    assert me["tenant"] == {"name": "globex", "display_name": "Globex Inc", "role": "editor"}


def test_tenant_chosen_at_login_equals_choosing_later(new_client, make_user):
    make_user("alice", acme="admin", globex="viewer")
    first, second = new_client(), new_client()
    at_login = first.login("alice", tenant="globex").json
    second.login("alice")
    later = second.put("/api/session/tenant", {"tenant": "globex"}).json
    assert (
        at_login["tenant"]
        == later["tenant"]
        == {"name": "globex", "display_name": "Globex Inc", "role": "viewer"}
    )
    assert second.get("/api/me").json["tenant"]["name"] == "globex"


@pytest.mark.parametrize(
    "username,password",
    [
        ("alice", "wrong password"),
        ("nobody", "whatever"),
        ("disabled", "correct horse battery staple"),
    ],
)
def test_bad_credentials_all_answer_the_same(client, make_user, username, password):
    make_user("alice", acme="admin")
    make_user("disabled", acme="admin", disabled=True)
    response = client.login(username, password, status=401)
    assert response.json == {
        "error": {"code": "unauthenticated", "message": "wrong username or password"}
    }
    assert "Set-Cookie" not in response.headers


def test_login_cookie_flags_and_new_session_each_time(client, make_user, app):
    make_user("alice", acme="admin")
    first = client.login("alice")
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "secure" not in cookie.lower()  # development settings; production.ini sets it
    old_value = client.test_app.cookies["session"]
    client.login("alice")
    assert client.test_app.cookies["session"] != old_value
    # The old session is dead: replaying its cookie is refused.
    thief = webtest_client_with_cookie(app, old_value)
    thief.get("/api/me", status=401)


def webtest_client_with_cookie(app, value):
    import webtest

    test_app = webtest.TestApp(app)
    test_app.set_cookie("session", value)
    return test_app


def test_login_to_foreign_or_missing_tenant_is_forbidden(client, make_user):
    make_user("alice", acme="admin")
    for tenant in ("globex", "nosuchtenant", "Not A Name!"):
        response = client.login("alice", tenant=tenant, status=403)
        assert response.json["error"]["code"] == "forbidden"
    assert "Set-Cookie" not in response.headers


def test_login_to_suspended_tenant(client, make_user, admin):
    make_user("alice", acme="admin")
    admin.tenant_set_status("acme", "suspended")
    assert client.login("alice", tenant="acme", status=403).json["error"]["code"] == (
        "tenant_suspended"
    )


def test_login_body_errors(client, make_user):
    make_user("alice", acme="admin")
    app = client.test_app
    r = app.post_json("/api/login", {"username": "alice", "password": "x", "extra": 1}, status=422)
    assert r.json["error"]["fields"] == {"extra": "unknown field"}
    r = app.post_json("/api/login", {"username": "alice"}, status=422)
    assert r.json["error"]["fields"] == {"password": "is required"}
    r = app.post_json("/api/login", {"username": 5, "password": "x"}, status=422)
    assert "username" in r.json["error"]["fields"]
    r = app.post("/api/login", "not json", content_type="application/json", status=400)
    assert r.json["error"]["code"] == "invalid_json"
    r = app.post("/api/login", "username=alice", status=415)
    assert r.json["error"]["code"] == "unsupported_media_type"


def test_choose_tenant_answers(client, make_user, admin):
    make_user("alice", acme="admin", globex="editor")
    make_user("other", globex="admin")
    client.login("alice")
    for tenant in ("nosuchtenant", "../etc", "UPPER"):
        r = client.put("/api/session/tenant", {"tenant": tenant}, status=403)
        assert r.json["error"] == {
            "code": "forbidden",
            "message": "you are not a member of this tenant",
        }
    assert client.put("/api/session/tenant", {}, status=422).json["error"]["fields"] == {
        "tenant": "is required"
    }
    assert (
        "tenant"
        in client.put("/api/session/tenant", {"tenant": 7}, status=422).json["error"]["fields"]
    )
    client.put("/api/session/tenant", {"tenant": "acme", "x": 1}, status=422)
    admin.tenant_set_status("globex", "suspended")
    r = client.put("/api/session/tenant", {"tenant": "globex"}, status=403)
    assert r.json["error"]["code"] == "tenant_suspended"
    assert client.get("/api/me").json["tenant"] is None


def test_logout_ends_the_session_on_the_server(client, make_user, app):
    make_user("alice", acme="admin")
    client.login("alice")
    cookie = client.test_app.cookies["session"]
    client.post("/api/logout", status=204)
    client.get("/api/me", status=401)
    # The cookie, replayed by anyone, is refused from now on.
    webtest_client_with_cookie(app, cookie).get("/api/me", status=401)


def test_logout_needs_login_and_csrf(client, make_user):
    client.post("/api/logout", status=401)
    make_user("alice", acme="admin")
    client.login("alice")
    assert (
        client.post("/api/logout", headers={"X-CSRF-Token": "wrong"}, status=403).json["error"][
            "code"
        ]
        == "csrf_failed"
    )
    client.get("/api/me")


def test_me_without_login(client):
    r = client.get("/api/me", status=401)
    assert r.json == {"error": {"code": "unauthenticated", "message": "log in first"}}
    assert r.content_type == "application/json"


def test_forged_cookie_is_refused(client, make_user):
    make_user("alice", acme="admin")
    client.login("alice")
    value = client.test_app.cookies["session"]
    client.test_app.set_cookie("session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    client.get("/api/me", status=401)


def test_members_is_admin_only(new_client, make_user):
    make_user("alice", acme="admin")
    make_user("erin", display_name="Erin E", acme="editor")
    admin_client, editor_client = new_client(), new_client()
    admin_client.login("alice")
    editor_client.login("erin")
    assert admin_client.get("/api/members").json == [
        {"username": "alice", "display_name": "Alice", "role": "admin"},
        {"username": "erin", "display_name": "Erin E", "role": "editor"},
    ]
    assert editor_client.get("/api/members", status=403).json["error"]["code"] == "forbidden"


@pytest.mark.postgresql_only
def test_the_login_lookup_function_answers_like_the_query(new_client, make_user, admin):
    """PostgreSQL reads logins through the catalog's PL/pgSQL function (its plan
    is kept per connection); it must answer exactly as the query it wraps, in
    every state a login session can be in."""
    from sqlalchemy import select, update

    from tenantapp.auth.sessions import _LOGIN_QUERY, _LOGIN_QUERY_POSTGRESQL
    from tenantapp.models.catalog import LoginSession, User

    make_user("none", acme="viewer", globex="viewer")
    make_user("member", acme="editor")
    make_user("revoked", acme="editor", globex="viewer")
    make_user("suspended", globex="admin")
    make_user("disabled", acme="viewer")
    new_client().login("none")
    new_client().login("member")
    new_client().login("revoked", tenant="acme")
    new_client().login("suspended")
    new_client().login("disabled")
    admin.user_revoke("revoked", "acme")
    admin.tenant_set_status("globex", "suspended")
    # (The CLI would also end the sessions of a disabled user; the row is
    # changed directly so that the lookup meets one.)
    with admin.catalog.transaction() as db:
        db.execute(update(User).where(User.username == "disabled").values(disabled=True))

    with admin.catalog.engine.connect() as connection:
        tokens = connection.execute(select(LoginSession.token_hash)).scalars().all()
        states = set()
        for token_hash in [*tokens, "0" * 64]:
            params = {"token_hash": token_hash}
            expected = connection.execute(_LOGIN_QUERY, params).all()
            assert connection.execute(_LOGIN_QUERY_POSTGRESQL, params).all() == expected
            states.update((row.role, row.tenant_status, row.disabled) for row in expected)
    assert states == {
        (None, None, False),  # no tenant chosen yet
        ("editor", "active", False),
        (None, "active", False),  # membership revoked
        ("admin", "suspended", False),
        ("viewer", "active", True),  # user disabled
    }
