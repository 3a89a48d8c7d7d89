"""API.md, "Members": tenant admins manage the chosen tenant's members, through
the same service as the CLI's ``user grant`` / ``user revoke``; the last admin
can be neither demoted nor removed (409), also under concurrency."""

from urllib.parse import quote

import pytest
from races import LockHolder, in_thread, wait_for_blocked_behind
from test_cli import admin_cli, ini_file  # noqa: F401 (fixtures)

from conftest import assert_error, member_roles


@pytest.fixture
def ada(client, make_user):
    """ada, the one admin of acme, logged in with acme chosen."""
    make_user("ada", display_name="Ada L", acme="admin")
    client.login("ada")
    return client


# --- GET /api/members -----------------------------------------------------------------


def test_list_in_username_order(ada, make_user):
    make_user("zoe", acme="viewer")
    make_user("bob", display_name="Bob B", acme="editor", globex="admin")
    make_user("carl", globex="viewer")  # another tenant's member: not listed
    assert ada.get("/api/members").json == [
        {"username": "ada", "display_name": "Ada L", "role": "admin"},
        {"username": "bob", "display_name": "Bob B", "role": "editor"},
        {"username": "zoe", "display_name": "Zoe", "role": "viewer"},
    ]


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_other_roles_get_403_and_change_nothing(new_client, make_user, admin, role):
    make_user("ada", acme="admin")
    make_user("bob", acme=role)
    make_user("carl")
    bob = new_client()
    bob.login("bob")
    before = member_roles(admin)
    assert_error(bob.get("/api/members", status=403), 403, "forbidden")
    assert_error(bob.put("/api/members/carl", {"role": "admin"}, status=403), 403, "forbidden")
    assert_error(bob.put("/api/members/bob", {"role": "admin"}, status=403), 403, "forbidden")
    assert_error(bob.delete("/api/members/ada", status=403), 403, "forbidden")
    # 403 comes before 404 and 422 (API.md's order).
    assert_error(bob.put("/api/members/nobody", {"role": "x"}, status=403), 403, "forbidden")
    assert member_roles(admin) == before


def test_login_csrf_and_tenant_come_first(new_client, make_user, admin):
    make_user("ada", acme="admin", globex="admin")
    make_user("bob")
    anonymous = new_client()
    assert_error(anonymous.get("/api/members", status=401), 401, "unauthenticated")
    assert_error(
        anonymous.put("/api/members/bob", {"role": "viewer"}, status=401), 401, "unauthenticated"
    )
    ada = new_client()
    ada.login("ada")  # two tenants: none chosen
    assert_error(ada.get("/api/members", status=403), 403, "tenant_required")
    assert_error(
        ada.put("/api/members/bob", {"role": "viewer"}, status=403), 403, "tenant_required"
    )
    ada.put("/api/session/tenant", {"tenant": "acme"})
    no_csrf = {"X-CSRF-Token": ""}
    response = ada.put("/api/members/bob", {"role": "viewer"}, status=403, headers=no_csrf)
    assert_error(response, 403, "csrf_failed")
    assert_error(ada.delete("/api/members/ada", status=403, headers=no_csrf), 403, "csrf_failed")
    assert member_roles(admin) == {"ada": "admin"}


# --- PUT /api/members/{username} --------------------------------------------------------


def test_put_adds_with_201_then_changes_with_200(ada, make_user, admin):
    make_user("bob", display_name="Bob B")
    added = ada.put("/api/members/bob", {"role": "viewer"}, status=201)
    assert added.json == {"username": "bob", "display_name": "Bob B", "role": "viewer"}
    assert added.content_type == "application/json"
    assert member_roles(admin) == {"ada": "admin", "bob": "viewer"}

    changed = ada.put("/api/members/bob", {"role": "admin"}, status=200)
    assert changed.json == {"username": "bob", "display_name": "Bob B", "role": "admin"}
    unchanged = ada.put("/api/members/bob", {"role": "admin"}, status=200)
    assert unchanged.json == changed.json
    assert member_roles(admin) == {"ada": "admin", "bob": "admin"}
    assert member_roles(admin, "globex") == {}  # only the chosen tenant


