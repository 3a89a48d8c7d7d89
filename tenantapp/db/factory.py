"""DBFactory: one database, its engine, its sessionmaker, and a transaction for scripts."""

import threading
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker
from zope.interface import implementer

from tenantapp.db.engines import WRITE_OPTION, make_engine, normalize_url
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
        self._engine = None
        self._lock = threading.Lock()
        # expire_on_commit=False: a view may serialize what it just committed
        # (the session is closed right after anyway, nothing outlives it).
        # A reading session takes no write lock (SQLite) and sends no BEGIN
        # (PostgreSQL, see engines._configure_postgresql).
        self._sessionmaker = sessionmaker(expire_on_commit=False)
        self._write_sessionmaker = sessionmaker(
            expire_on_commit=False, execution_options={WRITE_OPTION: True}
        )

    def __repr__(self):
        return f"<DBFactory {self.name} {self.url.render_as_string(hide_password=True)}>"

    @property
    def engine(self):
        engine = self._engine
        if engine is None:
            with self._lock:
                engine = self._engine
                if engine is None:
                    engine = self._engine = make_engine(self.url, **self._engine_options)
        if self._on_use is not None:
            self._on_use(self)
        return engine

    def session(self, write=False) -> Session:
        """A new Session; ``write=False`` for one that only reads (see above)."""
        maker = self._write_sessionmaker if write else self._sessionmaker
        return maker(bind=self.engine)

    @contextmanager
    def transaction(self, write=True):
        session = self.session(write=write)
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def dispose(self):
        # The Engine object stays (a thread may hold it this very moment);
        # its pool is emptied and refills on the next use.
        engine = self._engine
        if engine is not None:
            engine.dispose()

    def checked_out(self):
        """Connections of this database lent out right now (0 when idle)."""
        engine = self._engine
        return engine.pool.checkedout() if engine is not None else 0
