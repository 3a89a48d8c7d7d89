"""Issue 11, login and sessions: crafted cookies, concurrent wrong passwords,
idle timeouts shorter than the touch interval, the "last used" write outside
the request's transaction, and no database password in a repr.

Through the real app (WebTest) on the real databases; time is the clock
fixture's (no sleeps); the race is forced with a lock (tests/races.py).
"""

import io
import threading
from datetime import UTC, datetime

import pytest
import webtest
from races import LockHolder, in_thread, wait_for_blocked_behind
from sqlalchemy import text
from webob import Request

from conftest import (
    PASSWORD,
    Client,
    Clock,
    assert_error,
    dispose_app,
    failures,
    last_used,
    sessions_of,
    tenant_rows,
)
from tenantapp import make_app
from tenantapp.auth import tokens
from tenantapp.auth.sessions import Login, TenantAccess, load_login
from tenantapp.models.catalog import Membership, Tenant
from tenantapp.models.tenant import Project

COOKIE = "session"


# --- helpers ------------------------------------------------------------------------


def send(app, method, path, cookie, body=None, headers=None):
    """One request with a raw ``Cookie`` header, as a WSGI server hands it over
    (PEP 3333: the header's bytes as latin-1 characters)."""
    environ = {"REQUEST_METHOD": method, "HTTP_COOKIE": cookie}
    if body is not None:
        environ["wsgi.input"] = io.BufferedReader(io.BytesIO(body))
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/json"
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    try:
        return Request.blank(path, environ=environ).get_response(app)
    except Exception as exc:  # noqa: BLE001 - a WSGI server would answer its own 500
        pytest.fail(f"the app raised {type(exc).__name__}: {exc} instead of answering")


def _latin1(value):
    """How a UTF-8 header value reaches a WSGI app."""
    return value.encode("utf-8").decode("latin-1")


@pytest.fixture
def own_app(settings, admin):
    """``own_app({"tenantapp.x": "1"})``: an app of the test's own with those
    settings and a clock the test turns; its pools are closed afterwards."""
    made = []

    def make(overrides):
        app = make_app({**settings, **overrides})
        app.registry.clock = Clock()
        made.append(app)
        return app

    yield make
    for app in made:
        dispose_app(app)


# --- 1. a malformed cookie is no session, never a 500 ------------------------------

# {real} is a live session's cookie value, {real_token} and {real_signature} its parts.
MALFORMED_COOKIES = {
    "quoted, octal escape of a non-UTF-8 byte": 'session="x.\\377"',
    "quoted, raw non-UTF-8 byte": 'session="x.\xff\xfe"',
    "quoted, octal escapes of garbage": 'session="\\141\\142\\056\\143"',
    "quoted, octal escapes of UTF-8 (non-ASCII token)": 'session="\\303\\251\\056x"',
    "quoted real cookie, non-UTF-8 byte appended": 'session="{real}\\377"',
    "unbalanced quote, leading": 'session="{real}',
    "unbalanced quote, trailing": 'session={real}x"',
    "lone quote": 'session="',
    "quote in the middle": 'session={real_token}".{real_signature}',
    # Of a name sent twice the last readable copy counts (see the test below).
    "two cookies of the same name, forged last": "session={real}; session=forged.x",
    "two copies, forged and undecodable": 'session=forged.x; session="\\377"',
    "two copies, undecodable and forged": 'session="\\377"; session=forged.x',
    "huge": "session=" + "a" * 100_000,
    "huge, quoted escapes": 'session="' + "\\377" * 30_000 + '"',
    "many cookies": "; ".join(f"c{i}=v{i}" for i in range(5000)) + "; session=x.y",
    "non-ASCII token": _latin1("session=tökén.") + "{real_signature}",
    "ASCII token, non-ASCII signature": _latin1("session={real_token}.sïgnätürë"),
    "quoted, ASCII token, non-ASCII signature": 'session="{real_token}.\\303\\251"',
    "quoted, raw UTF-8 signature": 'session="{real_token}.' + _latin1("é") + '"',
    "real token, signature in fullwidth letters": _latin1("session={real_token}.ＡＢＣ"),
    "not even latin-1 (a broken server)": "session=\u2603.\u2603",
}


def _cookie_header(template, real):
    token, _, signature = real.rpartition(".")
    return (
        template.replace("{real_token}", token)
        .replace("{real_signature}", signature)
        .replace("{real}", real)
    )


