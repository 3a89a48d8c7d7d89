"""API.md, "Your account": changing one's password, and one's login sessions
(listed under opaque ids, ended one by one). No tenant is needed."""

from urllib.parse import quote

import pytest
from sqlalchemy import select

from conftest import PASSWORD, SECRET, assert_error
from tenantapp.auth import tokens
from tenantapp.models.catalog import LoginSession, User

NEW_PASSWORD = "a brand new passphrase"


def stored_sessions(admin, username):
    """{token hash: (created_at, last_used_at)} of the user's sessions in the catalog."""
    with admin.catalog.transaction(write=False) as db:
        rows = db.execute(
            select(LoginSession.token_hash, LoginSession.created_at)
            .join(User, User.id == LoginSession.user_id)
            .where(User.username == username)
        ).all()
    return {row.token_hash: row.created_at for row in rows}


def password_hash(admin, username):
    with admin.catalog.transaction(write=False) as db:
        return db.execute(select(User.password_hash).where(User.username == username)).scalar_one()


def cookie_of(client):
    return client.test_app.cookies["session"]


def hash_of(client):
    return tokens.token_hash(tokens.unsign_token(SECRET, cookie_of(client)))


@pytest.fixture
def alice(make_user):
    make_user("alice", acme="admin")  # one tenant; the account needs none (see below)
    return "alice"


# --- PUT /api/me/password ---------------------------------------------------------------


def test_password_change_ends_every_other_session_and_keeps_this_one(
    alice, new_client, make_user, admin
):
    make_user("bob", acme="editor")
    mine, laptop, phone, bob = new_client(), new_client(), new_client(), new_client()
    for client in (mine, laptop, phone):
        client.login("alice")
    bob.login("bob")

    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = mine.put("/api/me/password", body, status=204)
    assert response.body == b""

    for client in (laptop, phone):
        assert_error(client.get("/api/me", status=401), 401, "unauthenticated")
    assert mine.get("/api/me").json["user"]["username"] == "alice"
    mine.get("/api/projects")
    bob.get("/api/me")  # other users keep theirs
    assert set(stored_sessions(admin, "alice")) == {hash_of(mine)}

    new_client().login("alice", PASSWORD, status=401)
    new_client().login("alice", NEW_PASSWORD)
    assert password_hash(admin, "alice").startswith("$argon2")


def test_a_user_without_any_tenant_changes_their_password(make_user, client):
    make_user("nomad")
    client.login("nomad")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    client.put("/api/me/password", body, status=204)
    client.get("/api/me")


@pytest.mark.parametrize(
    "new_password,why",
    [
        ("x" * 11, "too short"),
        ("x" * 1025, "too long"),
        (PASSWORD, "the current one"),
    ],
)
def test_new_password_rules(alice, new_client, admin, new_password, why):
    mine, other = new_client(), new_client()
    mine.login("alice")
    other.login("alice")
    before = password_hash(admin, "alice")
    response = mine.put(
        "/api/me/password",
        {"current_password": PASSWORD, "new_password": new_password},
        status=422,
    )
    assert_error(response, 422, "validation_failed", fields={"new_password"})
    assert password_hash(admin, "alice") == before
    other.get("/api/me")  # nothing ended


def test_new_password_boundaries_are_accepted(alice, client):
    client.login("alice")
    for current, new in ((PASSWORD, "x" * 12), ("x" * 12, "y" * 1024)):
        body = {"current_password": current, "new_password": new}
        client.put("/api/me/password", body, status=204)
    client.login("alice", "y" * 1024)


@pytest.mark.parametrize(
    "body,fields",
    [
        ({}, {"current_password", "new_password"}),
        ({"current_password": PASSWORD}, {"new_password"}),
        ({"current_password": PASSWORD, "new_password": 123456789012}, {"new_password"}),
        ({"current_password": PASSWORD, "new_password": None}, {"new_password"}),
        ({"current_password": PASSWORD, "new_password": "nul\x00 in the middle"}, None),
        ({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "x": 1}, {"x"}),
    ],
)
def test_malformed_password_bodies_are_422(alice, client, admin, body, fields):
    client.login("alice")
    before = password_hash(admin, "alice")
    response = client.put("/api/me/password", body, status=422)
    assert_error(response, 422, "validation_failed", fields=fields)
    assert password_hash(admin, "alice") == before


def test_password_change_needs_login_and_csrf(alice, new_client):
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert_error(new_client().put("/api/me/password", body, status=401), 401, "unauthenticated")
    client = new_client()
    client.login("alice")
    response = client.put("/api/me/password", body, status=403, headers={"X-CSRF-Token": "x"})
    assert_error(response, 403, "csrf_failed")
    client.login("alice", PASSWORD)  # unchanged


def test_wrong_current_password_is_403_and_counts_toward_the_throttle(
    alice, new_client, admin, clock
):
    mine, other = new_client(), new_client()
    mine.login("alice")
    other.login("alice")
    before = password_hash(admin, "alice")
    wrong = {"current_password": "not it", "new_password": NEW_PASSWORD}
    for _ in range(4):
        assert_error(mine.put("/api/me/password", wrong, status=403), 403, "forbidden")
    # The fifth failure is a failed login like the others...
    new_client().login("alice", "not it either", status=401)
    # ...and past the limit even the right password is refused, here and at login.
    right = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    throttled = mine.put("/api/me/password", right, status=429)
    assert_error(throttled, 429, "too_many_requests")
    assert int(throttled.headers["Retry-After"]) > 0
    assert_error(new_client().login("alice", status=429), 429, "too_many_requests")
    assert password_hash(admin, "alice") == before
    other.get("/api/me")  # a refused change ends nothing

    clock.advance(901)  # the window has passed (the sessions are still alive)
    mine.put("/api/me/password", right, status=204)
    new_client().login("alice", NEW_PASSWORD)


