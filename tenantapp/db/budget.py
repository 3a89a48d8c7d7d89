"""The connection budget: at most N open connections per process, all pools together.

Each engine's pool is bounded on its own (so a burst on one tenant cannot
take every connection); the budget bounds their sum, however many tenants a
process serves. A connection must fit in the budget before it is opened; when
the budget is spent, idle connections are closed to make room (in any pool,
busy or not: see :meth:`tenantapp.db.directory.TenantDirectory.release_idle`),
again and again while the request waits, and only a request that found no
room within ``pool_timeout`` fails with :class:`ConnectionBudgetExhausted`,
which answers 503.

Every opened connection gives its slot back exactly once, whatever closes
it: its own ``close()``, which every close goes through (its pool's, a
detached one's, a failed set-up's, see :class:`ReleasesSlotOnClose`), or the
garbage collector (a ``weakref.finalize`` on the DBAPI connection, which is
also what makes the release happen once). A slot is keyed by the connection object, not
by ``id()``: an id is reused as soon as the object is gone.
"""

import collections
import threading
import time
import weakref

from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# How long a waiting request sleeps between two attempts to make room.
ROOM_RETRY_INTERVAL = 0.05
# The attribute of a DBAPI connection that holds its slot (a weakref.finalize).
SLOT_ATTRIBUTE = "tenantapp_budget_slot"


class ConnectionBudgetExhausted(PoolTimeoutError):
    """No connection could be opened within the budget in time."""


class ReleasesSlotOnClose:
    """Mixed into a DBAPI connection class: ``close()`` gives its budget slot back.

    Every close goes through it: the pool's, a detached connection's, a
    failed set-up's, an invalidation's. A subclass of a C type also gets the
    ``__weakref__`` and the attributes the budget's finalizer needs
    (psycopg2's and sqlite3's connections have none).
    """

    tenantapp_budget_slot = None

    def close(self):
        try:
            super().close()
        finally:
            slot = self.tenantapp_budget_slot
            if slot is not None:
                slot()


def give_back(dbapi_connection):
    """Release ``dbapi_connection``'s slot now (no-op if it was released already)."""
    slot = getattr(dbapi_connection, SLOT_ATTRIBUTE, None)
    if slot is not None:
        slot()


class ConnectionBudget:
    """Counts the open DBAPI connections of every engine that opens them through :meth:`open`."""

    def __init__(self, limit, timeout, make_room=None):
        self.limit = limit
        self.timeout = timeout
        # Called with the engines holding connections when the budget is
        # spent; closes some idle ones and returns how many.
        self.make_room = make_room
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._open = 0
        self._holders = {}  # engine -> its open connections (engines with none are left out)
        # Slots given back, not yet counted. Appending is all a release does:
        # it may run inside the garbage collector, on any thread, even one
        # holding self._lock; the list is emptied (and the semaphore
        # released) where no lock is held.
        self._returned = collections.deque()

    @property
    def in_use(self):
        """How many connections are open now (checked out or idle in a pool)."""
        self._count_returned()
        return self._open

    def holders(self):
        """The engines that hold open connections now, in no particular order."""
        self._count_returned()
        with self._lock:
            return list(self._holders)

    def open(self, engine, connect):
        """Open a DBAPI connection with ``connect()`` once it fits in the budget,
        counted for ``engine``; its slot comes back when it is closed."""
        returned = self._returned.append
        self._acquire(engine)
        try:
            dbapi_connection = connect()
        except BaseException:
            returned(engine)
            raise
        slot = weakref.finalize(dbapi_connection, returned, engine)
        slot.atexit = False
        setattr(dbapi_connection, SLOT_ATTRIBUTE, slot)
        return dbapi_connection

    def _acquire(self, engine):
        # Slots given back count first: the engines they name are then let go
        # (an evicted tenant's Engine is not kept alive by its closed connections).
        self._count_returned()
        if not self._slots.acquire(blocking=False):
            self._wait_for_room()
        with self._lock:
            self._open += 1
            self._holders[engine] = self._holders.get(engine, 0) + 1

    def _wait_for_room(self):
        # Make room (close idle connections) and wait a little, again and
        # again: a connection checked in while we wait is idle, and only
        # closing it frees a slot. Slots given back meanwhile count first.
        deadline = time.monotonic() + self.timeout
        while True:
            self._count_returned()
            if self._slots.acquire(blocking=False):
                return
            if self.make_room is not None:
                self.make_room(self.holders())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionBudgetExhausted(
                    f"all {self.limit} connections of this process are in use"
                )
            if self._slots.acquire(timeout=min(remaining, ROOM_RETRY_INTERVAL)):
                return

    def _count_returned(self):
        while True:
            try:
                engine = self._returned.popleft()
            except IndexError:
                return
            with self._lock:
                self._open -= 1
                left = self._holders[engine] - 1
                if left:
                    self._holders[engine] = left
                else:
                    del self._holders[engine]
            self._slots.release()
