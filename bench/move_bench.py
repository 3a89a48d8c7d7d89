"""Issue 12's figure for ``make bench``: the latency of moving a project with
100 tasks to another tenant (``POST /api/projects/{id}/move``, two-phase
commit across two tenant databases), median and p99.

Called by run_bench.py with its ``Bench`` while the server runs (after the
load measurement, so the moves do not disturb it):
``measure_project_move(bench)``. A user editor of two tenants of its own
moves projects back and forth between them; each project is created with
its tasks through the API first (not timed).
"""

import secrets
import statistics
import time

MOVES = 40
TASKS_PER_PROJECT = 100
MOVE_TENANTS = ("movea", "moveb")


def measure_project_move(bench):
    """Time MOVES moves of a project with TASKS_PER_PROJECT tasks; record median and p99."""
    from run_bench import Client, expect, log, log_in, percentile

    log(f"project move: {MOVES} moves of a project with {TASKS_PER_PROJECT} tasks")
    for tenant in MOVE_TENANTS:
        bench.admin("tenant", "create", tenant)
    password = secrets.token_urlsafe(18)
    bench.admin("user", "create", "mover", "--password-stdin", stdin=password + "\n")
    for tenant in MOVE_TENANTS:
        bench.admin("user", "grant", "mover", tenant, "--role", "editor")
    client = Client(bench.port)
    logins = {tenant: log_in(client, "mover", password, tenant)[0] for tenant in MOVE_TENANTS}
    samples = []
    for number in range(MOVES):
        source, target = MOVE_TENANTS[number % 2], MOVE_TENANTS[(number + 1) % 2]
        login = logins[source]
        project = expect(
            client.request(
                "POST", "/api/projects", {"name": f"moved {number}"}, login.cookie, login.csrf
            ),
            201,
            "POST /api/projects",
        ).json()
        for task in range(TASKS_PER_PROJECT):
            expect(
                client.request(
                    "POST",
                    "/api/tasks",
                    {"project_id": project["id"], "title": f"task {task}"},
                    login.cookie,
                    login.csrf,
                ),
                201,
                "POST /api/tasks",
            )
        started = time.perf_counter()
        moved = expect(
            client.request(
                "POST",
                f"/api/projects/{project['id']}/move",
                {"tenant": target},
                login.cookie,
                login.csrf,
            ),
            201,
            "POST /api/projects/{id}/move",
        ).json()
        samples.append((time.perf_counter() - started) * 1000)
        if moved["tasks"] != TASKS_PER_PROJECT:
            bench.problems.append(f"a move reported {moved['tasks']} tasks")
    client.close()
    bench.record(
        "project move (two-phase commit, PostgreSQL)",
        f"POST /api/projects/{{id}}/move, {TASKS_PER_PROJECT} tasks, {MOVES} moves",
        f"median {statistics.median(samples):.1f} ms, p99 {percentile(samples, 99):.1f} ms",
    )
