"""Error answers: conflicts between transactions, and errors on pages (issue 11).

- A deadlock or a serialization failure is retried (pyramid_retry, 3 attempts);
  when every attempt conflicts, the answer is a 503 ``service_unavailable``
  with ``Retry-After`` that says a concurrent change conflicted, and the log
  says so (it is no outage). The races are forced, never hoped for: each
  attempt of the request waits at a gate of its own (an advisory lock the
  test holds, see ``tests/testviews.py``) while the test prepares the
  conflicting change, then lets it go.
- A person gets an HTML page for every error outside ``/api``, whoever raised
  it (the router, a database that does not answer, a bug); ``/api``,
  ``/healthz`` and ``/readyz`` keep the JSON error body, whatever ``Accept``
  says.
- Page URLs take ids of ASCII digits only, at most 10 of them.
"""

import logging
from urllib.parse import quote

import psycopg2
import pytest
import webtest
from races import LockHolder, in_thread, libpq_url, wait_until_blocked

from conftest import LEAK_MARKERS, assert_error, dispose_app, logged_in, tenant_rows
from tenantapp import make_app
from tenantapp.models.tenant import Project

# Advisory lock keys of this module's gates: GATE + attempt number.
GATE = 11_000_000
ATTEMPTS = 3  # retry.attempts of the app


def acme_url(settings):
    return settings["tenantapp.tenant_url_template"].format(name="acme")


def hold_gates(url, attempts=ATTEMPTS):
    """A connection holding the gates of the first ``attempts`` attempts."""
    gate = LockHolder(url)
    for attempt in range(attempts):
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE + attempt,))
    return gate


def open_gate(gate, attempt):
    gate.execute("SELECT pg_advisory_unlock(%s)", (GATE + attempt,))


def error_log(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "tenantapp.views.errors"]


def post_under_conflicts(client, path, url, failing, conflict_on_attempt, caplog):
    """POST ``path`` in a thread while ``conflict_on_attempt(gate, attempt)``
    makes each of its first ``failing`` attempts conflict; the response and
    the exception views' log lines."""
    gate = hold_gates(url, attempts=failing)
    with caplog.at_level(logging.INFO, logger="tenantapp"):
        call = in_thread(client.post_json, path, {}, expect_errors=True)
        try:
            for attempt in range(failing):
                conflict_on_attempt(gate, attempt)
            response = call.result()
        finally:
            gate.release()
    return response, error_log(caplog)


