"""The Members page and the Account page through the whole app (WebTest), on the
real databases (issue 13).

As in tests/test_pages.py, a ``Browser`` submits the forms the pages render and
forged requests are sent by hand; every effect is checked in the catalog, read
by another connection, or through another person's next page.
"""

import re

import pytest
import webtest
from sqlalchemy import select
from test_pages import Browser, soup, text_of

from conftest import PASSWORD, member_roles
from tenantapp.auth import throttle
from tenantapp.models.catalog import LoginSession, User

NEW_PASSWORD = "a much longer passphrase"
PASSWORD_FIELDS = ("current_password", "new_password", "new_password_again")
LAST_ADMIN = "Acme Inc needs at least one admin: make someone else an admin first."


@pytest.fixture
def new_browser(app):
    return lambda: Browser(app)


def session_count(admin, username):
    with admin.catalog.transaction(write=False) as db:
        return len(
            db.execute(
                select(LoginSession.token_hash)
                .join(User, User.id == LoginSession.user_id)
                .where(User.username == username)
            ).all()
        )


def failure_count(admin, username):
    with admin.catalog.transaction(write=False) as db:
        return throttle.failure_count(db, username)


def member_rows(response):
    """[(username, display name, role)] as the members page lists them."""
    rows = []
    for row in soup(response).select("tr.member"):
        cells = row.find_all("td")
        username = cells[0].find(string=True, recursive=False).strip()
        role = row.select_one("select option[selected]")["value"]
        rows.append((username, cells[1].get_text(strip=True), role))
    return rows


def role_form(page, username):
    """The role selector form of ``username``'s row."""
    for row in soup(page).select("tr.member"):
        if row.select_one("td.member-username").find(string=True, recursive=False).strip() == (
            username
        ):
            return page.forms[row.select_one("form")["id"]]
    raise AssertionError(f"no row for {username}")


def add_member(browser, username, role="viewer", status=303):
    form = browser.get("/members").forms["add-member"]
    form["username"] = username
    form["role"] = role
    return form.submit(status=status)


def can_write(browser):
    """True when the person's projects page offers the new-project form."""
    return "new-project" in browser.get("/projects").forms


@pytest.fixture
def acme_admin(new_browser, make_user):
    """Alice, the only admin of acme (her only tenant: chosen at login)."""
    make_user("alice", display_name="Alice Admin", acme="admin")
    browser = new_browser()
    browser.login("alice")
    return browser


# --- Members: who sees it ----------------------------------------------------------------


def test_an_admin_sees_the_members_with_their_roles_and_every_control(acme_admin, make_user):
    make_user("carol", display_name="Carol Viewer", acme="viewer")
    make_user("bob", display_name="Bob Builder", acme="editor")
    make_user("gus", globex="admin")  # another tenant's: not listed
    projects = acme_admin.get("/projects")
    # The admin badge and a "Members" link lead to the page.
    links = {a.get_text(strip=True): a["href"] for a in soup(projects).select(".session a")}
    assert links["admin"] == "/members" and links["Members"] == "/members"
    assert links["Account"] == "/account"

    page = acme_admin.get("/members")
    assert page.headers["Cache-Control"] == "no-store"
    assert member_rows(page) == [
        ("alice", "Alice Admin", "admin"),
        ("bob", "Bob Builder", "editor"),
        ("carol", "Carol Viewer", "viewer"),
    ]
    assert "add-member" in page.forms
    removes = [a["href"] for a in soup(page).select("a.danger")]
    assert removes == ["/members/alice/remove", "/members/bob/remove", "/members/carol/remove"]
    assert role_form(page, "bob").action == "/members/bob/role"


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_other_roles_get_no_link_and_the_server_refuses_them(new_browser, make_user, admin, role):
    make_user("alice", acme="admin")
    make_user("erin", acme=role)
    browser = new_browser()
    browser.login("erin")
    projects = browser.get("/projects")
    hrefs = [a["href"] for a in soup(projects).find_all("a")]
    assert "/members" not in hrefs
    assert "/account" in hrefs
    before = member_roles(admin)
    response = browser.get("/members", status=403)
    assert "Only the admins of this tenant manage its members." in text_of(response)
    browser.get("/members/alice/remove", status=403)
    for path, fields in (
        ("/members", {"username": "erin", "role": "admin"}),
        ("/members/erin/role", {"role": "admin"}),
        ("/members/alice/role", {"role": "viewer"}),
        ("/members/alice/remove", {}),
    ):
        response = browser.post(path, fields, status=403)
        assert "Only the admins of this tenant manage its members." in text_of(response)
    assert member_roles(admin) == before


