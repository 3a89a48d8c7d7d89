"""DBFactory: one database, its engine, its sessionmaker, and a transaction for scripts."""

import threading
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker
from zope.interface import implementer

from tenantapp.db.engines import make_engine, normalize_url, writing_engine
from tenantapp.interfaces import IDBFactory


@implementer(IDBFactory)
class DBFactory:
    """One database. The engine is made on first use and lives as long as the
    process (the tenant directory empties the pools of the least recently used
    tenants to stay within its cap); sessions are made per request or per
    ``transaction()`` block and never shared.
    """

    def __init__(self, name, url, *, engine_options, on_use=None):
        self.name = name
        self.url = normalize_url(url)
        self._engine_options = engine_options
        # Told of every use, so the tenant directory can keep its LRU order.
        self._on_use = on_use
        self._engines = None  # (reading, writing), made together on first use
        self._lock = threading.Lock()
        # expire_on_commit=False: a view may serialize what it just committed
        # (the session is closed right after anyway, nothing outlives it).
        self._sessionmaker = sessionmaker(expire_on_commit=False)

    def __repr__(self):
        return f"<DBFactory {self.name} {self.url.render_as_string(hide_password=True)}>"

    def _both_engines(self):
        engines = self._engines
        if engines is None:
            with self._lock:
                engines = self._engines
                if engines is None:
                    engine = make_engine(self.url, **self._engine_options)
                    engines = self._engines = (engine, writing_engine(engine))
        on_use = self._on_use  # read once: retire() may clear it meanwhile
        if on_use is not None:
            on_use(self)
        return engines

    @property
    def engine(self):
        """The Engine for reading (and for the health check)."""
        return self._both_engines()[0]

    @property
    def write_engine(self):
        """The Engine for transactions that write (same pool, see engines.writing_engine)."""
        return self._both_engines()[1]

    def session(self, write=False) -> Session:
        """A new Session. ``write=False``: it only reads, so it takes no write lock
        (SQLite) and sends no BEGIN (PostgreSQL); see tenantapp.db.engines."""
        reading, writing = self._both_engines()
        return self._sessionmaker(bind=writing if write else reading)

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
        return engines[0] if engines is not None else None

    def dispose(self):
        """Close the pooled (idle) connections; the pool refills on the next use.

        The Engine and its pool stay (a thread may hold the engine this very
        moment): a connection lent out comes back to this same pool, where
        the next dispose, or the connection budget, can close it.
        """
        self.close_idle()

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
        return engines[0].pool.checkedout() if engines is not None else 0