def assert_conflict_answer(response):
    error = assert_error(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert "conflicted with a concurrent change" in error["message"], error
    assert "not available" not in error["message"], error


# --- 1. conflicts: retried, then a 503 that says what happened ---------------------


def deadlock_on_attempt(gate, url, attempt, first, then):
    """Make this attempt of ``lock_in_order`` deadlock with a holder of ``then``.

    The attempt holds ``first`` and waits at its gate; a holder locks
    ``then`` and waits for ``first``; the gate opens and the attempt waits
    for ``then``: a cycle. PostgreSQL looks for deadlocks only in a backend
    that has waited ``deadlock_timeout``; the holder's is an hour, so the
    request is the one that finds it and is rolled back.
    """
    gate.wait_for_waiters(1)
    holder = LockHolder(url)
    holder.execute("SET deadlock_timeout = '1h'")
    holder.execute("SELECT id FROM projects WHERE id = %s FOR UPDATE", (then,))
    takes_first = in_thread(
        holder.execute, "SELECT id FROM projects WHERE id = %s FOR UPDATE", (first,)
    )
    wait_until_blocked(holder)
    open_gate(gate, attempt)
    # The holder gets ``first`` once the request's transaction is rolled back.
    takes_first.result()
    holder.release()


@pytest.mark.postgresql_only
def test_a_deadlock_on_every_attempt_is_a_503_that_says_so(app, make_user, settings, caplog):
    make_user("ann", acme="editor")
    client = logged_in(app, "ann")
    first = client.post_json("/api/projects", {"name": "First"}).json["id"]
    then = client.post_json("/api/projects", {"name": "Then"}).json["id"]
    url = acme_url(settings)
    response, logged = post_under_conflicts(
        client,
        f"/api/_test/lock_in_order?first={first}&then={then}&gate={GATE}",
        url,
        ATTEMPTS,
        lambda gate, attempt: deadlock_on_attempt(gate, url, attempt, first, then),
        caplog,
    )
    assert_conflict_answer(response)
    assert any("deadlock" in line for line in logged), logged
    assert not any("unavailable" in line for line in logged), logged
    # Retried twice, answered once.
    assert sum("retrying" in line for line in logged) == ATTEMPTS - 1, logged


@pytest.mark.postgresql_only
def test_a_deadlock_is_retried_and_the_retry_succeeds(app, make_user, settings, caplog):
    make_user("ann", acme="editor")
    client = logged_in(app, "ann")
    first = client.post_json("/api/projects", {"name": "First"}).json["id"]
    then = client.post_json("/api/projects", {"name": "Then"}).json["id"]
    url = acme_url(settings)
    response, logged = post_under_conflicts(
        client,
        f"/api/_test/lock_in_order?first={first}&then={then}&gate={GATE}",
        url,
        1,  # the second attempt passes its gate
        lambda gate, attempt: deadlock_on_attempt(gate, url, attempt, first, then),
        caplog,
    )
    assert response.status_int == 200, response.body
    assert response.json == {"locked": True}
    assert len(logged) == 1 and "deadlock" in logged[0] and "retrying" in logged[0], logged


def serialization_failure_on_attempt(gate, writer, attempt, project_id):
    """The attempt has read the counter (its snapshot) and waits at its gate;
    another transaction changes the row and commits; the gate opens and the
    attempt's UPDATE cannot be serialized."""
    gate.wait_for_waiters(1)
    with writer.cursor() as cursor:
        cursor.execute(
            "UPDATE projects SET description = (description::int + 10)::text WHERE id = %s",
            (project_id,),
        )
    open_gate(gate, attempt)


def increment_under_serialization_failures(app, make_user, settings, caplog, failing):
    """ann increments a counter project through ``serializable_increment``
    while another connection makes each of the first ``failing`` attempts fail
    to serialize; the response and the log lines."""
    make_user("ann", acme="editor")
    client = logged_in(app, "ann")
    project = client.post_json("/api/projects", {"name": "Counter", "description": "0"}).json
    url = acme_url(settings)
    writer = psycopg2.connect(libpq_url(url))
    writer.autocommit = True
    try:
        return post_under_conflicts(
            client,
            f"/api/_test/serializable_increment?project_id={project['id']}&gate={GATE}",
            url,
            failing,
            lambda gate, attempt: serialization_failure_on_attempt(
                gate, writer, attempt, project["id"]
            ),
            caplog,
        )
    finally:
        writer.close()


@pytest.mark.postgresql_only
def test_a_serialization_failure_on_every_attempt_is_a_503_that_says_so(
    app, make_user, settings, admin, caplog
):
    response, logged = increment_under_serialization_failures(
        app, make_user, settings, caplog, failing=ATTEMPTS
    )
    assert_conflict_answer(response)
    # The three concurrent changes are there; the request wrote nothing.
    [stored] = tenant_rows(admin, "acme", Project)
    assert stored.description == str(10 * ATTEMPTS)
    assert any("serialization failure" in line for line in logged), logged
    assert not any("unavailable" in line for line in logged), logged
    assert sum("retrying" in line for line in logged) == ATTEMPTS - 1, logged


@pytest.mark.postgresql_only
def test_a_serialization_failure_is_retried_and_the_retry_succeeds(
    app, make_user, settings, admin, caplog
):
    response, logged = increment_under_serialization_failures(
        app, make_user, settings, caplog, failing=1
    )
    # The second attempt read the committed 10: no lost update.
    assert (response.status_int, response.json) == (200, {"count": 11}), response.body
    [stored] = tenant_rows(admin, "acme", Project)
    assert stored.description == "11"
    assert len(logged) == 1 and "serialization failure" in logged[0], logged
    assert "retrying" in logged[0], logged


# --- 2. pages get HTML error pages; /api and the machine endpoints keep JSON --------


def assert_page(response, status):
    """``response`` is the HTML error page with ``status``, and leaks nothing."""
    assert response.status_int == status, (response.status, response.body[:500])
    assert response.content_type == "text/html", response.headers
    text = response.text
    assert text.lstrip().lower().startswith("<!doctype html>"), text[:200]
    assert 'class="alert error"' in text, text
    lowered = text.lower()
    for marker in LEAK_MARKERS:
        assert marker not in lowered, f"{marker!r} leaked into {text!r}"
    return text


@pytest.fixture
def visitor(app):
    return webtest.TestApp(app)


@pytest.fixture
def member(app, make_user):
    make_user("erin", acme="editor")
    return logged_in(app, "erin")


UNKNOWN_PAGE_URLS = [
    "/nope",
    "/projects/abc",
    "/projects/1/nope",
    "/tasks",
    "/tasks/1",
    "/openapi.json",  # the document is /api/openapi.json
    "/static/nope.css",
]


@pytest.mark.parametrize("who", ["visitor", "member"])
@pytest.mark.parametrize("url", UNKNOWN_PAGE_URLS)
def test_an_unknown_page_url_is_an_html_404_page(request, who, url):
    browser = request.getfixturevalue(who)
    response = browser.get(url, status=404, headers={"Accept": "text/html"})
    assert_page(response, 404)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_page_path_that_is_not_utf8_is_an_html_page(visitor):
    response = visitor.get("/%ff", expect_errors=True)
    assert response.status_int in (400, 404), response.status
    assert_page(response, response.status_int)


@pytest.mark.parametrize(
    "method,url,allowed",
    [
        ("DELETE", "/", "GET, HEAD"),
        ("PUT", "/projects", "GET, HEAD, POST"),
        ("PATCH", "/login", "GET, HEAD, POST"),
        ("GET", "/logout", "POST"),
    ],
)
def test_a_wrong_method_on_a_page_is_an_html_405_page_with_allow(member, method, url, allowed):
    response = member.request(url, method=method, expect_errors=True)
    assert_page(response, 405)
    assert response.headers["Allow"] == allowed


def test_a_bug_in_a_page_view_is_an_html_500_page_with_a_request_id(member, caplog):
    with caplog.at_level(logging.ERROR):
        response = member.get("/_test/page_raises", status=500)
    text = assert_page(response, 500)
    request_id = response.headers["X-Request-Id"]
    assert request_id in text
    assert [r for r in caplog.records if request_id in r.getMessage() and r.exc_info]


def test_an_unknown_project_id_on_a_page_is_an_html_404_page(member):
    # Raised by the page view itself (no such object): the top bar still shows
    # the login, as on every other page of the session.
    text = assert_page(member.get("/projects/424242", status=404), 404)
    assert 'id="logout-form"' in text


@pytest.mark.parametrize(
    "method,url,status,code",
    [
        ("GET", "/api/nope", 404, "not_found"),
        ("GET", "/api", 404, "not_found"),
        ("GET", "/api/projects/abc", 404, "not_found"),
        ("GET", "/api/me", 401, "unauthenticated"),
        ("POST", "/api/docs", 405, "method_not_allowed"),
        ("PUT", "/api/openapi.json", 405, "method_not_allowed"),
        ("PUT", "/healthz", 405, "method_not_allowed"),
        ("POST", "/readyz", 405, "method_not_allowed"),
    ],
)
def test_api_and_machine_endpoints_keep_json_even_for_a_browser(visitor, method, url, status, code):
    browser_accept = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    response = visitor.request(url, method=method, headers=browser_accept, expect_errors=True)
    assert_error(response, status, code)


def test_an_api_path_that_is_not_utf8_keeps_json(visitor):
    response = visitor.get("/api/%ff", headers={"Accept": "text/html"}, expect_errors=True)
    assert response.status_int in (400, 404), response.status
    assert_error(
        response, response.status_int, {400: "bad_request", 404: "not_found"}[response.status_int]
    )


@pytest.fixture
def dead_catalog_app(backend, settings, tmp_path):
    """An app whose catalog does not answer (nothing listens, or no such folder),
    with the same secret as the test app: its session cookies pass the signature
    check, so the login lookup goes to the catalog."""
    if backend == "postgresql":
        url = "postgresql://postgres@127.0.0.1:1/catalog"
    else:
        url = f"sqlite:///{tmp_path}/missing-folder/catalog.sqlite"
    app = make_app(dict(settings, **{"tenantapp.catalog_url": url}))
    yield app
    dispose_app(app)


def test_a_catalog_outage_is_an_html_503_page_and_a_json_503_on_the_api(
    member, dead_catalog_app, caplog
):
    browser = webtest.TestApp(dead_catalog_app)
    browser.set_cookie("session", member.cookies["session"])
    for url in ("/projects", "/", "/tenants", "/projects/1"):
        response = browser.get(url, status=503)
        assert_page(response, 503)
        assert int(response.headers["Retry-After"]) > 0
        assert "not available" in response.text
    response = browser.request("/projects", method="POST", expect_errors=True)
    assert_page(response, 503)
    response = browser.get("/api/me", status=503, headers={"Accept": "text/html"})
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) > 0


