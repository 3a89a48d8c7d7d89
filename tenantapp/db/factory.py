"""DBFactory: one database, its engine, its sessions, and a transaction for scripts."""

import threading
import weakref
from contextlib import contextmanager

from sqlalchemy.orm import Session
from zope.interface import implementer

from tenantapp.db.engines import make_engine, normalize_url, writing_engine
from tenantapp.interfaces import IDBFactory

# Engines dropped by DBFactory.dispose() since the start (for /metrics).
_dropped = {"engines": 0}
_dropped_lock = threading.Lock()


def engines_dropped():
    """How many idle Engines were emptied and dropped since the start (evictions)."""
    return _dropped["engines"]


def _count_dropped():
    with _dropped_lock:
        _dropped["engines"] += 1


class _Engines:
    """A database's reading Engine, and the writing one over the same pool,
    made on the first write: a tenant that is only read (a cold tenant's
    first request, say) makes one Engine."""

    __slots__ = ("reading", "_writing")

    def __init__(self, reading):
        self.reading = reading
        self._writing = None

    @property
    def writing(self):
        writing = self._writing
        if writing is None:
            # No lock: two threads that get here together each make one, and
            # either serves (same pool, same options); one is kept.
            writing = self._writing = writing_engine(self.reading)
        return writing


@implementer(IDBFactory)
class DBFactory:
    """One database. The engine is made on first use; the tenant directory
    empties the pools of the least recently used tenants to stay within its
    cap, and an emptied Engine with no connection lent out is dropped (made
    again on the next use, which is cheap: the dialect and compiled statements
    are shared, see :class:`tenantapp.db.engines.SharedDialect`), so a tenant
    idle in a process costs this object only. Sessions are made per request
    or per ``transaction()`` block and never shared.
    """

    def __init__(self, name, url, *, engine_options, on_use=None):
        self.name = name
        self.url = normalize_url(url)
        self._engine_options = engine_options
        # Told of every use, so the tenant directory can keep its LRU order.
        self._on_use = on_use
        self._engines = None  # _Engines, made on first use
        self._dropped = None  # a weak reference to the reading Engine dispose() dropped
        self._lock = threading.Lock()

    def __repr__(self):
        return f"<DBFactory {self.name} {self.url.render_as_string(hide_password=True)}>"

    def _engines_in_use(self):
        engines = self._engines
        if engines is None:
            with self._lock:
                engines = self._engines
                if engines is None:
                    engines = self._engines = _Engines(
                        make_engine(self.url, **self._engine_options)
                    )
        on_use = self._on_use  # read once: retire() may clear it meanwhile
        if on_use is not None:
            on_use(self)
        return engines

    @property
    def engine(self):
        """The Engine for reading (and for the health check)."""
        return self._engines_in_use().reading

    @property
    def write_engine(self):
        """The Engine for transactions that write (same pool, see engines.writing_engine)."""
        return self._engines_in_use().writing

    def session(self, write=False) -> Session:
        """A new Session. ``write=False``: it only reads, so it takes no write lock
        (SQLite) and sends no BEGIN (PostgreSQL); see tenantapp.db.engines."""
        engines = self._engines_in_use()
        # expire_on_commit=False: a view may serialize what it just committed
        # (the session is closed right after anyway, nothing outlives it).
        # No sessionmaker per factory: each would be a class of its own.
        return Session(bind=engines.writing if write else engines.reading, expire_on_commit=False)

    @contextmanager
    def transaction(self, write=True):
        session = self.session(write=write)
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    @property
    def made_engine(self):
        """The reading Engine if it was made, else None (not counted as a use)."""
        engines = self._engines
        return engines.reading if engines is not None else None

    def dispose(self):
        """Close the pooled (idle) connections; the pool refills on the next use.

        With no connection lent out, the Engine is dropped too (the next use
        makes another). A thread that took the engine just before finishes
        on it: its connection goes back to that pool, which the connection
        budget still reaches (it counts connections by engine) and empties
        when it needs room, as does the next dispose (the dropped Engine is
        remembered weakly). With connections lent out, the Engine and its
        pool stay: they come back to this same pool, where the next dispose,
        or the budget, closes them.
        """
        self.close_idle()
        dropped = self._dropped() if self._dropped is not None else None
        if dropped is not None:  # taken by a thread as it was dropped, used since
            dropped.pool.close_idle()
        with self._lock:
            engines = self._engines
            if engines is not None and engines.reading.pool.checkedout() == 0:
                self._engines = None
                self._dropped = weakref.ref(engines.reading)
                _count_dropped()

    def close_idle(self, limit=None):
        """Close up to ``limit`` idle connections (all if None); return how many."""
        engine = self.made_engine
        return engine.pool.close_idle(limit) if engine is not None else 0

    def retire(self):
        """This database is no longer where the name points (the tenant moved).

        Idle connections are closed now, lent ones when they come back, and
        the factory no longer tells anyone of its use. A request still
        holding it finishes on the old database: it read the old URL.
        """
        self._on_use = None
        engine = self.made_engine
        if engine is not None:
            engine.pool.retire()

    def checked_out(self):
        """Connections of this database lent out right now (0 when idle)."""
        engines = self._engines
        return engines.reading.pool.checkedout() if engines is not None else 0
