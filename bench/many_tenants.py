"""Many tenants, bounded connections: 500 tenant databases, each used once.

Starts a throwaway PostgreSQL cluster, creates N tenant databases with the
admin commands (each a copy of the tenant template), serves production.ini
with pserve, then has one user (a member of every tenant) choose each tenant
in turn and read its tasks once. Prints the connections the server holds
(sampled as it goes, and at the end), its memory, the latency of the first
request to each cold tenant, and the time of ``tenant migrate --all --jobs 4``
with every tenant at head; then one line a script can read::

    BENCH-TENANTS {"tenants": N, "max_connections_seen": ..., "rss_mib": ..., ...}

    .venv/bin/python bench/many_tenants.py [--tenants 500]     (make bench-tenants)

The floor beside the cold figures: one tenant in ten is read by psycopg2
alone (connect, the same SELECT, close), what PostgreSQL itself costs for a
tenant it has not served lately; the rest is tenantapp's. The databases are
checkpointed and synced after their creation, so that writing gigabytes back
is not measured as latency.
"""

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)  # this checkout's tenantapp

from pg_cluster import PostgresCluster, free_port  # noqa: E402

BIN = os.path.join(ROOT, ".venv", "bin")
PASSWORD = "many-tenants-bench-password"


def call(base, method, path, body=None, cookie=None, csrf=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", cookie)
    if csrf:
        request.add_header("X-CSRF-Token", csrf)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers, response.read()


def psql(cluster, sql):
    result = subprocess.run(
        [
            os.path.join(cluster.bindir, "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            sql,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def server_connections(cluster):
    return int(
        psql(cluster, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantapp'")
    )


# What GET /api/tasks?limit=50 sends to a tenant's database.
TASKS_PAGE = (
    "SELECT id, project_id, title, status, assignee, due_date, created_at, updated_at, version"
    " FROM tasks WHERE id > 0 ORDER BY id LIMIT 51"
)


def floor_ms(url):
    """The database's own part of a cold tenant's first request: psycopg2
    opens a connection and reads the page, nothing else."""
    started = time.perf_counter()
    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(TASKS_PAGE)
            cursor.fetchall()
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000


def migrate_all_seconds(env):
    """``tenantapp-admin production.ini tenant migrate --all --jobs 4``, whole command."""
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tenantapp.cli",
            os.path.join(ROOT, "production.ini"),
            "tenant",
            "migrate",
            "--all",
            "--jobs",
            "4",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - started


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def memory_kib(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=500)
    args = parser.parse_args()

    cluster = PostgresCluster(settings={"max_connections": 1000}).start()
    server = None
    try:
        env = dict(
            os.environ,
            TENANTAPP_CATALOG_URL=cluster.url("catalog"),
            TENANTAPP_TENANT_URL_TEMPLATE=cluster.url("tenant_{name}"),
            TENANTAPP_SECRET=secrets.token_urlsafe(48),
            # The code of this checkout, in the server and the admin command too.
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        )
        os.environ.update(env)
        from pyramid.paster import bootstrap

        from tenantapp.cli import Admin

        started = time.monotonic()
        with bootstrap(os.path.join(ROOT, "production.ini")) as app_env:
            admin = Admin(app_env["registry"], out=open(os.devnull, "w"))  # noqa: SIM115
            admin.init()
            admin.user_create("mia", PASSWORD)
            names = [f"t{i:04d}" for i in range(args.tenants)]
            for n, name in enumerate(names, 1):
                admin.tenant_create(name)
                admin.user_grant("mia", name, "viewer")
                if n % 100 == 0:
                    print(f"  {n} tenant databases created", flush=True)
            admin.directory.dispose_all()
            admin.catalog.dispose()
        print(f"{args.tenants} tenants created in {time.monotonic() - started:.0f} s")
        # The new databases are gigabytes not yet written back: let the server
        # and the kernel write them now, not during the measurement.
        psql(cluster, "CHECKPOINT")
        os.sync()

        port = free_port()
        server = subprocess.Popen(
            [
                os.path.join(BIN, "pserve"),
                os.path.join(ROOT, "production.ini"),
                f"http_port={port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                call(base, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        status, headers, body = call(
            base, "POST", "/api/login", {"username": "mia", "password": PASSWORD}
        )
        cookie = headers["Set-Cookie"].split(";")[0]
        csrf = json.loads(body)["csrf_token"]
        before = memory_kib(server.pid)

        cold, floor, peak_connections = [], [], 0
        for n, name in enumerate(names, 1):
            if n % 10 == 5:
                # One tenant in ten is read without tenantapp, for the floor.
                floor.append(floor_ms(cluster.url(f"tenant_{name}")))
                continue
            call(base, "PUT", "/api/session/tenant", {"tenant": name}, cookie, csrf)
            t0 = time.perf_counter()
            status, _, _ = call(base, "GET", "/api/tasks?limit=50", cookie=cookie)
            cold.append((time.perf_counter() - t0) * 1000)
            assert status == 200
            if n % 10 == 0:
                peak_connections = max(peak_connections, server_connections(cluster))
        held = server_connections(cluster)
        peak_connections = max(peak_connections, held)
        after = memory_kib(server.pid)
        warm = []
        for _ in range(100):
            t0 = time.perf_counter()
            call(base, "GET", "/api/tasks?limit=50", cookie=cookie)
            warm.append((time.perf_counter() - t0) * 1000)

        migrate_noop = migrate_all_seconds(env)
        peak_connections = max(peak_connections, server_connections(cluster))

        cold.sort()
        print()
        print(f"{args.tenants} tenant databases, each used once by one pserve production.ini")
        print(f"  connections held by the server at the end      {held}")
        print(f"  most connections seen (sampled every 10)       {peak_connections}")
        print(
            "  budget: tenantapp.max_connections 50, catalog_pool_size 10, tenant_pool_size 5,"
            " max_tenant_engines 32"
        )
        print(f"  server memory after login (RSS)                {before['VmRSS'] / 1024:.1f} MiB")
        print(
            f"  server memory after {args.tenants} tenants (RSS / peak)  "
            f"{after['VmRSS'] / 1024:.1f} / {after['VmHWM'] / 1024:.1f} MiB"
        )
        print(
            f"  first request to a cold tenant: median {statistics.median(cold):.1f} ms, "
            f"p95 {percentile(cold, 0.95):.1f} ms, max {cold[-1]:.1f} ms"
        )
        print(f"  the same request once warm: median {statistics.median(warm):.1f} ms")
        print(
            "  floor (1 tenant in 10): psycopg2 connects and reads the page: "
            f"median {statistics.median(floor):.1f} ms, p95 {percentile(floor, 0.95):.1f} ms"
        )
        print(f"  tenant migrate --all --jobs 4, all at head     {migrate_noop:.1f} s")
        rss_before, rss_after = before["VmRSS"] / 1024, after["VmRSS"] / 1024
        summary = {
            "tenants": args.tenants,
            "max_connections_seen": peak_connections,
            "rss_mib": round(rss_after, 1),
            "rss_mib_before": round(rss_before, 1),
            "rss_per_1000_tenants_mib": round((rss_after - rss_before) / args.tenants * 1000, 1),
            "cold_p50_ms": round(statistics.median(cold), 1),
            "cold_p95_ms": round(percentile(cold, 0.95), 1),
            "warm_p50_ms": round(statistics.median(warm), 2),
            "cold_floor_p50_ms": round(statistics.median(floor), 1),
            "cold_floor_p95_ms": round(percentile(floor, 0.95), 1),
            "migrate_all_noop_s": round(migrate_noop, 2),
        }
        print("BENCH-TENANTS " + json.dumps(summary), flush=True)
        return 0
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
        cluster.destroy()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except urllib.error.HTTPError as exc:
        print(f"many_tenants: HTTP {exc.code}: {exc.read()[:300]!r}", file=sys.stderr)
        sys.exit(1)