def test_the_members_page_needs_a_login_and_a_chosen_tenant(new_browser, make_user):
    visitor = new_browser()
    assert visitor.get("/members", status=303).location.endswith("/login")
    assert visitor.get("/account", status=303).location.endswith("/login")
    make_user("alice", acme="admin", globex="admin")
    browser = new_browser()
    browser.login("alice")  # two tenants: none chosen yet
    assert browser.get("/members", status=303).location.endswith("/tenants")


# --- Members: add, change, remove ---------------------------------------------------------


def test_add_a_colleague_then_promote_them_they_see_it_on_their_next_page(
    acme_admin, new_browser, make_user, admin
):
    make_user("bob", display_name="Bob Builder", globex="editor")
    colleague = new_browser()
    colleague.login("bob")  # globex, his only tenant, chosen
    assert "choose-acme" not in colleague.get("/tenants").forms

    response = add_member(acme_admin, "bob", "viewer")
    assert response.location.endswith("/members")
    assert ("bob", "Bob Builder", "viewer") in member_rows(response.follow())
    assert member_roles(admin) == {"alice": "admin", "bob": "viewer"}

    colleague.choose("acme")
    assert not can_write(colleague)

    form = role_form(acme_admin.get("/members"), "bob")
    form["role"] = "editor"
    assert form.submit(status=303).location.endswith("/members")
    assert member_roles(admin) == {"alice": "admin", "bob": "editor"}
    assert can_write(colleague)


def test_adding_a_member_again_sets_their_role(acme_admin, make_user, admin):
    make_user("bob", acme="viewer")
    add_member(acme_admin, "bob", "editor")
    assert member_roles(admin) == {"alice": "admin", "bob": "editor"}


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("nobody", "There is no such user, or their account is disabled."),
        ("dora", "There is no such user, or their account is disabled."),  # disabled
        ("", "Must not be empty."),
        ("   ", "Must not be empty."),
        ("x" * 151, "There is no such user, or their account is disabled."),
    ],
)
def test_an_unknown_or_disabled_user_is_a_message_and_nothing_is_written(
    acme_admin, make_user, admin, username, message
):
    make_user("dora", disabled=True)
    response = add_member(acme_admin, username, "editor", status=200)
    page = soup(response)
    assert page.select_one("#add-member-username-error").get_text() == message
    assert page.select_one("#add-member-username")["aria-invalid"] == "true"
    # The form keeps what was typed (trimmed), the list is unchanged.
    assert response.forms["add-member"]["username"].value == username.strip()
    assert response.forms["add-member"]["role"].value == "editor"
    assert member_rows(response) == [("alice", "Alice Admin", "admin")]
    assert member_roles(admin) == {"alice": "admin"}


def test_a_forged_role_is_refused(acme_admin, make_user, admin):
    make_user("bob")
    response = acme_admin.post("/members", {"username": "bob", "role": "owner"}, status=200)
    assert "Must be viewer, editor or admin." in text_of(response)
    acme_admin.post("/members/alice/role", {"role": "owner"}, status=400)
    acme_admin.post("/members/alice/role", {}, status=400)
    assert member_roles(admin) == {"alice": "admin"}


def test_remove_a_member_after_confirmation_they_lose_the_tenant(
    acme_admin, new_browser, make_user, admin
):
    make_user("bob", display_name="Bob Builder", acme="editor")
    colleague = new_browser()
    colleague.login("bob")
    assert can_write(colleague)

    page = acme_admin.get("/members")
    confirm = acme_admin.get(soup(page).select("a.danger")[1]["href"])
    assert soup(confirm).h1.get_text() == "Remove bob from Acme Inc?"
    assert "Bob Builder" in text_of(confirm)
    assert member_roles(admin) == {"alice": "admin", "bob": "editor"}  # asking changes nothing
    response = confirm.forms["remove-form"].submit(status=303)
    assert response.location.endswith("/members")
    assert member_rows(response.follow()) == [("alice", "Alice Admin", "admin")]
    assert member_roles(admin) == {"alice": "admin"}

    assert colleague.get("/projects", status=303).location.endswith("/tenants")
    assert "You are no longer a member of the tenant you had chosen." in text_of(
        colleague.get("/tenants")
    )