def test_a_right_current_password_does_not_count_as_a_failure(alice, client, new_client):
    client.login("alice")
    for index in range(6):
        new = f"passphrase number {index}"
        current = PASSWORD if index == 0 else f"passphrase number {index - 1}"
        body = {"current_password": current, "new_password": new}
        client.put("/api/me/password", body, status=204)
    new_client().login("alice", "passphrase number 5")


# --- GET /api/me/sessions ---------------------------------------------------------------


def test_sessions_newest_first_with_current_and_opaque_ids(alice, new_client, make_user, clock):
    make_user("bob", acme="viewer")
    first, second, third = new_client(), new_client(), new_client()
    first.login("alice")
    clock.advance(10)
    second.login("alice")
    clock.advance(10)
    third.login("alice")
    new_client().login("bob")

    listed = second.get("/api/me/sessions").json
    assert [set(item) for item in listed] == [{"id", "created_at", "last_used_at", "current"}] * 3
    assert [item["current"] for item in listed] == [False, True, False]
    created = [item["created_at"] for item in listed]
    assert created == sorted(created, reverse=True)
    assert all(item["created_at"].endswith("+00:00") for item in listed)
    assert all(item["last_used_at"].endswith("+00:00") for item in listed)
    assert listed[0]["created_at"] == clock.now.isoformat()  # the third login's

    # Opaque: neither the token nor its hash, and no cookie.
    secrets = set()
    for client in (first, second, third):
        cookie = cookie_of(client)
        token = tokens.unsign_token(SECRET, cookie)
        secrets |= {cookie, token, tokens.token_hash(token), client.csrf}
    ids = [item["id"] for item in listed]
    assert len(set(ids)) == 3 and isinstance(ids[0], str)
    for public_id in ids:
        assert not any(public_id in secret or secret in public_id for secret in secrets)
        stranger = new_client()
        stranger.test_app.set_cookie("session", public_id)
        assert_error(stranger.get("/api/me", status=401), 401, "unauthenticated")
    # The same id on every list (it opens nothing, but it names one session).
    assert [item["id"] for item in third.get("/api/me/sessions").json] == ids


def test_expired_sessions_are_not_listed(alice, new_client, clock):
    old, fresh = new_client(), new_client()
    old.login("alice")
    clock.advance(1000)
    fresh.login("alice")
    clock.advance(1000)  # old: unused for 2000 s, past the idle limit
    listed = fresh.get("/api/me/sessions").json
    assert len(listed) == 1 and listed[0]["current"]


def test_sessions_need_a_login(new_client):
    assert_error(new_client().get("/api/me/sessions", status=401), 401, "unauthenticated")


# --- DELETE /api/me/sessions/{id} -------------------------------------------------------


def test_ending_another_session(alice, new_client, admin):
    mine, laptop = new_client(), new_client()
    mine.login("alice")
    laptop.login("alice")
    (other,) = [s for s in mine.get("/api/me/sessions").json if not s["current"]]
    response = mine.delete(f"/api/me/sessions/{other['id']}", status=204)
    assert response.body == b""
    assert "session=;" not in response.headers.get("Set-Cookie", "")
    assert_error(laptop.get("/api/me", status=401), 401, "unauthenticated")
    assert [s["current"] for s in mine.get("/api/me/sessions").json] == [True]
    assert set(stored_sessions(admin, "alice")) == {hash_of(mine)}
    # Ended is gone: the same id again is 404.
    assert_error(mine.delete(f"/api/me/sessions/{other['id']}", status=404), 404, "not_found")


def test_ending_the_current_session_is_a_logout(alice, new_client, admin):
    mine, laptop = new_client(), new_client()
    mine.login("alice")
    laptop.login("alice")
    cookie = cookie_of(mine)
    (current,) = [s for s in mine.get("/api/me/sessions").json if s["current"]]
    response = mine.delete(f"/api/me/sessions/{current['id']}", status=204)
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert_error(mine.get("/api/me", status=401), 401, "unauthenticated")
    replay = new_client()
    replay.test_app.set_cookie("session", cookie)
    assert_error(replay.get("/api/me", status=401), 401, "unauthenticated")
    laptop.get("/api/me")  # the other one stays


def test_someone_elses_session_id_is_404(alice, new_client, make_user, admin):
    make_user("bob", acme="admin")
    mine, bob = new_client(), new_client()
    mine.login("alice")
    bob.login("bob")
    (bobs,) = bob.get("/api/me/sessions").json
    for public_id in (bobs["id"], "nonsense", "x" * 300, hash_of(bob), "%00", "é"):
        response = mine.delete(f"/api/me/sessions/{quote(public_id, safe='')}", status=404)
        assert_error(response, 404, "not_found")
    bob.get("/api/me")
    assert len(stored_sessions(admin, "bob")) == 1


def test_ending_a_session_needs_login_and_csrf(alice, new_client):
    mine = new_client()
    mine.login("alice")
    (current,) = mine.get("/api/me/sessions").json
    url = f"/api/me/sessions/{current['id']}"
    assert_error(new_client().delete(url, status=401), 401, "unauthenticated")
    response = mine.delete(url, status=403, headers={"X-CSRF-Token": ""})
    assert_error(response, 403, "csrf_failed")
    mine.get("/api/me")
