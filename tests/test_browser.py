"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright,
against ``pserve`` started from a copy of development.ini pointed at the test
databases (SQLite run only: the pages are the same on both backends, and
tests/test_pages.py covers them on PostgreSQL too).

No browser is downloaded: Playwright launches /usr/bin/chromium (``make test``
installs it with apt-get when missing). Every page is watched for console
errors, uncaught exceptions and failed requests; there must be none.
Screenshots of the main pages go to test-artifacts/browser/.
"""

import os
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import PASSWORD
from live_server import ROOT, running_pserve, server_config

pytestmark = pytest.mark.sqlite_only

CHROMIUM = "/usr/bin/chromium"
# This machine reaches no network beyond the package registries: nothing
# that phones home, updates or syncs.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = os.path.join(ROOT, "test-artifacts", "browser")
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}
STALE = "Someone else changed it first"


@pytest.fixture(scope="module")
def server(db_urls, admin, tmp_path_factory):
    """``pserve`` with development.ini's settings on the test databases."""
    folder = str(tmp_path_factory.mktemp("pserve"))
    ini, env = server_config("sqlite", db_urls, folder)
    with running_pserve(ini, env, folder) as (base, _log):
        yield base


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Problems:
    """What the pages reported: console errors, uncaught exceptions, failed requests."""

    def __init__(self):
        self.errors = []

    def watch(self, page):
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: uncaught {error}"))
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, request):
        # ERR_ABORTED: the browser dropped the request itself, as it does with
        # the icon of a page that is left (or closed) while it still loads.
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"{request.url}: failed ({request.failure})")

    def _console(self, page, message):
        if message.type == "error":
            self.errors.append(f"{page.url}: console error: {message.text}")


@pytest.fixture
def problems():
    return Problems()


@pytest.fixture
def new_person(chromium, server, problems):
    """``new_person(viewport)``: a page in a browser context of its own (its own
    cookies), every page of it watched for problems."""
    contexts = []

    def new(viewport=DESKTOP):
        context = chromium.new_context(base_url=server, viewport=viewport)
        context.set_default_timeout(10_000)
        context.on("page", problems.watch)
        contexts.append(context)
        return context.new_page()

    yield new
    for context in contexts:
        context.close()


def screenshot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def log_in(page, username, password=PASSWORD):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def create_project(page, name, description=""):
    page.locator("#new-project-name").fill(name)
    page.locator("#new-project-description").fill(description)
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def add_task(page, title, status="open", assignee="", due_date=""):
    page.locator("#new-task-title").fill(title)
    page.locator("#new-task-status").select_option(status)
    page.locator("#new-task-assignee").fill(assignee)
    if due_date:
        page.locator("#new-task-due").fill(due_date)
    page.get_by_role("button", name="Add task").click()
    expect(page.locator("td.task-title", has_text=title)).to_be_visible()


def task_row(page, title):
    return page.locator("tbody tr", has=page.locator("td.task-title", has_text=title))


def project_row(page, name):
    return page.locator("tbody tr", has=page.get_by_role("link", name=name, exact=True))