def test_removing_or_changing_a_non_member_is_404_and_adds_nobody(acme_admin, make_user, admin):
    make_user("bob", globex="editor")
    for path in ("/members/bob/remove", "/members/nobody/remove"):
        assert "No such member of this tenant." in text_of(acme_admin.get(path, status=404))
        acme_admin.post(path, status=404)
    # A role selector of a row whose member was removed meanwhile adds nobody back.
    acme_admin.post("/members/bob/role", {"role": "editor"}, status=404)
    assert member_roles(admin) == {"alice": "admin"}
    assert member_roles(admin, "globex") == {"bob": "editor"}


def test_a_username_with_any_characters_is_managed_by_its_url(acme_admin, make_user, admin):
    make_user("ann/ops ü", acme="viewer")
    page = acme_admin.get("/members")
    form = role_form(page, "ann/ops ü")
    assert form.action == "/members/ann%2Fops%20%C3%BC/role"
    form["role"] = "editor"
    form.submit(status=303)
    assert member_roles(admin)["ann/ops ü"] == "editor"
    href = [a["href"] for a in soup(page).select("a.danger") if "ann" in a["href"]][0]
    acme_admin.get(href).forms["remove-form"].submit(status=303)
    assert member_roles(admin) == {"alice": "admin"}


# --- Members: the last admin ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_the_last_admin_cannot_demote_themselves(acme_admin, make_user, admin, role):
    make_user("bob", acme="admin", disabled=True)  # a disabled admin does not count
    form = role_form(acme_admin.get("/members"), "alice")
    form["role"] = role
    response = form.submit(status=200)
    assert LAST_ADMIN in text_of(response)
    assert "Nothing was changed." in text_of(response)
    assert soup(response).select_one(".alert.error")["role"] == "alert"
    assert ("alice", "Alice Admin", "admin") in member_rows(response)
    assert member_roles(admin)["alice"] == "admin"


def test_the_last_admin_cannot_remove_themselves(acme_admin, admin):
    confirm = acme_admin.get("/members/alice/remove")
    assert "You will no longer be a member of Acme Inc" in text_of(confirm)
    response = confirm.forms["remove-form"].submit(status=200)
    assert LAST_ADMIN in text_of(response)
    assert member_rows(response) == [("alice", "Alice Admin", "admin")]
    assert member_roles(admin) == {"alice": "admin"}


def test_an_admin_who_steps_down_leaves_the_members_page(acme_admin, make_user, admin):
    make_user("bob", acme="editor")
    form = role_form(acme_admin.get("/members"), "bob")
    form["role"] = "admin"
    form.submit(status=303)
    # Another admin now: Alice may demote herself, and the page is no longer hers.
    form = role_form(acme_admin.get("/members"), "alice")
    form["role"] = "editor"
    assert form.submit(status=303).location.endswith("/projects")
    assert member_roles(admin) == {"alice": "editor", "bob": "admin"}
    acme_admin.get("/members", status=403)
    assert "/members" not in [a["href"] for a in soup(acme_admin.get("/projects")).find_all("a")]


def test_an_admin_who_removes_themselves_goes_to_the_chooser(acme_admin, make_user, admin):
    make_user("bob", acme="admin")
    response = acme_admin.get("/members/alice/remove").forms["remove-form"].submit(status=303)
    assert response.location.endswith("/tenants")
    assert member_roles(admin) == {"bob": "admin"}


