"""make bench: tenantapp under production.ini settings, end to end, on loopback.

    .venv/bin/python bench/run_bench.py [--compare]      (or: COMPARE=1 make bench)

1. starts a throwaway PostgreSQL cluster (tests/pg_cluster.py) on 127.0.0.1;
2. sets up the catalog, tenants acme and globex, users alice (editor of acme)
   and bob (editor of globex) with ``tenantapp-admin production.ini ...``;
3. serves production.ini with ``pserve`` (waitress, threads = 8) on a free port;
4. measures login (argon2 hashing included), creates 10 projects and 1000
   tasks per tenant through the API (measuring POST /api/tasks), walks the
   1000 tasks page by page, times the first request to a tenant created while
   the server runs, and runs ``wrk -t2 -c32 -d10s --latency --timeout 2s``
   on GET /api/tasks?limit=50 alternating the two users; reads the server's
   peak memory;
4b. the floor in the same run (``floor.py`` of ../shared/bench on its own
   seeded cluster, ``pg.sh`` + ``seed.sh``): floor and app alternate under the
   same wrk load, and for each the server's CPU per request (utime + stime
   from /proc/PID/stat around the load, divided by the requests), PostgreSQL's
   (the cluster's postmaster and its children), and the in-process CPU per
   request (one thread, no server: ``time.process_time()`` over calls of the
   WSGI callable, in a process of its own) are printed one per line;
5. with --compare or COMPARE=1, runs ../shared/bench/compare.sh (the floor
   comparison, ~75 s) against the same server, when that kit exists;
6. stops the server, grows the fleet to 100 tenants and times
   ``tenant migrate --all`` with --jobs 1 and --jobs 4;
7. prints one table of every figure.

Everything it starts (the cluster, the server, wrk, CLI processes) is stopped
by its own handle on success, on failure, on Ctrl-C and on its own time
limit. Exit status: 0; 1 when a step failed, the load saw non-2xx answers or
socket errors, or the app misbehaved (reported in !!! lines, e.g. a tenant
that ``tenant migrate`` could not migrate); 130 when interrupted.
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INI = ROOT / "production.ini"
# The floor kit beside the checkout (../shared/bench), or wherever BENCH_KIT says.
SHARED_BENCH = Path(os.environ.get("BENCH_KIT") or ROOT.parent / "shared" / "bench")
OWN_LUA = Path(__file__).resolve().parent / "alternate_cookies.lua"

sys.path.insert(0, str(ROOT / "tests"))
from pg_cluster import ClusterError, PostgresCluster, free_port  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from move_bench import measure_project_move  # noqa: E402

TENANTS = ("acme", "globex")
USERS = {"alice": "acme", "bob": "globex"}
COLD_TENANT, COLD_USER = "initech", "carol"
PROJECTS_PER_TENANT = 10
TASKS_PER_TENANT = 1000
SEQUENTIAL_TASKS_PER_TENANT = 100  # created one at a time: latency without queueing
SEED_THREADS_PER_TENANT = 2
LOGIN_SAMPLES = 10
PAGE_WALKS = 3
LOAD_PATH = "/api/tasks?limit=50"
WRK_THREADS, WRK_CONNECTIONS, WRK_SECONDS, WARMUP_SECONDS = 2, 32, 10, 2
LOAD_ROUNDS = 2  # floor, app, floor, app: each figure is the median of the rounds
INPROCESS_CALLS, INPROCESS_REPEATS = 2000, 5  # in-process CPU: median of 5 x 2000 calls
# The floor (../shared/bench): its cluster, its seeded sessions, its venv (else ours).
FLOOR_PG_DATA, FLOOR_PG_PORT = Path("/tmp/tenantapp-floor-pg/data"), 55440
FLOOR_COOKIES = ("session=bench-acme-session", "session=bench-globex-session")
FLOOR_VENV_PYTHON = Path("/tmp/tenantapp-floor-venv/bin/python")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FLEET_SIZE = 100
LIFE_CREATES = 20  # tenant create, timed one by one
LIFE_TASKS = 10_000  # the tenant exported, imported and deleted
TIME_LIMIT_S = 420  # the whole run, compare.sh excluded
COMPARE_TIME_LIMIT_S = 240
HTTP_TIMEOUT_S = 15


class BenchError(Exception):
    """A step failed; the message says what came back."""


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or the time limit: stop, clean up, report what was measured."""


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values, pct):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- CPU per request -----------------------------------------------------------


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (index 0: the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid):
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cluster_cpu_seconds(postmaster_pid):
    """CPU seconds of a PostgreSQL cluster: the postmaster, its live children
    (backends, background workers), and the children it has reaped."""
    fields = _stat_fields(postmaster_pid)
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile (its time is in the postmaster's cutime)
        if child[1] == str(postmaster_pid):
            ticks += int(child[11]) + int(child[12])
    return ticks / CLOCK_TICKS


def postmaster_pid(datadir):
    """The postmaster's pid, from ``DATADIR/postmaster.pid``."""
    return int(Path(datadir, "postmaster.pid").read_text().split()[0])


def wsgi_cpu_per_request(app, path, cookies, calls, repeats):
    """CPU µs per call of the WSGI callable ``app`` on ``GET path``, in this
    thread, with no server: ``time.process_time()`` over ``calls`` calls (the
    cookies in turn), ``repeats`` times after a warm-up. Returns the list of
    the repeats' figures. Every answer must be 200 (a fast error would flatter)."""
    import io

    route, _, query = path.partition("?")
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call(i):
        environ = dict(base, HTTP_COOKIE=cookies[i % len(cookies)])
        environ["wsgi.input"] = io.BytesIO(b"")
        body = b"".join(app(environ, start_response))
        return body

    for cookie_index in range(len(cookies)):
        body = call(cookie_index)
        items = json.loads(body).get("items") if statuses[-1].startswith("200") else None
        if items is None or len(items) != 50:
            raise BenchError(f"in-process GET {path}: {statuses[-1]} {body[:200]!r}")
    for i in range(calls // 4):
        call(i)
    figures = []
    for _ in range(repeats):
        del statuses[:]
        started = time.process_time()
        for i in range(calls):
            call(i)
        figures.append((time.process_time() - started) / calls * 1e6)
        if any(not status.startswith("200") for status in statuses):
            raise BenchError(f"in-process GET {path}: answers other than 200: {set(statuses)}")
    return figures


def inprocess_main(which, cookie_a, cookie_b):
    """``run_bench.py --inprocess app|floor A B``: one JSON line, the figures of
    :func:`wsgi_cpu_per_request` for the app (production.ini, its environment
    variables set by the caller) or for the floor (``floor.py`` of the kit)."""
    if which == "floor":
        sys.path.insert(0, str(SHARED_BENCH))
        import floor

        app = floor.app
    else:
        import warnings

        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from pyramid.paster import get_app

        app = get_app(str(INI))
    figures = wsgi_cpu_per_request(
        app, LOAD_PATH, (cookie_a, cookie_b), INPROCESS_CALLS, INPROCESS_REPEATS
    )
    print(json.dumps(figures))
    return 0


def median_and_rounds(values, unit="", digits=0):
    """``"812 µs (rounds 805, 819)"``: the median, then every value."""
    text = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{statistics.median(values):.{digits}f}{unit} ({text})"


# --- HTTP ---------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body, ms):
        self.status = status
        self.headers = headers
        self.body = body
        self.ms = ms

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self):
        return f"HTTP {self.status}: {self.body[:300].decode('utf-8', 'replace')}"


class Client:
    """One keep-alive connection to the server; one per thread."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.last_used = 0.0

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, cookie=None, csrf=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if cookie:
            headers["Cookie"] = cookie
        if csrf:
            headers["X-CSRF-Token"] = csrf
        if self.conn is not None and time.monotonic() - self.last_used > 20:
            self.close()  # never send a POST on a connection the server may have dropped
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S
                )
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or method != "GET":
                    raise
                continue
            ms = (time.perf_counter() - started) * 1000
            self.last_used = time.monotonic()
            if response.will_close:
                self.close()
            return Response(response.status, response.msg, payload, ms)
        raise AssertionError("unreachable")


def expect(response, status, what):
    if response.status != status:
        raise BenchError(f"{what}: expected HTTP {status}, got {response.describe()}")
    return response


class Login:
    def __init__(self, cookie, csrf, secure):
        self.cookie = cookie
        self.csrf = csrf
        self.secure = secure


def log_in(client, username, password, tenant=None):
    body = {"username": username, "password": password}
    if tenant:
        body["tenant"] = tenant
    response = expect(client.request("POST", "/api/login", body), 200, f"login of {username}")
    set_cookies = response.headers.get_all("Set-Cookie") or []
    if not set_cookies:
        raise BenchError(f"login of {username} set no cookie")
    # The raw name=value parts: production.ini marks the cookie Secure, which a
    # cookie jar would refuse to send over plain http://127.0.0.1.
    cookie = "; ".join(c.split(";", 1)[0].strip() for c in set_cookies)
    secure = all("secure" in c.lower().split(";", 1)[-1] for c in set_cookies)
    me = response.json() or {}
    chosen = (me.get("tenant") or {}).get("name")
    if tenant and chosen != tenant:
        raise BenchError(f"login of {username} chose tenant {chosen!r}, not {tenant!r}")
    return Login(cookie, me.get("csrf_token"), secure), response.ms


# --- the run ------------------------------------------------------------------


def wait_until_answering(process, client, answers, what, timeout=30):
    """Until ``answers(client)`` is true (a 200 from the server ``process``
    started); BenchError if the process exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise BenchError(f"{what} exited with status {process.returncode} at start")
            with contextlib.suppress(OSError):  # not listening yet
                if answers(client):
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not answer 200 within {timeout} s")
            time.sleep(0.1)
    finally:
        client.close()


class Bench:
    def __init__(self, compare):
        self.compare = compare
        self.results = []  # (section, label, value)
        self.notes = []
        self.problems = []
        self.cluster = None
        self.server = None
        self.server_log = None
        self.workdir = Path(tempfile.mkdtemp(prefix="tenantapp-bench-"))
        self.env = None
        self.port = None
        self.passwords = {}
        self.logins = {}
        self.floor = None  # floor.py, when the kit is there
        self.floor_log = None
        self.floor_port = None
        self.floor_python = Path(sys.executable)
        self.floor_pg_started = False  # pg.sh start was ours: stopped at the end
        self.children = set()  # Popen objects of running helper processes
        self.children_lock = threading.Lock()

    def record(self, section, label, value):
        self.results.append((section, label, value))
        log(f"  {label}: {value}")

    # --- processes ------------------------------------------------------------

    def run(self, args, *, stdin=None, timeout=120, what=None, check=True):
        """Run a command to completion (killed on timeout or interruption).

        Returns (stdout, stderr); with check=False (status, stdout, stderr).
        """
        what = what or " ".join(str(a) for a in args[:5])
        process = subprocess.Popen(  # noqa: S603 - our own executables, fixed arguments
            [str(a) for a in args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it ourselves
        )
        with self.children_lock:
            self.children.add(process)
        try:
            out, err = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(process)
            raise BenchError(f"{what}: no result within {timeout} s") from None
        finally:
            if process.poll() is None:
                self.kill(process)
            with self.children_lock:
                self.children.discard(process)
        if not check:
            return process.returncode, out, err
        if process.returncode != 0:
            detail = (err or out).strip().splitlines()
            raise BenchError(
                f"{what}: exit {process.returncode}: {detail[-1] if detail else '(no output)'}"
            )
        return out, err

    @staticmethod
    def kill(process, grace=5):
        if process.poll() is not None:
            return
        try:
            process.terminate()
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        except ProcessLookupError:
            return  # it exited between the poll and the signal

    def admin(self, *args, stdin=None, timeout=120):
        out, _ = self.run(
            [BIN / "tenantapp-admin", INI, *args],
            stdin=stdin,
            timeout=timeout,
            what="tenantapp-admin " + " ".join(args),
        )
        return out

    # --- steps ----------------------------------------------------------------

    def start_cluster(self):
        log("starting a throwaway PostgreSQL cluster on 127.0.0.1")
        self.cluster = PostgresCluster()
        self.cluster.start()
        port = self.cluster.port
        self.env = dict(
            os.environ,
            TENANTAPP_CATALOG_URL=f"postgresql://postgres@127.0.0.1:{port}/catalog",
            TENANTAPP_TENANT_URL_TEMPLATE=f"postgresql://postgres@127.0.0.1:{port}/tenant_{{name}}",
            TENANTAPP_SECRET=secrets.token_urlsafe(36),  # 48 characters
            PYTHONUNBUFFERED="1",
        )
        log(f"  cluster on port {port}, data in {self.cluster.base}")

    def set_up_catalog(self):
        log("catalog, tenants and users with tenantapp-admin production.ini ...")
        self.admin("init")
        for tenant in TENANTS:
            self.admin("tenant", "create", tenant, "--display-name", tenant.capitalize())
        for username, tenant in USERS.items():
            self.passwords[username] = secrets.token_urlsafe(18)
            self.admin(
                "user",
                "create",
                username,
                "--password-stdin",
                stdin=self.passwords[username] + "\n",
            )
            self.admin("user", "grant", username, tenant, "--role", "editor")

    def start_server(self):
        self.port = free_port()
        self.server_log = open(self.workdir / "server.log", "w+b")  # closed at the end
        log(f"serving production.ini with pserve on 127.0.0.1:{self.port} (waitress, threads = 8)")
        self.server = subprocess.Popen(  # noqa: S603 - our own executable, fixed arguments
            [str(BIN / "pserve"), str(INI), f"http_port={self.port}"],
            stdin=subprocess.DEVNULL,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,
        )
        wait_until_answering(
            self.server,
            Client(self.port),
            lambda client: client.request("GET", "/healthz").status == 200,
            "pserve (GET /healthz)",
        )
        log(f"  server pid {self.server.pid} answers /healthz")

    def measure_login(self):
        log(f"login: {LOGIN_SAMPLES} logins, alice and bob in turn (argon2 verification)")
        client = Client(self.port)
        samples = []
        names = list(USERS)
        for i in range(LOGIN_SAMPLES):
            username = names[i % len(names)]
            _, ms = log_in(client, username, self.passwords[username], USERS[username])
            samples.append(ms)
        # The sessions the rest of the run uses: fresh ones, one per user.
        for username, tenant in USERS.items():
            self.logins[username], _ = log_in(client, username, self.passwords[username], tenant)
        client.close()
        self.record("login", "POST /api/login median", f"{statistics.median(samples):.1f} ms")
        self.record(
            "login", "POST /api/login min / max", f"{min(samples):.1f} / {max(samples):.1f} ms"
        )
        if not all(login.secure for login in self.logins.values()):
            self.problems.append("the session cookie is not marked Secure under production.ini")

    def seed(self):
        log(
            f"seeding {PROJECTS_PER_TENANT} projects and {TASKS_PER_TENANT} tasks per tenant "
            "through the API"
        )
        client = Client(self.port)
        projects = {}
        for username, tenant in USERS.items():
            login = self.logins[username]
            ids = []
            for p in range(PROJECTS_PER_TENANT):
                body = {
                    "name": f"{tenant} project {p + 1}",
                    "description": f"Bench project {p + 1}",
                }
                response = expect(
                    client.request("POST", "/api/projects", body, login.cookie, login.csrf),
                    201,
                    f"POST /api/projects for {tenant}",
                )
                ids.append(response.json()["id"])
            projects[username] = ids

        statuses = ("open", "in_progress", "done")
        assignees = ("ann", "ben", "cy", None)

        def task_body(tenant, username, i):
            return {
                "project_id": projects[username][i % PROJECTS_PER_TENANT],
                "title": f"{tenant} task {i + 1}",
                "status": statuses[i % 3],
                "assignee": assignees[i % 4],
                "due_date": f"2026-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}" if i % 5 else None,
            }

        # One at a time: the latency of the request itself.
        sequential = []
        for username, tenant in USERS.items():
            login = self.logins[username]
            for i in range(SEQUENTIAL_TASKS_PER_TENANT):
                response = expect(
                    client.request(
                        "POST",
                        "/api/tasks",
                        task_body(tenant, username, i),
                        login.cookie,
                        login.csrf,
                    ),
                    201,
                    f"POST /api/tasks for {tenant}",
                )
                sequential.append(response.ms)
        client.close()

        # The rest with a few client threads (faster; latencies include queueing).
        concurrent, errors = [], []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(username, tenant, indexes):
            own = Client(self.port)
            login = self.logins[username]
            try:
                for i in indexes:
                    if stop.is_set():
                        return
                    response = own.request(
                        "POST",
                        "/api/tasks",
                        task_body(tenant, username, i),
                        login.cookie,
                        login.csrf,
                    )
                    with lock:
                        if response.status == 201:
                            concurrent.append(response.ms)
                        else:
                            errors.append(f"POST /api/tasks for {tenant}: {response.describe()}")
                            stop.set()
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                with lock:
                    errors.append(f"POST /api/tasks for {tenant}: {type(exc).__name__}: {exc}")
                stop.set()
            finally:
                own.close()

        threads = []
        for username, tenant in USERS.items():
            rest = range(SEQUENTIAL_TASKS_PER_TENANT, TASKS_PER_TENANT)
            for t in range(SEED_THREADS_PER_TENANT):
                indexes = list(rest)[t::SEED_THREADS_PER_TENANT]
                threads.append(
                    threading.Thread(target=worker, args=(username, tenant, indexes), daemon=True)
                )
        started = time.perf_counter()
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            stop.set()
        elapsed = time.perf_counter() - started
        if errors:
            raise BenchError(f"{len(errors)} task creation(s) failed; first: {errors[0]}")
        section = "POST /api/tasks"
        self.record(
            section,
            f"one client, {len(sequential)} creates: median / p99",
            f"{statistics.median(sequential):.1f} / {percentile(sequential, 99):.1f} ms",
        )
        n_threads = len(threads)
        self.record(
            section,
            f"{n_threads} clients, {len(concurrent)} creates: median / p99",
            f"{statistics.median(concurrent):.1f} / {percentile(concurrent, 99):.1f} ms "
            f"({len(concurrent) / elapsed:.0f} creates/s)",
        )

    def walk(self, client, login):
        """Every task of the login's tenant, page by page: (items, pages, ms)."""
        items, pages, total_ms = [], 0, 0.0
        path = "/api/tasks?limit=50"
        while True:
            response = expect(client.request("GET", path, cookie=login.cookie), 200, f"GET {path}")
            pages += 1
            total_ms += response.ms
            page = response.json()
            items.extend(page["items"])
            if not page["next"]:
                return items, pages, total_ms
            if pages > TASKS_PER_TENANT:
                raise BenchError("the page walk does not end")
            path = f"/api/tasks?limit=50&after={page['next']}"

    def measure_page_walk(self):
        log(f"page walk: every task with limit=50, following next ({PAGE_WALKS} walks per user)")
        client = Client(self.port)
        times = []
        pages = 0
        for username, tenant in USERS.items():
            for _ in range(PAGE_WALKS):
                started = time.perf_counter()
                items, pages, _ = self.walk(client, self.logins[username])
                times.append((time.perf_counter() - started) * 1000)
                ids = [item["id"] for item in items]
                if len(ids) != TASKS_PER_TENANT or ids != sorted(set(ids)):
                    raise BenchError(
                        f"the walk of {tenant} returned {len(ids)} tasks "
                        f"({len(set(ids))} distinct, in order: {ids == sorted(ids)}), "
                        f"expected {TASKS_PER_TENANT} once each in id order"
                    )
                strangers = [i["title"] for i in items if not i["title"].startswith(tenant + " ")]
                if strangers:
                    raise BenchError(
                        f"{tenant}'s walk returned another tenant's tasks: {strangers[:3]}"
                    )
        client.close()
        self.record(
            "page walk",
            f"{TASKS_PER_TENANT} tasks in {pages} pages: median of {len(times)} walks",
            f"{statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f})",
        )

    def measure_cold_tenant(self):
        log(f"cold tenant: tenant create {COLD_TENANT} while the server runs, first GET /api/tasks")
        self.admin("tenant", "create", COLD_TENANT, "--display-name", "Initech")
        self.passwords[COLD_USER] = secrets.token_urlsafe(18)
        self.admin("user", "create", COLD_USER, "--password-stdin", stdin=self.passwords[COLD_USER])
        self.admin("user", "grant", COLD_USER, COLD_TENANT, "--role", "editor")
        client = Client(self.port)
        login, _ = log_in(client, COLD_USER, self.passwords[COLD_USER], COLD_TENANT)
        samples = []
        for _ in range(6):
            response = expect(
                client.request("GET", LOAD_PATH, cookie=login.cookie),
                200,
                f"GET {LOAD_PATH} in the new tenant {COLD_TENANT}",
            )
            samples.append(response.ms)
        client.close()
        self.record(
            "cold tenant",
            f"first GET {LOAD_PATH} in a tenant new to the server",
            f"{samples[0]:.1f} ms",
        )
        self.record(
            "cold tenant",
            "second / median of next 5",
            f"{samples[1]:.1f} / {statistics.median(samples[1:]):.1f} ms (empty tenant)",
        )

    def check_load_path(self):
        client = Client(self.port)
        for username in USERS:
            response = client.request("GET", LOAD_PATH, cookie=self.logins[username].cookie)
            items = (response.json() or {}).get("items") if response.status == 200 else None
            if items is None or len(items) != 50:
                raise BenchError(
                    f"GET {LOAD_PATH} as {username} must answer 200 with 50 items; "
                    f"got {response.describe()}"
                )
        client.close()

    def ensure_wrk(self):
        if shutil.which("wrk"):
            return shutil.which("wrk")
        if os.geteuid() != 0:
            raise BenchError("wrk is missing; install it as root: apt-get install -y wrk")
        log("installing wrk with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        for command in (install, ["apt-get", "update", "-q"], install):
            subprocess.run(command, env=env, capture_output=True, timeout=240, check=False)  # noqa: S603,S607
            if shutil.which("wrk"):
                break
        if not shutil.which("wrk"):
            raise BenchError("could not install wrk with apt-get")
        return shutil.which("wrk")

    def wrk(self, wrk, lua, seconds, port=None, cookies=None):
        alice, bob = cookies or [self.logins[u].cookie for u in USERS]
        env = dict(self.env, BENCH_COOKIE_A=alice, BENCH_COOKIE_B=bob, BENCH_PATH=LOAD_PATH)
        command = [
            wrk,
            f"-t{WRK_THREADS}",
            f"-c{WRK_CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "2s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port or self.port}{LOAD_PATH}",
        ]
        saved, self.env = self.env, env
        try:
            out, _ = self.run(command, timeout=seconds + 30, what="wrk")
        finally:
            self.env = saved
        return out

    @staticmethod
    def parse_wrk(out):
        def ms(text):
            value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
            return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

        rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
        total = re.search(r"^\s+(\d+) requests in", out, re.M)
        p50 = re.search(r"^\s+50(?:\.0+)?%\s+(\S+)", out, re.M)
        p99 = re.search(r"^\s+99(?:\.0+)?%\s+(\S+)", out, re.M)
        if not (rps and total and p50 and p99):
            raise BenchError(f"no result in wrk's output:\n{out[-600:]}")
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        sock = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
        )
        return {
            "rps": float(rps.group(1)),
            "requests": int(total.group(1)),
            "p50": ms(p50.group(1)),
            "p99": ms(p99.group(1)),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "sockerr": sum(map(int, sock.groups())) if sock else 0,
            "sock_detail": sock.group(0) if sock else "none",
        }

    # --- the floor, in the same run ---------------------------------------------

    def start_floor(self):
        """The floor's cluster (started unless running), seeded, and ``floor.py``
        on a free port. Returns False (with a note) when the kit is missing."""
        floor_py = SHARED_BENCH / "floor.py"
        if not (floor_py.is_file() and (SHARED_BENCH / "pg.sh").is_file()):
            self.notes.append(f"the floor was not measured: no {floor_py} (set BENCH_KIT=DIR)")
            log(self.notes[-1])
            return False
        pg_sh = str(SHARED_BENCH / "pg.sh")
        status, _, _ = self.run([pg_sh, "status"], check=False, what="pg.sh status")
        if status != 0:
            self.run([pg_sh, "start"], timeout=120, what="pg.sh start")
            self.floor_pg_started = True
        self.run([str(SHARED_BENCH / "seed.sh")], timeout=120, what="seed.sh")
        python = FLOOR_VENV_PYTHON if FLOOR_VENV_PYTHON.exists() else Path(sys.executable)
        self.floor_python = python
        self.floor_port = free_port()
        self.floor_log = open(self.workdir / "floor.log", "w+b")  # closed at the end
        self.floor = subprocess.Popen(  # noqa: S603 - the kit's program, fixed arguments
            [str(python), str(floor_py), "--port", str(self.floor_port)],
            stdin=subprocess.DEVNULL,
            stdout=self.floor_log,
            stderr=subprocess.STDOUT,
            cwd=SHARED_BENCH,
            start_new_session=True,
        )
        wait_until_answering(
            self.floor,
            Client(self.floor_port),
            lambda client: client.request("GET", LOAD_PATH, cookie=FLOOR_COOKIES[0]).status == 200,
            f"floor.py (GET {LOAD_PATH})",
        )
        log(
            f"  floor.py pid {self.floor.pid} on 127.0.0.1:{self.floor_port} ({python}), "
            f"its cluster {'started' if self.floor_pg_started else 'already running'}"
        )
        return True

    def stop_floor(self):
        if self.floor is not None and self.floor.returncode is None:
            self.kill(self.floor, grace=10)
            log(f"floor.py stopped (pid {self.floor.pid})")
        if self.floor_pg_started:
            self.floor_pg_started = False
            self.run([str(SHARED_BENCH / "pg.sh"), "stop"], check=False, what="pg.sh stop")
            log("floor cluster stopped")

    def load_run(self, wrk, lua, target, seconds):
        """One wrk run against ``target``, with its server's and cluster's CPU."""
        name, port, cookies, pid, pg_pid = target
        server_before, pg_before = process_cpu_seconds(pid), cluster_cpu_seconds(pg_pid)
        started = time.monotonic()
        out = self.wrk(wrk, lua, seconds, port=port, cookies=cookies)
        elapsed = time.monotonic() - started
        server_cpu = process_cpu_seconds(pid) - server_before
        pg_cpu = cluster_cpu_seconds(pg_pid) - pg_before
        with (self.workdir / "wrk.txt").open("a") as f:
            f.write(f"--- {name}\n{out}\n")
        result = self.parse_wrk(out)
        result["server_us"] = server_cpu / result["requests"] * 1e6
        result["pg_us"] = pg_cpu / result["requests"] * 1e6
        result["server_core"] = server_cpu / elapsed
        time.sleep(1)  # let the server drain before the other one is loaded
        return result

    def inprocess(self, which, cookies):
        """In-process CPU µs per request of the app or the floor (a process of its own)."""
        python = self.floor_python if which == "floor" else Path(sys.executable)
        out, _ = self.run(
            [python, Path(__file__).resolve(), "--inprocess", which, *cookies],
            timeout=300,
            what=f"in-process CPU of the {which}",
        )
        return json.loads(out.strip().splitlines()[-1])

    def settle_databases(self, floor):
        """VACUUM ANALYZE the databases under load (just seeded, both clusters), so
        that no autovacuum runs during the load and counts as PostgreSQL's CPU."""
        import psycopg2

        urls = [self.env["TENANTAPP_CATALOG_URL"]]
        urls += [self.env["TENANTAPP_TENANT_URL_TEMPLATE"].format(name=t) for t in TENANTS]
        if floor:
            urls += [
                f"postgresql://postgres@127.0.0.1:{FLOOR_PG_PORT}/{database}"
                for database in ("catalog", "tenant_acme", "tenant_globex")
            ]
        for url in urls:
            with contextlib.closing(psycopg2.connect(url)) as connection:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE")
        log(f"  VACUUM ANALYZE of the {len(urls)} databases under load")

    def measure_load(self):
        wrk = self.ensure_wrk()
        shared_lua = SHARED_BENCH / "tasks.lua"
        lua = shared_lua if shared_lua.is_file() else OWN_LUA
        self.check_load_path()
        app_cookies = [self.logins[u].cookie for u in USERS]
        targets = [
            ("app", self.port, app_cookies, self.server.pid, postmaster_pid(self.cluster.datadir))
        ]
        if self.start_floor():
            floor_pg = postmaster_pid(FLOOR_PG_DATA)
            targets.insert(0, ("floor", self.floor_port, FLOOR_COOKIES, self.floor.pid, floor_pg))
        self.settle_databases(floor="floor" in [t[0] for t in targets])
        log(
            f"load: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --latency "
            f"--timeout 2s -s {lua} GET {LOAD_PATH}, two users in turn; "
            f"{' then '.join(t[0] for t in targets)}, {LOAD_ROUNDS} rounds "
            f"({WARMUP_SECONDS} s warm-up each first, not counted)"
        )
        for _name, port, cookies, _, _ in targets:
            self.wrk(wrk, lua, WARMUP_SECONDS, port=port, cookies=cookies)
        time.sleep(1)
        runs = {target[0]: [] for target in targets}
        for _ in range(LOAD_ROUNDS):
            for target in targets:
                runs[target[0]].append(self.load_run(wrk, lua, target, WRK_SECONDS))
        app = runs["app"]
        section = f"GET {LOAD_PATH} under wrk -c{WRK_CONNECTIONS}"
        requests = sum(r["requests"] for r in app)
        self.record(
            section,
            "requests/s",
            f"{median_and_rounds([r['rps'] for r in app], digits=1)}, {requests} requests",
        )
        self.record(
            section,
            "p50 / p99",
            f"{statistics.median(r['p50'] for r in app):.1f} / "
            f"{statistics.median(r['p99'] for r in app):.1f} ms",
        )
        non2xx = sum(r["non2xx"] for r in app)
        sockerr = sum(r["sockerr"] for r in app)
        self.record(section, "non-2xx", str(non2xx))
        self.record(section, "socket errors", "; ".join(r["sock_detail"] for r in app))
        if non2xx:
            self.problems.append(f"{non2xx} of {requests} responses under load were not 2xx")
        if sockerr:
            self.problems.append(f"socket errors under load: {app[-1]['sock_detail']}")
        self.check_load_path()  # the sessions still work after the load

        section = "CPU per request, app and floor in this run (µs; median, then each round)"
        inprocess = {"app": self.inprocess("app", app_cookies)}
        if "floor" in runs:
            inprocess["floor"] = self.inprocess("floor", FLOOR_COOKIES)
            floor = runs["floor"]
            self.record(
                section,
                "floor requests/s, p99",
                f"{median_and_rounds([r['rps'] for r in floor], digits=1)}, p99 "
                f"{statistics.median(r['p99'] for r in floor):.1f} ms",
            )
            if any(r["non2xx"] or r["sockerr"] for r in floor):
                self.problems.append("the floor answered non-2xx or had socket errors")
        for name in runs:
            self.record(
                section,
                f"{name} server CPU per request under wrk",
                f"{median_and_rounds([r['server_us'] for r in runs[name]], ' µs')}; "
                f"server at {statistics.median(r['server_core'] for r in runs[name]):.0%} "
                "of a core",
            )
        for name in runs:
            self.record(
                section,
                f"{name} PostgreSQL CPU per request under wrk",
                median_and_rounds([r["pg_us"] for r in runs[name]], " µs"),
            )
        for name in runs:
            self.record(
                section,
                f"{name} in-process CPU per request (1 thread, no server)",
                median_and_rounds(inprocess[name], " µs")
                + f", {INPROCESS_REPEATS} x {INPROCESS_CALLS} calls",
            )
        if "floor" in runs:

            def ratio(values_app, values_floor):
                return statistics.median(values_app) / statistics.median(values_floor)

            floor = runs["floor"]
            self.record(
                section,
                "app / floor: req/s; server CPU; PostgreSQL CPU; in-process CPU",
                f"{ratio([r['rps'] for r in app], [r['rps'] for r in floor]):.2f}; "
                f"{ratio([r['server_us'] for r in app], [r['server_us'] for r in floor]):.2f}; "
                f"{ratio([r['pg_us'] for r in app], [r['pg_us'] for r in floor]):.2f}; "
                f"{ratio(inprocess['app'], inprocess['floor']):.2f}",
            )
        self.stop_floor()

    def measure_memory(self):
        status = Path(f"/proc/{self.server.pid}/status").read_text()
        fields = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.M))
        self.record(
            "server process",
            "peak RSS (VmHWM) / RSS now",
            f"{int(fields['VmHWM']) / 1024:.1f} / {int(fields['VmRSS']) / 1024:.1f} MiB",
        )

    def run_compare(self, run=1, runs=1):
        script = SHARED_BENCH / "compare.sh"
        if not script.is_file():
            self.notes.append(
                f"floor comparison skipped: {script} does not exist (set BENCH_KIT=DIR)"
            )
            log(self.notes[-1])
            return
        alice, bob = (self.logins[u].cookie for u in USERS)
        log(f"floor comparison: {script} (about 75 s)")
        command = [
            str(script),
            "--app-url",
            f"http://127.0.0.1:{self.port}",
            "--cookie-a",
            alice,
            "--cookie-b",
            bob,
        ]
        process = subprocess.Popen(  # noqa: S603 - the kit's script, fixed arguments
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=SHARED_BENCH,
            start_new_session=True,
        )
        with self.children_lock:
            self.children.add(process)
        lines = []
        try:
            for line in process.stdout:
                print("    | " + line.rstrip(), flush=True)
                lines.append(line.rstrip())
            process.wait(30)
        finally:
            if process.poll() is None:
                # Its own trap stops the floor server and cluster on SIGTERM.
                self.kill(process, grace=30)
            with self.children_lock:
                self.children.discard(process)
        ratio = next((ln for ln in reversed(lines) if ln.startswith("app/floor")), None)
        label = "compare.sh" if runs == 1 else f"compare.sh, run {run} of {runs}"
        self.record("floor comparison", label, ratio or "(no ratio line)")
        if process.returncode != 0:
            self.problems.append(f"compare.sh exited with status {process.returncode}")

    def stop_server(self):
        if self.server is not None and self.server.returncode is None:
            self.kill(self.server, grace=10)
            log(f"server stopped (pid {self.server.pid}, status {self.server.returncode})")

    def measure_fleet(self):
        # acme, globex, the cold tenant and the project move's two, as the catalog says
        existing = len(json.loads(self.admin("tenant", "list", "--json")))
        extra = [f"fleet{n:03d}" for n in range(FLEET_SIZE - existing)]
        log(f"fleet: creating {len(extra)} more tenants (tenantapp.cli.Admin, in this process)")
        started = time.perf_counter()
        self.create_tenants_in_process(extra)
        self.notes.append(
            f"{len(extra)} tenants created in-process with tenantapp.cli.Admin.tenant_create in "
            f"{time.perf_counter() - started:.1f} s ({FLEET_SIZE} tenants in all)"
        )
        log("  " + self.notes[-1])
        section = f"tenant migrate ({FLEET_SIZE} tenants, schemas already at head)"
        started = time.perf_counter()
        self.admin("tenant", "migrate", TENANTS[0], timeout=60)
        self.record(
            section, "migrate 1 tenant (process start-up)", f"{time.perf_counter() - started:.2f} s"
        )
        for jobs in (1, 4):
            command = ["tenant", "migrate", "--all", "--jobs", str(jobs)]
            log("tenantapp-admin production.ini " + " ".join(command))
            started = time.perf_counter()
            status, out, err = self.run(
                [BIN / "tenantapp-admin", INI, *command],
                timeout=180,
                what="tenantapp-admin " + " ".join(command),
                check=False,
            )
            elapsed = time.perf_counter() - started
            summary = out.strip().splitlines()[-1] if out.strip() else "(no summary)"
            self.record(section, f"migrate --all --jobs {jobs}", f"{elapsed:.2f} s ({summary})")
            if status == 0 and summary.startswith(f"{FLEET_SIZE} of {FLEET_SIZE} "):
                continue
            # Report the app's failure precisely and go on: it is a finding.
            failed = re.findall(r"^FAILED (\S+): (.*)$", err, re.M)
            reasons = {}
            for _, reason in failed:
                reasons[reason] = reasons.get(reason, 0) + 1
            last = err.strip().splitlines()[-1] if err.strip() else "(nothing on stderr)"
            self.problems.append(
                f"tenantapp-admin production.ini {' '.join(command)}: exit {status}; "
                f"{len(failed)} of {FLEET_SIZE} tenants FAILED, by reason as the CLI prints it: "
                + ", ".join(f"{reason} x{n}" for reason, n in reasons.items())
                + f"; last stderr line: {last[:200]}"
            )
            log("  !!! " + self.problems[-1])
        self.notes.append(
            "tenant migrate times the fleet check: every schema is already at head (there is no "
            "downgrade to undo it), so each tenant costs a connection and a version check, no DDL"
        )

    def measure_tenant_life(self):
        """Issue 14: tenant create (template copy), export, import, move, delete."""
        section = "a tenant's life (tenantapp-admin, PostgreSQL)"
        log(f"tenant create x{LIFE_CREATES}, each a process of its own")
        whole = []
        for n in range(LIFE_CREATES):
            started = time.perf_counter()
            self.admin("tenant", "create", f"life{n:03d}")
            whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        self.admin("--help")
        start_up = time.perf_counter() - started
        self.record(
            section,
            f"tenant create, median of {LIFE_CREATES} (process start included)",
            f"{statistics.median(whole) * 1000:.0f} ms (tenantapp-admin --help alone: "
            f"{start_up * 1000:.0f} ms)",
        )
        work = self.create_tenants_in_process([f"lifein{n:03d}" for n in range(LIFE_CREATES)])
        self.record(
            section,
            f"tenant create, the database work (Admin.tenant_create in a running process), "
            f"median of {LIFE_CREATES}",
            f"{statistics.median(work) * 1000:.0f} ms",
        )
        self.fill_tenant("life000", LIFE_TASKS)
        dump = self.workdir / "life.json"
        started = time.perf_counter()
        self.admin("tenant", "export", "life000", str(dump))
        self.record(
            section,
            f"tenant export, {LIFE_TASKS} tasks",
            f"{time.perf_counter() - started:.2f} s ({dump.stat().st_size / 1e6:.1f} MB)",
        )
        started = time.perf_counter()
        self.admin("tenant", "import", "life001", str(dump))
        self.record(
            section, f"tenant import, {LIFE_TASKS} tasks", f"{time.perf_counter() - started:.2f} s"
        )
        moved_url = self.env["TENANTAPP_TENANT_URL_TEMPLATE"].format(name="life000_moved")
        started = time.perf_counter()
        said = self.admin("tenant", "move", "life000", "--url", moved_url, "--drop-old")
        refused = re.search(r"writes refused for ([0-9.]+) s", said)
        self.record(
            section,
            f"tenant move, {LIFE_TASKS} tasks (to another database, old one dropped)",
            f"{time.perf_counter() - started:.2f} s; writes refused for "
            f"{refused.group(1) if refused else '?'} s",
        )
        self.admin("tenant", "suspend", "life000")
        started = time.perf_counter()
        self.admin("tenant", "delete", "life000", "--yes")
        self.record(
            section,
            f"tenant delete ({LIFE_TASKS} tasks)",
            f"{(time.perf_counter() - started) * 1000:.0f} ms",
        )

    def fill_tenant(self, name, tasks):
        import psycopg2

        url = self.env["TENANTAPP_TENANT_URL_TEMPLATE"].format(name=name)
        with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cur:
            cur.execute(
                "INSERT INTO projects (name, name_key, description, created_at, updated_at, "
                "version) VALUES ('big', 'big', '', now(), now(), 1) RETURNING id"
            )
            project = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO tasks (project_id, title, title_key, status, assignee, created_at, "
                "updated_at, version) SELECT %s, 'task ' || n, 'task ' || n, 'open', 'someone', "
                "now(), now(), 1 FROM generate_series(1, %s) AS n",
                (project, tasks),
            )
            connection.commit()

    def create_tenants_in_process(self, names):
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("TENANTAPP_")})
        import io
        import warnings

        # Pyramid's own import of pkg_resources warns; not this run's business.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from pyramid.paster import bootstrap

        from tenantapp.cli import Admin

        with bootstrap(str(INI)) as env:
            admin = Admin(env["registry"], out=io.StringIO(), err=io.StringIO())
            durations = []
            try:
                for name in names:
                    started = time.perf_counter()
                    admin.tenant_create(name)
                    durations.append(time.perf_counter() - started)
                return durations
            finally:
                admin.directory.dispose_all()
                admin.catalog.dispose()

    def server_log_findings(self):
        if self.server_log is None:
            return []
        self.server_log.flush()
        self.server_log.seek(0)
        text = self.server_log.read().decode("utf-8", "replace")
        return [
            line
            for line in text.splitlines()
            if re.search(r"\b(ERROR|CRITICAL|WARNI?N?G?)\b|Traceback", line)
        ]

    def cleanup(self):
        with self.children_lock:
            children = list(self.children)
        for process in children:
            self.kill(process)
        self.stop_server()
        with contextlib.suppress(Exception):  # noqa: BLE001 - go on cleaning
            self.stop_floor()
        if self.cluster is not None:
            try:
                started = time.perf_counter()
                self.cluster.destroy()
                log(
                    f"PostgreSQL cluster stopped and removed ({self.cluster.base}) "
                    f"in {time.perf_counter() - started:.1f} s"
                )
            except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                log(f"could not remove the cluster in {self.cluster.base}: {exc}")

    # --- the report -----------------------------------------------------------

    def report(self, failure):
        print()
        print("=" * 78)
        print(
            f"tenantapp bench — production.ini, waitress threads=8, PostgreSQL 15 on loopback; "
            f"{os.cpu_count()} CPUs"
        )
        print("=" * 78)
        width = max((len(label) for _, label, _ in self.results), default=20)
        section = None
        for sec, label, value in self.results:
            if sec != section:
                print(f"\n{sec}")
                section = sec
            print(f"  {label:<{width}}  {value}")
        if self.notes:
            print("\nnotes")
            for note in self.notes:
                print(f"  - {note}")
        findings = self.server_log_findings()
        if findings:
            print(f"\n!!! the server logged {len(findings)} warning/error line(s); the first ones:")
            for line in findings[:10]:
                print(f"!!!   {line[:300]}")
        for problem in self.problems:
            print(f"\n!!! {problem}")
        if failure:
            print(f"\n!!! BENCH FAILED: {failure}")
        if failure or self.problems:
            print(f"!!! server log and wrk output kept in {self.workdir}")
        print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    compare_env = os.environ.get("COMPARE", "").strip().lower()
    parser.add_argument(
        "--compare",
        type=int,
        nargs="?",
        const=1,
        default=int(compare_env) if compare_env.isdigit() else int(compare_env in ("yes", "true")),
        metavar="RUNS",
        help="also run ../shared/bench/compare.sh (the floor comparison, ~75 s) RUNS times "
        "(default 1); default from the COMPARE environment variable (COMPARE=3: three runs)",
    )
    parser.add_argument(
        "--inprocess",
        nargs=3,
        metavar=("APP_OR_FLOOR", "COOKIE_A", "COOKIE_B"),
        help=argparse.SUPPRESS,  # the bench's own helper process, see inprocess_main
    )
    args = parser.parse_args()
    if args.inprocess:
        return inprocess_main(*args.inprocess)

    def interrupt(signum, _frame):
        reason = "time limit reached" if signum == signal.SIGALRM else signal.Signals(signum).name
        raise Interrupted(reason)

    # Ctrl-C raises KeyboardInterrupt even when started from a shell that ignores
    # SIGINT for background jobs; SIGTERM and the time limit raise Interrupted.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(TIME_LIMIT_S + COMPARE_TIME_LIMIT_S * args.compare)

    bench = Bench(args.compare)
    failure, status = None, 0
    started = time.monotonic()
    log(
        f"tenantapp bench: {os.cpu_count()} CPUs, load average "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    try:
        try:
            bench.start_cluster()
            bench.set_up_catalog()
            bench.start_server()
            bench.measure_login()
            bench.seed()
            bench.measure_page_walk()
            bench.measure_cold_tenant()
            bench.measure_load()
            bench.measure_memory()
            for run in range(args.compare):
                bench.run_compare(run + 1, args.compare)
            measure_project_move(bench)  # after the comparison: it creates tenants
            bench.stop_server()
            bench.measure_fleet()
            bench.measure_tenant_life()
        finally:
            signal.alarm(0)
            # No second Ctrl-C in the middle of the cleanup.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                bench.cleanup()
            finally:
                signal.signal(signal.SIGINT, previous)
    except (BenchError, ClusterError) as exc:
        failure, status = str(exc), 1
    except (KeyboardInterrupt, Interrupted) as exc:
        failure, status = f"interrupted ({str(exc) or 'Ctrl-C'})", 130
    except Exception as exc:  # noqa: BLE001 - a bug here: still clean up and report
        traceback.print_exc()
        failure, status = f"{type(exc).__name__}: {exc}", 1
    if bench.problems and not status:
        status = 1
    bench.report(failure)
    for log_file in (bench.server_log, bench.floor_log):
        if log_file is not None:
            log_file.close()
    if status == 0:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    print(f"bench finished in {time.monotonic() - started:.0f} s, exit status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
