"""The server-rendered pages through the whole app (WebTest), on the real databases.

A ``Browser`` keeps its cookies and submits the forms the pages render, as a
person would; forged requests are sent by hand. Every write is checked in the
tenant's database, read by another connection.
"""

import re
from datetime import date

import pytest
import webtest
from bs4 import BeautifulSoup

from conftest import PASSWORD, tenant_rows
from tenantapp.auth import throttle
from tenantapp.models.tenant import Project, Task

STALE = "Someone else changed it first"


class Browser:
    """A WebTest client used like a browser: cookies kept, forms submitted."""

    def __init__(self, app):
        self.app = webtest.TestApp(app)

    def get(self, url, status=200, **kw):
        return self.app.get(url, status=status, **kw)

    def login(self, username, password=PASSWORD, status=303):
        form = self.get("/login").forms["login-form"]
        form["username"] = username
        form["password"] = password
        return form.submit(status=status)

    def choose(self, tenant):
        return self.get("/tenants").forms[f"choose-{tenant}"].submit(status=303)

    @property
    def csrf(self):
        """The CSRF token the pages put in every form of this session."""
        return self.get("/tenants").forms["logout-form"]["csrf_token"].value

    def post(self, url, fields=None, status=303, csrf=True):
        """A POST made by hand (a forged form, or one no page shows)."""
        fields = dict(fields or {})
        if csrf:
            fields.setdefault("csrf_token", self.csrf)
        return self.app.post(url, fields, status=status)


@pytest.fixture
def new_browser(app):
    return lambda: Browser(app)


@pytest.fixture
def browser(new_browser):
    return new_browser()


@pytest.fixture
def editor_browser(browser, make_user):
    """Erin, editor of acme (her only tenant: chosen at login)."""
    make_user("erin", display_name="Erin Editor", acme="editor")
    browser.login("erin")
    return browser


def projects_in(admin, tenant="acme"):
    return {p.name: p for p in tenant_rows(admin, tenant, Project)}


def tasks_in(admin, tenant="acme"):
    return {t.title: t for t in tenant_rows(admin, tenant, Task)}


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def text_of(response):
    return " ".join(soup(response).get_text(" ").split())


def create_project(browser, name="Launch", description=""):
    form = browser.get("/projects").forms["new-project"]
    form["name"] = name
    form["description"] = description
    response = form.submit(status=303)
    return int(re.search(r"/projects/(\d+)$", response.location).group(1))


def add_task(browser, project_id, title, status="open", assignee="", due_date=""):
    form = browser.get(f"/projects/{project_id}").forms["new-task"]
    form["title"] = title
    form["status"] = status
    form["assignee"] = assignee
    form["due_date"] = due_date
    return form.submit(status=303)


def task_titles(response):
    return [cell.get_text(strip=True) for cell in soup(response).select("td.task-title")]


# --- where a visitor is sent -------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/projects", "/projects/1", "/projects/1/edit", "/tenants", "/tasks/1/edit"]
)
def test_a_visitor_without_login_is_sent_to_the_login_page(browser, path):
    response = browser.get(path, status=303)
    assert response.location.endswith("/login")