@pytest.mark.parametrize("template", MALFORMED_COOKIES.values(), ids=MALFORMED_COOKIES.keys())
def test_malformed_cookie_is_no_session_never_500(new_client, make_user, app, admin, template):
    make_user("mallory", acme="editor")
    mallory = new_client()
    mallory.login("mallory")
    cookie = _cookie_header(template, mallory.test_app.cookies[COOKIE])
    csrf = {"X-CSRF-Token": mallory.csrf}
    for method, path, body in (
        ("GET", "/api/me", None),
        ("GET", "/api/projects", None),
        ("GET", "/api/tasks", None),
        # 401 comes before 403 csrf_failed (API.md, errors): with and without a token.
        ("POST", "/api/projects", b'{"name": "from a bad cookie"}'),
        ("POST", "/api/logout", None),
    ):
        for headers in (csrf, {}):
            response = send(app, method, path, cookie, body, headers)
            assert_error(response, 401, "unauthenticated")
    # Pages: the redirect to the login page that "not logged in" gets...
    for method, path in (("GET", "/projects"), ("GET", "/tenants"), ("POST", "/logout")):
        response = send(app, method, path, cookie)
        assert response.status_int == 303, (method, path, response.status)
        assert response.location.endswith("/login")
    # ...and the login page itself.
    page = send(app, "GET", "/login", cookie)
    assert page.status_int == 200 and page.content_type == "text/html"
    assert 'name="password"' in page.text
    # Nothing was written; the real session is untouched and still works.
    assert tenant_rows(admin, "acme", Project) == []
    mallory.get("/api/me")
    # A browser stuck with such a cookie logs in again (and the new cookie replaces it).
    login = send(
        app,
        "POST",
        "/api/login",
        cookie,
        body=b'{"username": "mallory", "password": "%s"}' % PASSWORD.encode(),
    )
    assert login.status_int == 200, login.body[:300]
    assert login.headers["Set-Cookie"].startswith(f"{COOKIE}=")


def test_an_unreadable_cookie_is_skipped_not_fatal(new_client, make_user, app):
    """A cookie that is not UTF-8 is as if not sent: another cookie of the
    site, or a second copy of the session cookie, does not end the session.
    Of a name sent twice the last readable copy counts (WebOb's rule, which
    a browser holding a planted cookie next to its own relies on, see
    test_security's session fixation tests)."""
    make_user("mallory", acme="editor")
    make_user("eve", acme="editor")
    mallory, eve = new_client(), new_client()
    mallory.login("mallory")
    eve.login("eve")
    real, other = mallory.test_app.cookies[COOKIE], eve.test_app.cookies[COOKIE]
    for header, expected in (
        (f'theme="\\377"; {COOKIE}={real}', "mallory"),
        (f'{COOKIE}={real}; theme="\\377\\376"', "mallory"),
        (f"{COOKIE}={real}; " + _latin1('lang="ünïcode"'), "mallory"),
        (f'{COOKIE}={real}; {COOKIE}="\\377"', "mallory"),
        (f'{COOKIE}="x.\\377"; {COOKIE}={real}', "mallory"),
        (f"{COOKIE}=forged.x; {COOKIE}={real}", "mallory"),
        (f"{COOKIE}={other}; {COOKIE}={real}", "mallory"),
        (f"{COOKIE}={real}; {COOKIE}={other}", "eve"),
    ):
        response = send(app, "GET", "/api/me", header)
        assert response.status_int == 200, (header, response.status, response.body[:300])
        assert response.json["user"]["username"] == expected, header
        assert send(app, "GET", "/projects", header).status_int == 200


# --- 2. concurrent wrong passwords: at most login_max_attempts are checked ----------

N_CONCURRENT = 12


def _wrong_login(app, username):
    return webtest.TestApp(app).post_json(
        "/api/login", {"username": username, "password": "wrong password"}, expect_errors=True
    )


def _assert_throttled_bound(responses, admin, username, limit=5):
    statuses = sorted(r.status_int for r in responses)
    checked = statuses.count(401)
    assert set(statuses) <= {401, 429}, statuses
    assert checked <= limit, f"{checked} passwords checked (401), limit {limit}: {statuses}"
    assert checked == limit, statuses  # and the limit is not undershot
    for response in responses:
        if response.status_int == 429:
            assert_error(response, 429, "too_many_requests")
            assert 1 <= int(response.headers["Retry-After"]) <= 900
        else:
            assert_error(response, 401, "unauthenticated")
    assert failures(admin, username) == limit


@pytest.mark.postgresql_only
@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_concurrent_wrong_logins_check_at_most_the_limit(own_app, make_user, admin, username):
    # A catalog pool for all of them at once (the default 10 would queue two in the pool).
    app = own_app({"tenantapp.catalog_pool_size": str(N_CONCURRENT + 4)})
    make_user("alice", acme="admin")
    holder = LockHolder(admin.catalog.url)
    # Every login reads the failures of the window first: with the table
    # locked, all of them wait (today's code on its count; a reservation on
    # the count too, or on the per-username lock of the one counting), so
    # they all arrive at once when it is released.
    holder.execute("LOCK TABLE login_failures IN ACCESS EXCLUSIVE MODE")
    calls = [in_thread(_wrong_login, app, username) for _ in range(N_CONCURRENT)]
    try:
        wait_for_blocked_behind(holder, N_CONCURRENT)
    finally:
        holder.release()
    _assert_throttled_bound([call.result() for call in calls], admin, username)


