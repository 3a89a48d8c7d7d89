"""The connection budget: at most N open connections per process, all pools together.

Each engine's pool is bounded on its own (so a burst on one tenant cannot
take every connection); the budget bounds their sum, however many tenants a
process serves. A connection must fit in the budget before it is opened; when
the budget is spent, idle connections of the least recently used tenants are
closed to make room, and only then does the request wait (``pool_timeout``)
and fail with :class:`ConnectionBudgetExhausted`, which answers 503.
"""

import threading

from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


class ConnectionBudgetExhausted(PoolTimeoutError):
    """No connection could be opened within the budget in time."""


class ConnectionBudget:
    """Counts the open DBAPI connections of every engine it watches."""

    def __init__(self, limit, timeout, make_room=None):
        self.limit = limit
        self.timeout = timeout
        # Called with no argument when the budget is spent; frees idle connections.
        self.make_room = make_room
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._open = set()

    @property
    def in_use(self):
        """How many connections are open now (checked out or idle in a pool)."""
        with self._lock:
            return len(self._open)

    def watch(self, engine):
        """Make every connection of ``engine`` count against the budget."""

        @event.listens_for(engine, "do_connect")
        def connect_within_budget(dialect, connection_record, cargs, cparams):
            self._acquire()
            try:
                dbapi_connection = dialect.connect(*cargs, **cparams)
            except BaseException:
                self._slots.release()
                raise
            with self._lock:
                self._open.add(id(dbapi_connection))
            return dbapi_connection

        @event.listens_for(engine, "close")
        def closed(dbapi_connection, connection_record):
            self._release(dbapi_connection)

        @event.listens_for(engine, "close_detached")
        def closed_detached(dbapi_connection):
            self._release(dbapi_connection)

    def _acquire(self):
        if self._slots.acquire(blocking=False):
            return
        if self.make_room is not None:
            self.make_room()
        if not self._slots.acquire(timeout=self.timeout):
            raise ConnectionBudgetExhausted(
                f"all {self.limit} connections of this process are in use"
            )

    def _release(self, dbapi_connection):
        key = id(dbapi_connection)
        with self._lock:
            if key not in self._open:
                return
            self._open.discard(key)
        self._slots.release()