def test_put_unknown_or_disabled_user_is_404(ada, make_user, admin):
    make_user("dora", disabled=True)
    make_user("dave", disabled=True, acme="viewer")
    for username in ("nobody", "dora", "dave", "ADA", "x" * 151, "ada\x00", " ada"):
        url = "/api/members/" + quote(username, safe="")
        assert_error(ada.put(url, {"role": "editor"}, status=404), 404, "not_found")
    assert member_roles(admin) == {"ada": "admin", "dave": "viewer"}


def test_put_validates_the_role(ada, make_user, admin):
    make_user("bob", acme="viewer")
    for body, field in (
        ({"role": "owner"}, "role"),
        ({"role": "Admin"}, "role"),
        ({"role": None}, "role"),
        ({}, "role"),
        ({"role": "editor", "extra": 1}, "extra"),
    ):
        error = assert_error(
            ada.put("/api/members/bob", body, status=422), 422, "validation_failed"
        )
        assert field in error["fields"], error
    # A 404 comes before a 422 (API.md's order).
    assert_error(ada.put("/api/members/nobody", {"role": "owner"}, status=404), 404, "not_found")
    response = ada.raw("PUT", "/api/members/bob", b"[1]")
    assert_error(response, 400, "invalid_json")
    assert member_roles(admin) == {"ada": "admin", "bob": "viewer"}


# --- DELETE /api/members/{username} -----------------------------------------------------


def test_delete_removes_a_member_and_404s_for_a_non_member(ada, make_user, admin):
    make_user("bob", acme="editor", globex="viewer")
    make_user("carl", globex="admin")
    response = ada.delete("/api/members/bob", status=204)
    assert response.body == b""
    assert member_roles(admin) == {"ada": "admin"}
    assert member_roles(admin, "globex") == {"bob": "viewer", "carl": "admin"}  # only acme's
    assert_error(ada.delete("/api/members/bob", status=404), 404, "not_found")
    assert_error(ada.delete("/api/members/carl", status=404), 404, "not_found")
    assert_error(ada.delete("/api/members/nobody", status=404), 404, "not_found")
    assert_error(ada.delete("/api/members/" + "x" * 200, status=404), 404, "not_found")


# --- the last admin ---------------------------------------------------------------------


def test_last_admin_can_be_neither_demoted_nor_removed(ada, make_user, admin):
    make_user("bob", acme="editor")
    make_user("dan", acme="admin", disabled=True)  # a disabled admin manages nothing
    before = member_roles(admin)
    for role in ("editor", "viewer"):
        response = ada.put("/api/members/ada", {"role": role}, status=409)
        assert_error(response, 409, "conflict")
    assert_error(ada.delete("/api/members/ada", status=409), 409, "conflict")
    assert member_roles(admin) == before
    assert ada.get("/api/me").json["tenant"]["role"] == "admin"

    # With a second admin, either may step down, oneself included.
    ada.put("/api/members/bob", {"role": "admin"})
    assert ada.put("/api/members/ada", {"role": "editor"}).json["role"] == "editor"
    assert_error(ada.get("/api/members", status=403), 403, "forbidden")  # at once
    assert member_roles(admin) == {"ada": "editor", "bob": "admin", "dan": "admin"}


def test_an_admin_may_remove_themselves_when_another_admin_stays(ada, make_user, admin):
    make_user("bob", acme="admin")
    ada.delete("/api/members/ada")
    assert member_roles(admin) == {"bob": "admin"}
    me = ada.get("/api/me").json
    assert me["tenant"] is None and me["tenants"] == []