# --- CSRF on every form -----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_every_members_and_account_form_needs_the_csrf_token(acme_admin, make_user, admin, token):
    make_user("bob", acme="editor")
    make_user("carol")
    other = Browser(acme_admin.app.app)
    other.login("alice")
    session_id = soup(acme_admin.get("/account")).select("tr.session-row form")
    session_id = [f["action"] for f in session_id]
    assert len(session_id) == 2
    requests = [
        ("/members", {"username": "carol", "role": "viewer"}),
        ("/members/bob/role", {"role": "viewer"}),
        ("/members/bob/remove", {}),
        (
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            },
        ),
        *((action, {}) for action in session_id),
    ]
    for path, fields in requests:
        if token is not None:
            fields = dict(fields, csrf_token=token)
        response = acme_admin.post(path, fields, csrf=False, status=403)
        assert "This form has expired or did not come from this site" in text_of(response)
    assert member_roles(admin) == {"alice": "admin", "bob": "editor"}
    assert session_count(admin, "alice") == 2
    assert failure_count(admin, "alice") == 0
    other.get("/projects")  # still logged in, with the old password
    assert Browser(acme_admin.app.app).login("alice").status_int == 303


# --- Account: the page --------------------------------------------------------------------


def test_the_account_page_lists_the_sessions_newest_first_this_device_marked(
    new_browser, make_user, clock
):
    make_user("nina")  # no tenant at all: the page needs none
    first = new_browser()
    first.login("nina")
    clock.advance(120)
    second = new_browser()
    second.login("nina")
    page = second.get("/account")
    assert soup(page).h1.get_text() == "Your account"
    rows = soup(page).select("tr.session-row")
    assert len(rows) == 2
    # Newest first: this device (logged in two minutes later) on top.
    assert "current" in rows[0]["class"] and "this device" in rows[0].get_text()
    assert "current" not in rows[1]["class"] and "this device" not in rows[1].get_text()
    created = [row.select("time")[0]["datetime"] for row in rows]
    assert created[0] > created[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", rows[0].select("time")[1].get_text())
    assert [b.get_text(strip=True) for b in soup(page).select("tr.session-row button")] == [
        "End and log out",
        "End",
    ]
    # Nothing of a token or its hash in the page.
    token = second.app.cookies["session"].split(".")[0]
    assert token not in page.text
    # The other device sees the same two, the other one marked.
    rows = soup(first.get("/account")).select("tr.session-row")
    assert ["current" in row["class"] for row in rows] == [False, True]


def test_every_input_of_the_new_pages_has_a_label(acme_admin, make_user):
    make_user("bob", acme="viewer")
    for path in ("/members", "/members/bob/remove", "/account"):
        page = soup(acme_admin.get(path))
        assert page.find("script") is None
        for field in page.find_all(["input", "select", "textarea"]):
            if field.get("type") == "hidden":
                continue
            label = page.find("label", attrs={"for": field["id"]})
            assert label is not None and label.get_text(strip=True), field


# --- Account: the password ------------------------------------------------------------------


def change_password(browser, current, new, again=None, status=303):
    form = browser.get("/account").forms["password-form"]
    form["current_password"] = current
    form["new_password"] = new
    form["new_password_again"] = new if again is None else again
    return form.submit(status=status)


def test_change_the_password_other_sessions_end_this_one_stays(new_browser, make_user, admin):
    make_user("alice", acme="admin")
    here, elsewhere = new_browser(), new_browser()
    here.login("alice")
    elsewhere.login("alice")
    response = change_password(here, PASSWORD, NEW_PASSWORD)
    assert response.location.endswith("/account?done=password")
    page = response.follow()
    assert "Your password was changed. Every other session has ended." in text_of(page)
    assert len(soup(page).select("tr.session-row")) == 1
    assert session_count(admin, "alice") == 1
    assert elsewhere.get("/projects", status=303).location.endswith("/login")
    here.get("/projects")
    assert "Wrong username or password." in text_of(new_browser().login("alice", status=200))
    new_browser().login("alice", NEW_PASSWORD)


@pytest.mark.parametrize(
    ("new", "again", "field", "message"),
    [
        (
            NEW_PASSWORD,
            NEW_PASSWORD + "x",
            "new-password-again",
            "Does not match the new password.",
        ),
        ("too short", "too short", "new-password", "Must be 12–1024 characters."),
        (PASSWORD, PASSWORD, "new-password", "Must differ from the current password."),
        ("", "", "new-password", "Must be 12–1024 characters."),
    ],
)
def test_a_refused_new_password_is_shown_at_its_field(
    new_browser, make_user, admin, new, again, field, message
):
    make_user("alice", acme="admin")
    here, elsewhere = new_browser(), new_browser()
    here.login("alice")
    elsewhere.login("alice")
    response = change_password(here, PASSWORD, new, again, status=200)
    page = soup(response)
    assert page.select_one(f"#{field}-error").get_text() == message
    assert page.select_one(f"#{field}")["aria-invalid"] == "true"
    # Passwords are never sent back.
    form = response.forms["password-form"]
    assert [form[name].value for name in PASSWORD_FIELDS] == ["", "", ""]
    assert session_count(admin, "alice") == 2
    elsewhere.get("/projects")
    new_browser().login("alice")  # the old password still works
    assert failure_count(admin, "alice") == 0


def test_a_wrong_current_password_counts_as_a_failed_login(new_browser, make_user, admin, clock):
    make_user("alice", acme="admin")
    here, elsewhere = new_browser(), new_browser()
    here.login("alice")
    elsewhere.login("alice")
    for attempt in range(1, 6):
        response = change_password(here, "not my password", NEW_PASSWORD, status=200)
        page = soup(response)
        assert page.select_one("#current-password-error").get_text() == (
            "This is not your current password."
        )
        assert failure_count(admin, "alice") == attempt
    # Throttled now, even with the right password; the login page says the same.
    response = change_password(here, PASSWORD, NEW_PASSWORD, status=200)
    assert "Too many wrong passwords for this account. Try again in 15 minutes." in text_of(
        response
    )
    assert "Too many failed logins" in text_of(new_browser().login("alice", status=200))
    assert session_count(admin, "alice") == 2
    elsewhere.get("/projects")
    clock.advance(901)
    assert change_password(here, PASSWORD, NEW_PASSWORD).status_int == 303
    assert failure_count(admin, "alice") == 0


# --- Account: ending sessions -------------------------------------------------------------


def end_buttons(page):
    return {
        button.get_text(strip=True): form["id"]
        for form in soup(page).select("tr.session-row form")
        for button in form.select("button")
    }


def test_end_another_session_that_device_has_to_log_in_again(new_browser, make_user, admin):
    make_user("alice", acme="admin")
    lost_laptop, here = new_browser(), new_browser()
    lost_laptop.login("alice")
    here.login("alice")
    page = here.get("/account")
    response = page.forms[end_buttons(page)["End"]].submit(status=303)
    assert response.location.endswith("/account?done=ended")
    page = response.follow()
    assert "The session was ended" in text_of(page)
    assert list(end_buttons(page)) == ["End and log out"]
    assert session_count(admin, "alice") == 1
    assert lost_laptop.get("/projects", status=303).location.endswith("/login")
    here.get("/projects")


def test_end_the_current_session_is_a_logout(new_browser, app, make_user, admin):
    make_user("alice", acme="admin")
    browser = new_browser()
    browser.login("alice")
    cookie = browser.app.cookies["session"]
    page = browser.get("/account")
    response = page.forms[end_buttons(page)["End and log out"]].submit(status=303)
    assert response.location.endswith("/login")
    assert "session" not in browser.app.cookies
    assert session_count(admin, "alice") == 0
    replay = webtest.TestApp(app)
    replay.set_cookie("session", cookie)
    assert replay.get("/projects", status=303).location.endswith("/login")


def test_ending_a_session_that_already_ended_says_so(new_browser, make_user, admin):
    make_user("alice", acme="admin")
    make_user("bob", acme="editor")
    other, here, bobs = new_browser(), new_browser(), new_browser()
    other.login("alice")
    here.login("alice")
    bobs.login("bob")
    page = here.get("/account")
    end_other = page.forms[end_buttons(page)["End"]]
    end_other.submit(status=303)
    response = end_other.submit(status=200)  # the same form again (a second tab)
    assert "That session had already ended." in text_of(response)
    # An id that is no session of hers (Bob's, or made up) ends nothing.
    bobs_id = soup(bobs.get("/account")).select_one("tr.session-row form")["action"]
    for action in (bobs_id, "/account/sessions/made-up/end"):
        response = here.post(action, status=200)
        assert "That session had already ended." in text_of(response)
    assert session_count(admin, "bob") == 1
    bobs.get("/projects")
