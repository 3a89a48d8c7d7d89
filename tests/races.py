"""Forcing an interleaving between requests, deterministically (PostgreSQL).

A race test does not sleep and hope. It holds a lock from a connection of its
own (:class:`LockHolder`), starts the requests that need that lock in threads
(:func:`in_thread`), waits until PostgreSQL itself reports them blocked on
the holder (:meth:`LockHolder.wait_for_waiters`), does what must happen in
between, and then lets them go: :meth:`LockHolder.release` terminates the
holder's backend (its transaction is rolled back, its locks freed), or
:meth:`LockHolder.commit` commits what the holder did.

    holder = LockHolder(url)
    holder.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (project_id,))
    create = in_thread(client.post_json, "/api/tasks", {...})
    holder.wait_for_waiters(1)
    ...                    # the request is now parked on the lock
    holder.release()
    response = create.result()
"""

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2

# A bound on how long a test waits for something PostgreSQL will report; a
# test that reaches it has failed (it is no timing assumption).
WAIT_LIMIT = 20.0


def libpq_url(url):
    """A SQLAlchemy PostgreSQL URL (string or URL object) as libpq takes it."""
    if hasattr(url, "render_as_string"):
        url = url.render_as_string(hide_password=False)
    return str(url).replace("postgresql+psycopg2://", "postgresql://", 1)


class LockHolder:
    """A PostgreSQL connection of the test's own, in an open transaction."""

    def __init__(self, url):
        self.url = libpq_url(url)
        self.connection = psycopg2.connect(self.url)
        self.pid = self.connection.get_backend_pid()

    def execute(self, sql, params=None):
        """Run ``sql`` inside the holder's transaction (locks stay held)."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    def waiters(self):
        """Backends blocked by this holder right now."""
        with psycopg2.connect(self.url) as observer, observer.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (self.pid,),
            )
            count = cursor.fetchone()[0]
        observer.close()
        return count

    def wait_for_waiters(self, count, limit=WAIT_LIMIT):
        """Return once ``count`` backends wait on this holder's locks."""
        deadline = time.monotonic() + limit
        while self.waiters() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} backend(s) never blocked on the lock holder")
            time.sleep(0.01)

    def commit(self):
        """Commit what the holder did; the waiters go on and see it."""
        self.connection.commit()
        self.connection.close()

    def release(self):
        """Terminate the holder's backend: its transaction is rolled back."""
        with psycopg2.connect(self.url) as killer, killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (self.pid,))
        killer.close()
        self.connection.close()


_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="race")


class _Call:
    def __init__(self, future):
        self._future = future

    def result(self, limit=WAIT_LIMIT):
        """The call's return value (its exception re-raised)."""
        return self._future.result(timeout=limit)

    def done(self):
        return self._future.done()


def in_thread(function, *args, **kwargs):
    """Start ``function(*args, **kwargs)`` in another thread; ``.result()`` joins it."""
    return _Call(_pool.submit(function, *args, **kwargs))


def wait_until_blocked(holder, limit=WAIT_LIMIT):
    """Return once ``holder``'s own backend waits for a lock another backend holds
    (a :class:`LockHolder` whose ``execute`` runs :func:`in_thread`)."""
    deadline = time.monotonic() + limit
    while True:
        with psycopg2.connect(holder.url) as observer, observer.cursor() as cursor:
            cursor.execute("SELECT cardinality(pg_blocking_pids(%s))", (holder.pid,))
            blocked = cursor.fetchone()[0] > 0
        observer.close()
        if blocked:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the lock holder never blocked")
        time.sleep(0.01)


def wait_for_blocked_behind(holder, count, limit=WAIT_LIMIT):
    """Return once ``count`` backends wait on ``holder``, directly or queued
    behind one that does (e.g. on a lock that a waiter of ``holder`` holds)."""
    query = """
        WITH RECURSIVE behind(pid) AS (
            SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))
            UNION
            SELECT a.pid FROM pg_stat_activity a
            JOIN behind b ON b.pid = ANY(pg_blocking_pids(a.pid))
        )
        SELECT count(*) FROM behind
    """
    deadline = time.monotonic() + limit
    while True:
        with psycopg2.connect(holder.url) as observer, observer.cursor() as cursor:
            cursor.execute(query, (holder.pid,))
            blocked = cursor.fetchone()[0]
        observer.close()
        if blocked >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} backend(s) never blocked behind the lock holder")
        time.sleep(0.01)