def test_two_people_in_two_tenants(new_person, make_user, problems):
    make_user("alice", display_name="Alice Admin", acme="admin", globex="editor")
    make_user("bob", display_name="Bob Builder", globex="admin")
    make_user("carol", display_name="Carol Viewer", acme="viewer")

    # Alice: two tenants, so she chooses after logging in.
    alice = new_person()
    alice.goto("/")
    expect(alice).to_have_url(re.compile(r"/login$"))
    screenshot(alice, "login")
    log_in(alice, "alice", "not her password")
    expect(alice.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(alice.get_by_label("Username")).to_have_value("alice")
    screenshot(alice, "login-error")
    alice.get_by_label("Password").fill(PASSWORD)
    alice.get_by_role("button", name="Log in").click()
    expect(alice).to_have_url(re.compile(r"/tenants$"))
    screenshot(alice, "tenants")
    alice.get_by_role("button", name="Choose Acme Inc").click()
    expect(alice).to_have_url(re.compile(r"/projects$"))
    expect(alice.locator(".tenant-name")).to_have_text("Acme Inc")

    # A project with tasks: add, edit, change status, filter.
    create_project(alice, "Website relaunch", "New site before the spring campaign.")
    add_task(alice, "Write the copy", "in_progress", "alice", "2026-12-15")
    add_task(alice, "Pick a typeface")
    add_task(alice, "Set up analytics", assignee="alice")
    add_task(alice, "Scratch this")
    task_row(alice, "Pick a typeface").get_by_role("link", name="Edit").click()
    alice.get_by_label("Title").fill("Pick two typefaces")
    alice.get_by_label("Assignee").fill("carol")
    alice.get_by_role("button", name="Save").click()
    expect(task_row(alice, "Pick two typefaces")).to_contain_text("carol")
    row = task_row(alice, "Set up analytics")
    row.get_by_label("Status of “Set up analytics”").select_option("done")
    row.get_by_role("button", name="Set").click()
    expect(task_row(alice, "Set up analytics").locator("select")).to_have_value("done")
    task_row(alice, "Scratch this").get_by_role("link", name="Delete").click()
    expect(alice.get_by_role("heading", level=1)).to_have_text("Delete this task?")
    alice.get_by_role("button", name="Delete task").click()
    expect(alice.locator("td.task-title")).to_have_text(
        ["Write the copy", "Pick two typefaces", "Set up analytics"]
    )
    screenshot(alice, "project")

    alice.locator("#filter-status").select_option("done")
    alice.get_by_role("button", name="Filter").click()
    expect(alice.locator("td.task-title")).to_have_text(["Set up analytics"])
    alice.get_by_role("link", name="Clear").click()
    alice.locator("#filter-q").fill("TYPE")
    alice.get_by_role("button", name="Filter").click()
    expect(alice.locator("td.task-title")).to_have_text(["Pick two typefaces"])
    alice.get_by_role("link", name="Clear").click()
    alice.locator("#filter-assignee").fill("alice")
    alice.get_by_role("button", name="Filter").click()
    expect(alice.locator("td.task-title")).to_have_text(["Write the copy", "Set up analytics"])

    # A stale edit: the same task open in two tabs, saved in one, then the other.
    task_row(alice, "Write the copy").get_by_role("link", name="Edit").click()
    second_tab = alice.context.new_page()
    second_tab.goto(alice.url)
    second_tab.get_by_label("Status").select_option("done")
    second_tab.get_by_role("button", name="Save").click()
    expect(second_tab.get_by_role("heading", level=1)).to_have_text("Website relaunch")
    alice.get_by_label("Title").fill("Write all the copy")
    alice.get_by_role("button", name="Save").click()
    expect(alice.get_by_role("alert")).to_contain_text(STALE)
    expect(alice.get_by_label("Title")).to_have_value("Write the copy")
    expect(alice.get_by_label("Status")).to_have_value("done")
    screenshot(alice, "stale-edit")
    second_tab.close()

    alice.get_by_role("link", name="Projects").click()
    create_project(alice, "Hiring", "Two engineers by March.")
    alice.get_by_role("link", name="Projects").click()
    expect(project_row(alice, "Website relaunch").locator(".task-count")).to_have_text("3")
    expect(project_row(alice, "Hiring").locator(".task-count")).to_have_text("0")
    screenshot(alice, "projects")

    # Carol, a viewer of acme (her only tenant): she reads, without a control to write.
    carol = new_person()
    log_in(carol, "carol")
    expect(carol).to_have_url(re.compile(r"/projects$"))
    expect(carol.locator(".tenant-name")).to_have_text("Acme Inc")
    expect(carol.locator(".badge", has_text="viewer")).to_be_visible()
    expect(carol.get_by_role("link", name="Website relaunch")).to_be_visible()
    expect(carol.get_by_role("heading", name="New project")).to_have_count(0)
    carol.get_by_role("link", name="Website relaunch").click()
    expect(carol.locator("td.task-title")).to_have_count(3)
    expect(carol.locator("form[method=post]")).to_have_count(1)  # logging out only
    expect(carol.get_by_role("link", name=re.compile("^(Edit|Delete|Rename)"))).to_have_count(0)
    expect(carol.locator("select:not(#filter-status)")).to_have_count(0)
    screenshot(carol, "viewer-project")

    # Bob, in globex only: none of acme's data; rename and delete (confirmed).
    bob = new_person()
    log_in(bob, "bob")
    expect(bob.locator(".tenant-name")).to_have_text("Globex Inc")
    expect(bob.get_by_text("No projects yet.")).to_be_visible()
    create_project(bob, "Quarterly report", "Numbers for Q4.")
    add_task(bob, "Collect figures", assignee="bob")
    bob.get_by_role("link", name="Projects").click()
    create_project(bob, "Scratch")
    bob.get_by_role("link", name="Projects").click()
    project_row(bob, "Quarterly report").get_by_role("link", name="Rename").click()
    bob.get_by_label("Name").fill("Q4 report")
    bob.get_by_role("button", name="Save").click()
    project_row(bob, "Scratch").get_by_role("link", name="Delete").click()
    expect(bob.get_by_role("heading", level=1)).to_have_text("Delete “Scratch”?")
    bob.get_by_role("button", name="Delete project").click()
    expect(bob.locator(".project-link")).to_have_text(["Q4 report"])

    # Alice switches to globex: only globex's data.
    alice.get_by_role("link", name="Switch tenant").click()
    alice.get_by_role("button", name="Choose Globex Inc").click()
    expect(alice.locator(".tenant-name")).to_have_text("Globex Inc")
    expect(alice.locator(".project-link")).to_have_text(["Q4 report"])
    alice.get_by_role("link", name="Q4 report", exact=True).click()
    expect(alice.locator("td.task-title")).to_have_text(["Collect figures"])

    # Alice logs out: the pages send her to the login page, the API refuses her.
    alice.get_by_role("button", name="Log out").click()
    expect(alice).to_have_url(re.compile(r"/login$"))
    alice.goto("/projects")
    expect(alice).to_have_url(re.compile(r"/login$"))
    alice.go_back()
    expect(alice).to_have_url(re.compile(r"/login$"))
    assert alice.context.request.get("/api/me").status == 401

    assert problems.errors == []


def test_login_errors_are_shown_in_place(new_person, make_user, problems):
    make_user("dave", globex="editor")
    page = new_person()
    for _ in range(5):
        log_in(page, "dave", "wrong")
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    log_in(page, "dave")
    expect(page.get_by_role("alert")).to_have_text(
        "Too many failed logins for this username. Try again in 15 minutes."
    )
    expect(page).to_have_url(re.compile(r"/login$"))
    screenshot(page, "login-throttled")
    assert problems.errors == []


def test_readable_on_a_phone(new_person, make_user, problems):
    make_user("bob", display_name="Bob Builder", globex="admin")
    page = new_person(PHONE)

    def fits():
        return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.goto("/login")
    assert fits()
    log_in(page, "bob")
    create_project(page, "Quarterly report with a rather long name", "Numbers for Q4.")
    add_task(page, "Collect figures from every department", "in_progress", "bob", "2027-01-05")
    add_task(page, "Draft the summary")
    assert fits()
    # The form sits under the list on a narrow screen, at full width.
    width = page.locator("#new-task-title").bounding_box()["width"]
    assert width > PHONE["width"] * 0.7
    screenshot(page, "phone-project")
    page.get_by_role("link", name="Projects").click()
    assert fits()
    screenshot(page, "phone-projects")
    assert problems.errors == []


def member_row(page, username):
    return page.locator("tr.member", has=page.locator("td.member-username", has_text=username))


def test_an_admin_manages_a_colleague_who_sees_each_change_on_the_next_page(
    new_person, make_user, problems
):
    make_user("alice", display_name="Alice Admin", acme="admin")
    make_user("bob", display_name="Bob Builder", globex="editor")

    alice = new_person()
    log_in(alice, "alice")
    expect(alice.locator(".tenant-name")).to_have_text("Acme Inc")
    # The admin badge leads to the members page.
    alice.locator(".topbar a.badge", has_text="admin").click()
    expect(alice).to_have_url(re.compile(r"/members$"))
    expect(alice.get_by_role("heading", level=1)).to_have_text("Members of Acme Inc")

    # An unknown username is a message at the field; nothing is added.
    alice.get_by_label("Username").fill("bobby")
    alice.get_by_role("button", name="Add member").click()
    expect(alice.locator("#add-member-username-error")).to_have_text(
        "There is no such user, or their account is disabled."
    )
    expect(alice.locator("tr.member")).to_have_count(1)

    # Bob, in globex only so far.
    bob = new_person()
    log_in(bob, "bob")
    expect(bob.locator(".tenant-name")).to_have_text("Globex Inc")

    # Added as a viewer: acme appears in his chooser; he reads without controls.
    alice.get_by_label("Username").fill("bob")
    alice.get_by_label("Role", exact=True).select_option("viewer")
    alice.get_by_role("button", name="Add member").click()
    expect(alice).to_have_url(re.compile(r"/members$"))
    expect(member_row(alice, "bob")).to_contain_text("Bob Builder")
    expect(member_row(alice, "bob").locator("select")).to_have_value("viewer")
    bob.get_by_role("link", name="Switch tenant").click()
    bob.get_by_role("button", name="Choose Acme Inc").click()
    expect(bob.locator(".tenant-name")).to_have_text("Acme Inc")
    expect(bob.locator(".badge", has_text="viewer")).to_be_visible()
    expect(bob.get_by_role("heading", name="New project")).to_have_count(0)
    expect(bob.get_by_role("link", name="Members")).to_have_count(0)

    # Promoted to editor: his next page has the write controls.
    member_row(alice, "bob").get_by_label("Role of bob", exact=True).select_option("editor")
    member_row(alice, "bob").get_by_role("button", name="Set the role of bob").click()
    expect(member_row(alice, "bob").locator("select")).to_have_value("editor")
    bob.reload()
    expect(bob.locator(".badge", has_text="editor")).to_be_visible()
    expect(bob.get_by_role("heading", name="New project")).to_be_visible()
    create_project(bob, "Bob's first project")

    # Alice, the last admin, cannot step down: a message, nothing changed.
    member_row(alice, "alice").get_by_label("Role of alice", exact=True).select_option("viewer")
    member_row(alice, "alice").get_by_role("button", name="Set the role of alice").click()
    expect(alice.get_by_role("alert")).to_contain_text("Acme Inc needs at least one admin")
    expect(member_row(alice, "alice").locator("select")).to_have_value("admin")
    screenshot(alice, "members-last-admin")
    alice.goto("/members")
    screenshot(alice, "members")

    # Removed, after a confirmation: his next page says he lost the tenant.
    member_row(alice, "bob").get_by_role("link", name="Remove bob").click()
    expect(alice.get_by_role("heading", level=1)).to_have_text("Remove bob from Acme Inc?")
    screenshot(alice, "member-remove")
    alice.get_by_role("button", name="Remove member").click()
    expect(alice).to_have_url(re.compile(r"/members$"))
    expect(alice.locator("td.member-username")).to_have_text(["alice you"])
    bob.reload()
    expect(bob).to_have_url(re.compile(r"/tenants$"))
    expect(bob.get_by_role("alert")).to_have_text(
        "You are no longer a member of the tenant you had chosen. Choose another one."
    )
    expect(bob.get_by_role("button", name="Choose Acme Inc")).to_have_count(0)

    assert problems.errors == []


def test_a_user_changes_their_password_and_ends_another_session(new_person, make_user, problems):
    new_password = "a much longer passphrase"
    make_user("carol", display_name="Carol Viewer", acme="viewer")
    laptop, phone = new_person(), new_person(PHONE)
    log_in(laptop, "carol")
    log_in(phone, "carol")
    expect(phone).to_have_url(re.compile(r"/projects$"))

    laptop.get_by_role("link", name="Account").click()
    expect(laptop.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(laptop.locator("tr.session-row")).to_have_count(2)
    expect(laptop.locator("tr.session-row.current")).to_contain_text("this device")

    # The two new ones must match: said at the field, nothing changes.
    laptop.get_by_label("Current password").fill(PASSWORD)
    laptop.locator("#new-password").fill(new_password)
    laptop.get_by_label("New password again").fill(new_password + "!")
    laptop.get_by_role("button", name="Change password").click()
    expect(laptop.locator("#new-password-again-error")).to_have_text(
        "Does not match the new password."
    )
    # A wrong current password, at its field.
    laptop.get_by_label("Current password").fill("not my password")
    laptop.locator("#new-password").fill(new_password)
    laptop.get_by_label("New password again").fill(new_password)
    laptop.get_by_role("button", name="Change password").click()
    expect(laptop.locator("#current-password-error")).to_have_text(
        "This is not your current password."
    )
    phone.reload()
    expect(phone).to_have_url(re.compile(r"/projects$"))

    # Changed: the phone's session ends, the laptop's stays.
    laptop.get_by_label("Current password").fill(PASSWORD)
    laptop.locator("#new-password").fill(new_password)
    laptop.get_by_label("New password again").fill(new_password)
    laptop.get_by_role("button", name="Change password").click()
    expect(laptop.get_by_role("status")).to_have_text(
        "Your password was changed. Every other session has ended."
    )
    expect(laptop.locator("tr.session-row")).to_have_count(1)
    phone.reload()
    expect(phone).to_have_url(re.compile(r"/login$"))

    # The phone logs in again with the new password; the laptop ends that session.
    log_in(phone, "carol", new_password)
    expect(phone).to_have_url(re.compile(r"/projects$"))
    laptop.get_by_role("link", name="Account").click()
    expect(laptop.locator("tr.session-row")).to_have_count(2)
    screenshot(laptop, "account")
    laptop.locator("tr.session-row:not(.current)").get_by_role("button", name="End").click()
    expect(laptop.get_by_role("status")).to_contain_text("The session was ended")
    expect(laptop.locator("tr.session-row")).to_have_count(1)
    phone.get_by_role("link", name="Account").click()
    expect(phone).to_have_url(re.compile(r"/login$"))

    # Ending this device's own session is a logout.
    laptop.get_by_role("button", name="End and log out").click()
    expect(laptop).to_have_url(re.compile(r"/login$"))
    laptop.goto("/account")
    expect(laptop).to_have_url(re.compile(r"/login$"))

    assert problems.errors == []