def test_a_method_the_pages_do_not_take_is_405_with_allow(browser):
    # The router's answer, as for /api: the route exists, the method does not
    # (as the HTML error page, outside /api).
    response = browser.app.delete("/", status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.content_type == "text/html"
    assert browser.app.put("/projects", status=405).headers["Allow"] == "GET, HEAD, POST"


def test_a_post_without_login_writes_nothing(browser, admin):
    response = browser.post("/projects", {"name": "Sneaky"}, csrf=False)
    assert response.location.endswith("/login")
    assert projects_in(admin) == {}


def test_root_follows_the_login_and_the_chosen_tenant(browser, make_user):
    make_user("alice", acme="admin", globex="editor")
    browser.login("alice")
    assert browser.get("/", status=303).location.endswith("/tenants")
    browser.choose("acme")
    assert browser.get("/", status=303).location.endswith("/projects")
    # A logged-in visitor of the login page goes home.
    assert browser.get("/login", status=303).location.endswith("/")


# --- login ---------------------------------------------------------------------------


def test_login_page_has_a_labelled_form_with_a_token(browser):
    response = browser.get("/login")
    form = response.forms["login-form"]
    assert form.method.upper() == "POST"
    assert form["csrf_token"].value
    page = soup(response)
    for name in ("username", "password"):
        field = page.find("input", attrs={"name": name})
        assert page.find("label", attrs={"for": field["id"]}) is not None
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("login_form=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/login" in cookie


def test_single_tenant_user_lands_on_the_projects_of_that_tenant(browser, make_user):
    make_user("bob", globex="admin")
    response = browser.login("bob")
    assert response.location.endswith("/projects")
    cookie = response.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith("session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    page = response.follow()
    assert soup(page).select_one(".tenant-name").get_text() == "Globex Inc"
    assert "admin" in soup(page).select_one(".tenant").get_text()


def test_user_of_two_tenants_chooses_and_switches(browser, make_user):
    make_user("alice", acme="admin", globex="editor")
    response = browser.login("alice")
    assert response.location.endswith("/tenants")
    chooser = response.follow()
    assert set(chooser.forms) >= {"choose-acme", "choose-globex", "logout-form"}
    assert soup(chooser).select_one(".tenant-name") is None  # none chosen yet

    projects = browser.choose("acme").follow()
    assert soup(projects).select_one(".tenant-name").get_text() == "Acme Inc"
    # The name stays visible on every page, with the way to switch and to log out.
    assert soup(projects).find("a", string="Switch tenant")["href"] == "/tenants"
    assert "logout-form" in projects.forms

    projects = browser.choose("globex").follow()
    assert soup(projects).select_one(".tenant-name").get_text() == "Globex Inc"


def test_wrong_credentials_are_shown_in_place(browser, make_user, admin):
    make_user("alice", acme="admin")
    for username, password in (("alice", "wrong password"), ("nobody", "whatever")):
        response = browser.login(username, password, status=200)
        assert "Wrong username or password." in text_of(response)
        form = response.forms["login-form"]
        assert form["username"].value == username  # kept
        assert form["password"].value == ""  # never sent back
        assert not any(c.startswith("session=") for c in response.headers.getall("Set-Cookie"))
    with admin.catalog.transaction(write=False) as db:
        # The same throttle as the JSON login counts them.
        assert throttle.failure_count(db, "alice") == 1
        assert throttle.failure_count(db, "nobody") == 1


def test_throttled_login_is_shown_in_place_even_with_the_right_password(
    browser, client, make_user, clock
):
    make_user("alice", acme="admin")
    for _ in range(5):
        browser.login("alice", "wrong", status=200)
    response = browser.login("alice", PASSWORD, status=200)
    assert "Too many failed logins for this username. Try again in 15 minutes." in text_of(response)
    assert "session" not in browser.app.cookies
    # One throttle for the pages and the JSON API.
    assert client.login("alice", status=429).headers["Retry-After"] == "900"
    clock.advance(901)
    assert browser.login("alice").location.endswith("/projects")


def test_empty_fields_are_refused_at_the_field(browser):
    response = browser.login("", "", status=200)
    page = soup(response)
    assert page.select_one("#username-error").get_text() == "Must not be empty."
    assert page.select_one("#username")["aria-invalid"] == "true"


def test_login_without_the_login_forms_token_is_refused(app, make_user):
    make_user("alice", acme="admin")
    # No login-form cookie (a form posted from another site).
    forged = webtest.TestApp(app)
    response = forged.post("/login", {"username": "alice", "password": PASSWORD}, status=403)
    assert "The login form had expired" in text_of(response)
    assert "session" not in forged.cookies
    # The cookie, but a token that does not belong to it.
    browser = Browser(app)
    form = browser.get("/login").forms["login-form"]
    form["username"], form["password"] = "alice", PASSWORD
    form["csrf_token"].force_value("not-the-token")
    form.submit(status=403)
    assert "session" not in browser.app.cookies


# --- logout --------------------------------------------------------------------------


def test_logout_ends_the_session_on_the_server(browser, make_user, app):
    make_user("alice", acme="admin")
    browser.login("alice")
    cookie = browser.app.cookies["session"]
    page = browser.get("/projects")
    response = page.forms["logout-form"].submit(status=303)
    assert response.location.endswith("/login")
    assert "session" not in browser.app.cookies
    # The old cookie, replayed, is refused by the pages and by the API.
    replay = webtest.TestApp(app)
    replay.set_cookie("session", cookie)
    assert replay.get("/projects", status=303).location.endswith("/login")
    assert replay.get("/api/me", status=401).json["error"]["code"] == "unauthenticated"


def test_logout_needs_the_csrf_token(browser, make_user):
    make_user("alice", acme="admin")
    browser.login("alice")
    browser.post("/logout", {"csrf_token": "wrong"}, status=403)
    browser.post("/logout", csrf=False, status=403)
    browser.get("/projects")  # still logged in


# --- tenant choice -----------------------------------------------------------------


def test_chooser_refuses_a_foreign_tenant_like_a_missing_one(browser, make_user):
    make_user("alice", acme="admin")
    browser.login("alice")
    for tenant in ("globex", "nosuchtenant", "Not A Name!"):
        response = browser.post("/tenants", {"tenant": tenant}, status=403)
        assert "You are not a member of this tenant." in text_of(response)
    assert soup(browser.get("/projects")).select_one(".tenant-name").get_text() == "Acme Inc"


def test_suspended_tenant_sends_its_members_to_the_chooser(browser, make_user, admin):
    make_user("alice", acme="admin", globex="editor")
    browser.login("alice")
    browser.choose("acme")
    admin.tenant_set_status("acme", "suspended")
    assert browser.get("/projects", status=303).location.endswith("/tenants")
    chooser = browser.get("/tenants")
    assert "Acme Inc is suspended. Choose another tenant." in text_of(chooser)
    assert soup(chooser).select_one("#choose-acme button").has_attr("disabled")
    response = browser.post("/tenants", {"tenant": "acme"}, status=403)
    assert "This tenant is suspended." in text_of(response)
    browser.choose("globex")
    browser.get("/projects")


def test_revoked_membership_sends_the_user_to_the_chooser(browser, make_user, admin):
    make_user("alice", acme="admin", globex="editor")
    browser.login("alice")
    browser.choose("acme")
    admin.user_revoke("alice", "acme", force=True)  # she was the last admin
    assert browser.get("/projects/1", status=303).location.endswith("/tenants")
    chooser = browser.get("/tenants")
    assert "You are no longer a member of the tenant you had chosen." in text_of(chooser)
    choices = {key for key in chooser.forms if isinstance(key, str) and key.startswith("choose-")}
    assert choices == {"choose-globex"}


# --- CSRF and roles on every write ---------------------------------------------------


def write_requests(project_id, task_id):
    """Every write the pages offer: (path, fields) with valid values."""
    return [
        ("/projects", {"name": "Forged"}),
        (f"/projects/{project_id}/edit", {"name": "Forged", "description": "", "version": "1"}),
        (f"/projects/{project_id}/delete", {"version": "1"}),
        (f"/projects/{project_id}/tasks", {"title": "Forged", "status": "open"}),
        (
            f"/tasks/{task_id}/edit",
            {"title": "Forged", "status": "done", "assignee": "", "due_date": "", "version": "1"},
        ),
        (f"/tasks/{task_id}/status", {"status": "done", "version": "1"}),
        (f"/tasks/{task_id}/delete", {"version": "1"}),
    ]


def snapshot(admin):
    return (
        [(p.id, p.name, p.version) for p in tenant_rows(admin, "acme", Project)],
        [(t.id, t.title, t.status, t.version) for t in tenant_rows(admin, "acme", Task)],
    )


@pytest.fixture
def acme_data(new_browser, make_user):
    """One project with one task in acme, made by an editor through the pages."""
    make_user("olga", acme="admin")
    owner = new_browser()
    owner.login("olga")
    project_id = create_project(owner, "Existing")
    add_task(owner, project_id, "Existing task")
    task_id = int(
        re.search(r"/tasks/(\d+)/edit", owner.get(f"/projects/{project_id}").text).group(1)
    )
    return project_id, task_id


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_every_write_without_the_right_csrf_token_is_refused(
    editor_browser, acme_data, admin, token
):
    before = snapshot(admin)
    for path, fields in write_requests(*acme_data):
        if token is not None:
            fields = dict(fields, csrf_token=token)
        response = editor_browser.post(path, fields, csrf=False, status=403)
        assert "This form has expired or did not come from this site" in text_of(response)
    assert snapshot(admin) == before


def test_a_viewer_sees_no_write_controls(new_browser, make_user, acme_data):
    project_id, _ = acme_data
    make_user("carol", acme="viewer")
    viewer = new_browser()
    viewer.login("carol")
    for path in ("/projects", f"/projects/{project_id}"):
        page = viewer.get(path)
        post_forms = {
            name
            for name, form in page.forms.items()
            if isinstance(name, str) and form.method.upper() == "POST"
        }
        assert post_forms == {"logout-form"}, path
        assert len(page.forms) == (2 if "filters" in page.forms else 1) * 2  # by id and index
        links = [a["href"] for a in soup(page).find_all("a")]
        assert not any(re.search(r"/(edit|delete)$", href) for href in links), path
        assert "your role does not allow changes" in text_of(page).lower(), path
    # The project page still filters (a GET form).
    assert viewer.get(f"/projects/{project_id}").forms["filters"].method.upper() == "GET"


def test_the_server_refuses_a_viewers_forged_writes(new_browser, make_user, acme_data, admin):
    project_id, task_id = acme_data
    make_user("carol", acme="viewer")
    viewer = new_browser()
    viewer.login("carol")
    before = snapshot(admin)
    for path, fields in write_requests(project_id, task_id):
        response = viewer.post(path, fields, status=403)
        assert "Your role in this tenant does not allow changes." in text_of(response)
    for path in (
        f"/projects/{project_id}/edit",
        f"/projects/{project_id}/delete",
        f"/tasks/{task_id}/edit",
        f"/tasks/{task_id}/delete",
    ):
        viewer.get(path, status=403)
    assert snapshot(admin) == before


# --- projects --------------------------------------------------------------------------


def test_create_a_project_and_see_it_with_its_task_count(editor_browser, admin):
    project_id = create_project(editor_browser, "Launch", "Go live")
    assert projects_in(admin)["Launch"].description == "Go live"
    add_task(editor_browser, project_id, "One")
    add_task(editor_browser, project_id, "Two")
    create_project(editor_browser, "Empty")
    rows = soup(editor_browser.get("/projects")).select("table.projects tbody tr")
    listed = {
        row.select_one(".project-link").get_text(): row.select_one(".task-count").get_text()
        for row in rows
    }
    assert listed == {"Launch": "2", "Empty": "0"}


def test_invalid_project_names_are_refused_at_the_field(editor_browser, admin):
    create_project(editor_browser, "Launch")
    for name, message in (
        ("   ", "Must not be empty."),
        ("LAUNCH", "A project with this name already exists."),
        ("x" * 201, "String should have at most 200 characters."),
    ):
        form = editor_browser.get("/projects").forms["new-project"]
        form["name"] = name
        response = form.submit(status=200)
        page = soup(response)
        assert page.select_one("#project-name-error").get_text() == message
        assert response.forms["project-form"]["name"].value == name  # kept for correcting
    assert set(projects_in(admin)) == {"Launch"}


def test_rename_a_project(editor_browser, admin):
    project_id = create_project(editor_browser, "Launch")
    page = editor_browser.get("/projects")
    edit = editor_browser.get(soup(page).find("a", string="Rename")["href"])
    form = edit.forms["project-form"]
    assert form["version"].value == "1"
    form["name"] = "Relaunch"
    form["description"] = "Second try"
    assert form.submit(status=303).location.endswith("/projects")
    project = projects_in(admin)["Relaunch"]
    assert (project.id, project.description, project.version) == (project_id, "Second try", 2)


def test_delete_a_project_after_confirmation(editor_browser, admin):
    project_id = create_project(editor_browser, "Doomed")
    add_task(editor_browser, project_id, "Goes too")
    confirm = editor_browser.get(f"/projects/{project_id}/delete")
    assert "1 task" in text_of(confirm)
    assert projects_in(admin)  # the confirmation page deleted nothing
    assert confirm.forms["delete-form"].submit(status=303).location.endswith("/projects")
    assert projects_in(admin) == {} and tasks_in(admin) == {}


def test_stale_project_rename_says_so_and_overwrites_nothing(new_browser, make_user, admin):
    make_user("erin", acme="editor")
    make_user("fred", acme="editor")
    erin, fred = new_browser(), new_browser()
    erin.login("erin")
    fred.login("fred")
    project_id = create_project(erin, "Launch")
    erins_form = erin.get(f"/projects/{project_id}/edit").forms["project-form"]
    freds_form = fred.get(f"/projects/{project_id}/edit").forms["project-form"]
    freds_form["name"] = "Fred's name"
    freds_form.submit(status=303)
    erins_form["name"] = "Erin's name"
    response = erins_form.submit(status=200)
    assert STALE in text_of(response)
    form = response.forms["project-form"]
    assert (form["name"].value, form["version"].value) == ("Fred's name", "2")
    assert set(projects_in(admin)) == {"Fred's name"}
    # Saved again from the current version, it goes through.
    form["name"] = "Erin's name"
    form.submit(status=303)
    assert set(projects_in(admin)) == {"Erin's name"}


def test_stale_project_delete_asks_again(new_browser, make_user, admin):
    make_user("erin", acme="editor")
    erin, other = new_browser(), new_browser()
    erin.login("erin")
    other.login("erin")
    project_id = create_project(erin, "Launch")
    confirm = erin.get(f"/projects/{project_id}/delete").forms["delete-form"]
    form = other.get(f"/projects/{project_id}/edit").forms["project-form"]
    form["description"] = "changed meanwhile"
    form.submit(status=303)
    response = confirm.submit(status=200)
    assert STALE in text_of(response) and "changed meanwhile" in text_of(response)
    assert set(projects_in(admin)) == {"Launch"}
    response.forms["delete-form"].submit(status=303)
    assert projects_in(admin) == {}


# --- tasks -----------------------------------------------------------------------------


def test_add_edit_change_status_and_delete_tasks(editor_browser, admin):
    project_id = create_project(editor_browser, "Launch")
    add_task(editor_browser, project_id, "Write copy", "in_progress", " alice ", "2026-12-15")
    task = tasks_in(admin)["Write copy"]
    assert (task.status, task.assignee, task.due_date) == (
        "in_progress",
        "alice",
        date(2026, 12, 15),
    )

    page = editor_browser.get(f"/projects/{project_id}")
    assert task_titles(page) == ["Write copy"]
    edit = editor_browser.get(f"/tasks/{task.id}/edit").forms["task-form"]
    assert (edit["title"].value, edit["assignee"].value, edit["due_date"].value) == (
        "Write copy",
        "alice",
        "2026-12-15",
    )
    edit["title"] = "Write the copy"
    edit["assignee"] = ""
    edit["due_date"] = ""
    assert edit.submit(status=303).location.endswith(f"/projects/{project_id}")
    task = tasks_in(admin)["Write the copy"]
    assert (task.assignee, task.due_date, task.version) == (None, None, 2)

    page = editor_browser.get(f"/projects/{project_id}?status=in_progress")
    status_form = page.forms[f"status-form-{task.id}"]
    status_form["status"] = "done"
    # Back to the page it came from, filters and all.
    assert status_form.submit(status=303).location.endswith(
        f"/projects/{project_id}?status=in_progress"
    )
    assert tasks_in(admin)["Write the copy"].status == "done"

    confirm = editor_browser.get(f"/tasks/{task.id}/delete")
    assert "Write the copy" in text_of(confirm)
    confirm.forms["delete-form"].submit(status=303)
    assert tasks_in(admin) == {}


def test_invalid_task_fields_are_refused_at_the_field(editor_browser, admin):
    project_id = create_project(editor_browser, "Launch")
    form = editor_browser.get(f"/projects/{project_id}").forms["new-task"]
    form["title"] = "  "
    form["due_date"] = "2026-02-30"
    response = form.submit(status=200)
    page = soup(response)
    assert page.select_one("#task-title-error").get_text() == "Must not be empty."
    assert page.select_one("#task-due-error").get_text() == (
        "Must be a real calendar date (YYYY-MM-DD)."
    )
    assert tasks_in(admin) == {}
    # A status no form offers.
    response = editor_browser.post(
        f"/projects/{project_id}/tasks", {"title": "T", "status": "bogus"}, status=200
    )
    assert soup(response).select_one("#task-status-error") is not None
    assert tasks_in(admin) == {}


def test_filters_search_and_pagination(editor_browser):
    project_id = create_project(editor_browser, "Big")
    other_id = create_project(editor_browser, "Other")
    add_task(editor_browser, other_id, "Report elsewhere", assignee="ann")
    for number in range(1, 26):
        add_task(
            editor_browser,
            project_id,
            f"Task {number:02d}" + (" report" if number % 5 == 0 else ""),
            status="done" if number % 2 == 0 else "open",
            assignee="ann" if number % 3 == 0 else "",
        )
    path = f"/projects/{project_id}"

    first = editor_browser.get(path)
    assert task_titles(first)[0] == "Task 01" and len(task_titles(first)) == 20
    assert soup(first).find("a", string="First page") is None
    second = editor_browser.get(soup(first).find("a", rel="next")["href"])
    assert [t.split()[1] for t in task_titles(second)] == ["21", "22", "23", "24", "25"]
    assert soup(second).find("a", rel="next") is None
    assert soup(second).find("a", string="First page")["href"] == path

    form = first.forms["filters"]
    form["status"] = "done"
    form["assignee"] = "ann"
    done_by_ann = form.submit()
    assert task_titles(done_by_ann) == ["Task 06", "Task 12", "Task 18", "Task 24"]
    assert done_by_ann.forms["filters"]["status"].value == "done"  # the form keeps them

    form = editor_browser.get(path).forms["filters"]
    form["q"] = "REPORT"
    assert task_titles(form.submit()) == [
        "Task 05 report",
        "Task 10 report",
        "Task 15 report",
        "Task 20 report",
        "Task 25 report",
    ]
    # Filters survive paging.
    page = editor_browser.get(f"{path}?status=open&limit=5")
    assert task_titles(page) == ["Task 01", "Task 03", "Task 05 report", "Task 07", "Task 09"]
    following = editor_browser.get(soup(page).find("a", rel="next")["href"])
    assert task_titles(following) == ["Task 11", "Task 13", "Task 15 report", "Task 17", "Task 19"]
    assert "No tasks match these filters." in text_of(editor_browser.get(f"{path}?q=zzz"))


def test_a_malformed_filter_is_a_400_page(editor_browser):
    project_id = create_project(editor_browser, "Launch")
    for query in ("status=bogus", "after=garbage", "limit=0"):
        response = editor_browser.get(f"/projects/{project_id}?{query}", status=400)
        assert response.content_type == "text/html"


def test_stale_task_edit_says_so_and_shows_the_current_values(new_browser, make_user, admin):
    make_user("erin", acme="editor")
    make_user("fred", acme="editor")
    erin, fred = new_browser(), new_browser()
    erin.login("erin")
    fred.login("fred")
    project_id = create_project(erin, "Launch")
    add_task(erin, project_id, "Write copy")
    task = tasks_in(admin)["Write copy"]
    erins_form = erin.get(f"/tasks/{task.id}/edit").forms["task-form"]
    erins_status = erin.get(f"/projects/{project_id}").forms[f"status-form-{task.id}"]

    freds_form = fred.get(f"/tasks/{task.id}/edit").forms["task-form"]
    freds_form["title"] = "Fred's title"
    freds_form["assignee"] = "fred"
    freds_form.submit(status=303)

    erins_form["title"] = "Erin's title"
    response = erins_form.submit(status=200)
    assert STALE in text_of(response)
    form = response.forms["task-form"]
    assert (form["title"].value, form["assignee"].value, form["version"].value) == (
        "Fred's title",
        "fred",
        "2",
    )
    erins_status["status"] = "done"
    assert STALE in text_of(erins_status.submit(status=200))
    erins_delete = erin.get(f"/tasks/{task.id}/delete").forms["delete-form"]
    freds_status = fred.get(f"/projects/{project_id}").forms[f"status-form-{task.id}"]
    freds_status["status"] = "in_progress"
    freds_status.submit(status=303)
    assert STALE in text_of(erins_delete.submit(status=200))
    task = tasks_in(admin)["Fred's title"]
    assert (task.status, task.assignee, task.version) == ("in_progress", "fred", 3)


# --- tenants apart, errors, headers, accessibility -------------------------------------


def test_a_tenant_sees_only_its_own_data(new_browser, make_user):
    make_user("alice", acme="admin", globex="editor")
    make_user("bob", globex="admin")
    alice, bob = new_browser(), new_browser()
    alice.login("alice")
    alice.choose("acme")
    acme_id = create_project(alice, "Acme secret")
    bob.login("bob")
    bob_page = bob.get("/projects")
    assert "Acme secret" not in bob_page.text
    response = bob.get(f"/projects/{acme_id}", status=404)
    assert response.content_type == "text/html"
    assert "No such project." in text_of(response)
    create_project(bob, "Globex plan")
    alice.choose("globex")
    page = alice.get("/projects")
    assert "Globex plan" in page.text and "Acme secret" not in page.text


def test_page_headers_and_assets(editor_browser):
    page = editor_browser.get("/projects")
    assert page.content_type == "text/html"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert editor_browser.get("/login", status=303).headers["Cache-Control"] == "no-store"
    html = soup(page)
    # No script at all, no inline style: a strict CSP can come later.
    assert html.find("script") is None
    assert html.find(attrs={"style": True}) is None
    # Every asset is the app's own.
    assets = [tag.get("href") or tag.get("src") for tag in html.find_all(["link", "img"])]
    assert assets and all(url.startswith("/static/") for url in assets)
    for url in assets:
        asset = editor_browser.get(url)
        assert asset.content_length > 0
    assert "viewport" in {meta.get("name") for meta in html.find_all("meta")}


def test_every_input_on_every_page_has_a_label(editor_browser, form_pages):
    for response in form_pages:
        page = soup(response)
        for field in page.find_all(["input", "select", "textarea"]):
            if field.get("type") == "hidden":
                continue
            assert field.get("id"), field
            label = page.find("label", attrs={"for": field["id"]})
            assert label is not None and label.get_text(strip=True), field


@pytest.fixture
def form_pages(editor_browser, make_user):
    """Every page with a form, as an editor sees it (and the login page)."""
    project_id = create_project(editor_browser, "Launch")
    add_task(editor_browser, project_id, "Task", assignee="ann", due_date="2026-12-01")
    task_id = re.search(r"/tasks/(\d+)/edit", editor_browser.get(f"/projects/{project_id}").text)
    paths = [
        "/projects",
        f"/projects/{project_id}",
        f"/projects/{project_id}/edit",
        f"/projects/{project_id}/delete",
        f"/tasks/{task_id.group(1)}/edit",
        f"/tasks/{task_id.group(1)}/delete",
        "/tenants",
    ]
    pages = [editor_browser.get(path) for path in paths]
    pages.append(Browser(editor_browser.app.app).get("/login"))
    return pages


def test_a_page_post_over_the_size_limit_is_refused(editor_browser, admin):
    response = editor_browser.post(
        "/projects", {"name": "Big", "description": "x" * (1024 * 1024)}, status=413
    )
    assert response.content_type == "text/html"
    assert projects_in(admin) == {}