@pytest.mark.postgresql_only
def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    new_client, make_user, admin, db_urls
):
    make_user("ada", acme="admin")
    make_user("bob", acme="admin")
    ada, bob = new_client(), new_client()
    ada.login("ada")
    bob.login("bob")
    holder = LockHolder(db_urls["catalog"])
    try:
        holder.execute(
            "SELECT 1 FROM tenants WHERE name = %s FOR UPDATE", ("acme",)
        )  # both requests will queue behind this lock
        first = in_thread(
            ada.test_app.put_json,
            "/api/members/bob",
            {"role": "viewer"},
            headers={"X-CSRF-Token": ada.csrf},
            expect_errors=True,
        )
        second = in_thread(
            bob.test_app.put_json,
            "/api/members/ada",
            {"role": "viewer"},
            headers={"X-CSRF-Token": bob.csrf},
            expect_errors=True,
        )
        # The first waits on the holder, the second queues behind the first.
        wait_for_blocked_behind(holder, 2)
    finally:
        holder.release()
    statuses = sorted(call.result().status_int for call in (first, second))
    assert statuses == [200, 409]
    for call in (first, second):
        if call.result().status_int == 409:
            assert_error(call.result(), 409, "conflict")
    assert sorted(member_roles(admin).values()) == ["admin", "viewer"]


# --- the effect on the member's next request -------------------------------------------


def test_a_change_applies_on_the_members_very_next_request(ada, new_client, make_user):
    make_user("bob")
    bob = new_client()
    assert bob.login("bob").json["tenant"] is None

    ada.put("/api/members/bob", {"role": "viewer"}, status=201)
    assert bob.get("/api/me").json["tenants"] == [
        {"name": "acme", "display_name": "Acme Inc", "role": "viewer"}
    ]
    bob.put("/api/session/tenant", {"tenant": "acme"})
    bob.get("/api/projects")
    assert_error(bob.post("/api/projects", {"name": "p"}, status=403), 403, "forbidden")

    ada.put("/api/members/bob", {"role": "editor"})
    bob.post("/api/projects", {"name": "p"}, status=201)
    assert_error(bob.get("/api/members", status=403), 403, "forbidden")

    ada.put("/api/members/bob", {"role": "admin"})
    assert [m["username"] for m in bob.get("/api/members").json] == ["ada", "bob"]

    ada.put("/api/members/bob", {"role": "viewer"})
    assert_error(bob.post("/api/projects", {"name": "q"}, status=403), 403, "forbidden")

    ada.delete("/api/members/bob")
    me = bob.get("/api/me").json
    assert me["tenant"] is None and me["tenants"] == []
    assert_error(bob.get("/api/projects", status=403), 403, "forbidden")


# --- the CLI shares the rule ------------------------------------------------------------


def test_cli_refuses_to_demote_or_remove_the_last_admin_unless_forced(
    admin_cli,  # noqa: F811
    make_user,
    admin,
):
    make_user("ada", acme="admin")
    make_user("bob", acme="editor")
    for argv in (
        ["user", "grant", "ada", "acme", "--role", "editor"],
        ["user", "revoke", "ada", "acme"],
    ):
        result = admin_cli(*argv)
        assert result.code == 1, result
        line = result.one_error_line()
        assert "admin" in line and "--force" in line, line
        assert member_roles(admin) == {"ada": "admin", "bob": "editor"}

    assert admin_cli("user", "grant", "bob", "acme", "--role", "viewer").code == 0
    assert admin_cli("user", "revoke", "bob", "acme").code == 0
    assert admin_cli("user", "grant", "ada", "acme", "--role", "viewer", "--force").code == 0
    assert member_roles(admin) == {"ada": "viewer"}
    assert admin_cli("user", "grant", "ada", "acme", "--role", "admin").code == 0
    assert admin_cli("user", "revoke", "ada", "acme", "--force").code == 0
    assert member_roles(admin) == {}


def test_cli_grant_of_a_disabled_user_is_refused(admin_cli, make_user, admin):  # noqa: F811
    make_user("dora", disabled=True)
    result = admin_cli("user", "grant", "dora", "acme", "--role", "viewer")
    assert result.code == 1
    assert "disabled" in result.one_error_line()
    assert member_roles(admin) == {}