def test_concurrent_wrong_logins_in_threads(own_app, make_user, admin):
    """The same bound without a lock held: the attempts race freely (both backends).
    Production-like argon2 cost, so the password checks overlap."""
    app = own_app(
        {
            "tenantapp.catalog_pool_size": str(N_CONCURRENT + 4),
            "tenantapp.argon2_time_cost": "2",
            "tenantapp.argon2_memory_kib": "16384",
        }
    )
    make_user("alice", acme="admin")
    start = threading.Barrier(N_CONCURRENT)

    def attempt():
        start.wait(timeout=20)
        return _wrong_login(app, "alice")

    calls = [in_thread(attempt) for _ in range(N_CONCURRENT)]
    _assert_throttled_bound([call.result(60) for call in calls], admin, "alice")


def test_one_attempt_at_a_time_the_throttle_answers_as_before(client, make_user, admin):
    """The reservation changes nothing a client sees one request at a time."""
    make_user("alice", acme="admin")
    make_user("mallory", acme="editor")
    # A success stores nothing, and clears what was there.
    for _ in range(4):
        assert_error(client.login("alice", "wrong", status=401), 401, "unauthenticated")
    assert failures(admin, "alice") == 4
    client.login("alice")
    assert failures(admin, "alice") == 0
    # The right password with a tenant one may not choose: refused, nothing stored.
    assert_error(client.login("mallory", tenant="globex", status=403), 403, "forbidden")
    assert failures(admin, "mallory") == 0
    # The fifth failure throttles, the sixth attempt is refused without a check
    # and is not stored (a refused attempt does not extend the lockout).
    for _ in range(5):
        client.login("alice", "wrong", status=401)
    assert_error(client.login("alice", status=429), 429, "too_many_requests")
    assert failures(admin, "alice") == 5


# --- 3. an idle timeout shorter than the touch interval -----------------------------


def test_a_session_used_within_every_idle_timeout_lives_to_its_max_age(own_app, make_user):
    app = own_app({"tenantapp.session_idle_timeout": "3", "tenantapp.session_max_age": "9"})
    clock = app.registry.clock
    make_user("erin", acme="editor")
    client = Client(app)
    client.login("erin")
    logged_in_at = clock.now
    answers = []
    for _ in range(17):  # every 0.7 s, for 11.9 s
        clock.advance(0.7)
        response = client.get("/api/me", status="*")
        answers.append((round((clock.now - logged_in_at).total_seconds(), 1), response.status_int))
    expected = [(t, 200 if t <= 9 else 401) for t, _ in answers]
    assert answers == expected


def test_short_idle_timeout_expires_an_unused_session(own_app, make_user, admin):
    app = own_app({"tenantapp.session_idle_timeout": "3", "tenantapp.session_max_age": "9"})
    clock = app.registry.clock
    make_user("erin", acme="editor")
    # Unused for the idle timeout: still valid...
    client = Client(app)
    client.login("erin")
    clock.advance(3)
    client.get("/api/me")
    # ...used, but not recorded (within a tenth of the idle timeout of the
    # last write: the hot path writes nothing), then used again 3 s later:
    # 3 s idle, valid.
    clock.advance(0.2)
    written = last_used(admin, "erin")
    client.get("/api/me")
    assert last_used(admin, "erin") == written
    clock.advance(3)
    client.get("/api/me")
    # Unused for a little more than the idle timeout (plus its tenth): refused.
    clock.advance(3.31)
    assert_error(client.get("/api/me", status=401), 401, "unauthenticated")
    # The same for a fresh session never used after login.
    fresh = Client(app)
    fresh.login("erin")
    clock.advance(3.31)
    assert_error(fresh.get("/api/me", status=401), 401, "unauthenticated")


def test_default_timeouts_a_use_just_after_a_write_still_counts(clock, editor, admin):
    """1800 s idle, 43200 s max age, "last used" written once a minute."""
    logged_in_at = clock.now
    clock.advance(59)
    editor.get("/api/me")  # within the minute: not written...
    assert last_used(admin, "erin") == logged_in_at
    clock.advance(1800)  # ...but it was a use: 1800 s idle since, still valid
    editor.get("/api/me")
    assert last_used(admin, "erin") == clock.now
    # Used every 1799 s (each time also 59 s after a write): valid to the max age.
    while (clock.now - logged_in_at).total_seconds() + 1859 <= 43200:
        clock.advance(59)
        editor.get("/api/projects")
        clock.advance(1800)
        editor.get("/api/me")
    clock.advance(43200 - (clock.now - logged_in_at).total_seconds())
    editor.get("/api/me")  # exactly the max age
    clock.advance(1)
    assert_error(editor.get("/api/me", status=401), 401, "unauthenticated")