# --- 3. page ids: ASCII digits, at most 10 ----------------------------------------


def other_digits(number, zero):
    """``number`` written with the digits that start at code point ``zero``."""
    return "".join(chr(zero + int(digit)) for digit in str(number))


def test_page_ids_in_other_digits_or_too_long_are_an_html_404(member):
    project = member.post_json("/api/projects", {"name": "Mine"}).json
    task = member.post_json("/api/tasks", {"project_id": project["id"], "title": "T"}).json
    fullwidth = other_digits(project["id"], 0xFF10)  # "１", "２" ...
    arabic_indic = other_digits(project["id"], 0x0660)  # "٠", "١" ...
    urls = [
        f"/projects/{fullwidth}",
        f"/projects/{arabic_indic}",
        f"/projects/{arabic_indic}/edit",
        f"/tasks/{other_digits(task['id'], 0xFF10)}/edit",
        "/projects/" + "9" * 5000,
        "/projects/" + "9" * 11,
        "/tasks/" + "7" * 4400 + "/edit",
        "/tasks/" + "7" * 4400 + "/delete",
    ]
    for url in urls:
        response = member.get(quote(url), expect_errors=True)
        assert_page(response, 404)
        assert "Mine" not in response.text
    # The ASCII ids still work.
    assert "Mine" in member.get(f"/projects/{project['id']}").text
    member.get(f"/tasks/{task['id']}/edit", status=200)
    # At most 10 digits, and beyond what a table holds: the page view's own 404.
    assert_page(member.get("/projects/9999999999", status=404), 404)