def test_default_timeouts_an_unused_session_expires(clock, new_client, make_user):
    make_user("erin", acme="editor")
    client = new_client()
    client.login("erin")
    clock.advance(1800 + 60)  # the idle timeout, plus the touch interval's lag
    client.get("/api/me")
    clock.advance(1800 + 60 + 1)
    assert_error(client.get("/api/me", status=401), 401, "unauthenticated")


# --- 4. "last used" is committed on its own, never in the request's transaction -----


def test_a_failed_write_still_records_the_use(clock, editor, admin):
    project = editor.post("/api/projects", {"name": "Alpha"}, status=201).json
    clock.advance(61)
    assert_error(editor.post("/api/projects", {}, status=422), 422, "validation_failed")
    assert last_used(admin, "erin") == clock.now
    clock.advance(61)
    stale = {"If-Match": '"999"'}
    editor.patch(f"/api/projects/{project['id']}", {"name": "B"}, headers=stale, status=412)
    assert last_used(admin, "erin") == clock.now
    assert [p.name for p in tenant_rows(admin, "acme", Project)] == ["Alpha"]


@pytest.fixture
def touch_fails(admin, backend):
    """Every UPDATE of login_sessions.last_used_at fails (a trigger), for the test."""
    with admin.catalog.transaction() as db:
        if backend == "postgresql":
            db.execute(
                text(
                    "CREATE FUNCTION test_no_touch() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'touch refused by the test'; END $$"
                )
            )
            db.execute(
                text(
                    "CREATE TRIGGER test_no_touch BEFORE UPDATE OF last_used_at "
                    "ON login_sessions FOR EACH ROW EXECUTE FUNCTION test_no_touch()"
                )
            )
        else:
            db.execute(
                text(
                    "CREATE TRIGGER test_no_touch BEFORE UPDATE OF last_used_at "
                    "ON login_sessions BEGIN SELECT RAISE(ABORT, 'touch refused by the test'); END"
                )
            )
    yield
    with admin.catalog.transaction() as db:
        if backend == "postgresql":
            db.execute(text("DROP TRIGGER test_no_touch ON login_sessions"))
            db.execute(text("DROP FUNCTION test_no_touch()"))
        else:
            db.execute(text("DROP TRIGGER test_no_touch"))


def test_the_touch_is_not_part_of_the_write(clock, editor, admin, touch_fails):
    """A write with a touch due commits alone: the catalog is no participant of
    its transaction (a touch that fails neither fails nor undoes the write)."""
    logged_in_at = clock.now
    clock.advance(61)
    created = editor.post("/api/projects", {"name": "Alpha"}, status=201).json
    assert [p.id for p in tenant_rows(admin, "acme", Project)] == [created["id"]]
    clock.advance(61)
    editor.get("/api/projects")  # a read alike
    assert last_used(admin, "erin") == logged_in_at


# --- 5. no database password in a repr ---------------------------------------------


def test_no_database_password_in_the_login_repr(client, make_user, admin):
    secret_url = "postgresql://tenant_user:pa55-w0rd-s3cret@db.example:5432/tenant_far"
    with admin.catalog.transaction() as db:
        far = Tenant(name="far", display_name="Far Away", status="active", db_url=secret_url)
        db.add(far)
        db.flush()
        far_id = far.id
    user_id = make_user("alice")
    with admin.catalog.transaction() as db:
        db.add(Membership(user_id=user_id, tenant_id=far_id, role="admin"))
    client.login("alice", tenant="far")
    token, _, _ = client.test_app.cookies[COOKIE].rpartition(".")
    with admin.catalog.engine.connect() as connection:
        login = load_login(
            connection,
            tokens.token_hash(token),
            datetime.now(UTC),
            admin.registry.tenantapp_settings,
        )
    assert isinstance(login, Login) and isinstance(login.tenant, TenantAccess)
    assert login.tenant.db_url == secret_url  # still there for the code...
    for shown in (repr(login), str(login), repr(login.tenant), f"{login!r}"):
        assert "pa55-w0rd-s3cret" not in shown, shown  # ...never in a log line
        assert "far" in shown


def test_logging_in_again_over_a_session_with_a_touch_due(clock, editor, admin):
    """The login view opens its catalog transaction before it reads the old
    session: the old session's touch must not wait on it (SQLite: one writer)."""
    old_cookie = editor.test_app.cookies[COOKIE]
    clock.advance(61)
    editor.login("erin")
    assert editor.test_app.cookies[COOKIE] != old_cookie
    (session,) = sessions_of(admin, "erin")
    assert session.created_at == clock.now
    editor.get("/api/me")
