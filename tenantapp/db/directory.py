"""The tenant directory: the one place that turns a tenant name into its DBFactory."""

import logging
import re
import threading
from collections import OrderedDict

from sqlalchemy import select
from zope.interface import implementer

from tenantapp.db.factory import DBFactory
from tenantapp.interfaces import ITenantDirectory
from tenantapp.models.catalog import Tenant

log = logging.getLogger(__name__)

TENANT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")

# factory()'s default URL: read the tenant's in the catalog.
LOOK_UP = object()


def is_valid_tenant_name(name):
    """True for a name safe inside a database name or a file name."""
    return isinstance(name, str) and TENANT_NAME_RE.fullmatch(name) is not None


def tenant_utility_name(name):
    return f"tenant:{name}"


@implementer(ITenantDirectory)
class TenantDirectory:
    """Knows every tenant's DBFactory and keeps few of their engines alive.

    Factories are cheap (a name and a URL; kept here, not as registry
    utilities); their engines are made on first use. At most
    ``max_engines`` pools hold connections at once: using one more empties
    the pool of the least recently used idle tenant. A tenant created after
    start-up (by ``tenantapp-admin`` in another process) is found in the
    catalog on first use.

    A factory is kept for a name *and* the URL the catalog gives
    (``tenants.db_url``; None: the template's). A caller that brings another
    URL for the name (the login lookup reads it on every request) means the
    tenant was moved, or deleted and created again elsewhere: a new factory
    replaces the old one, as the registered utility too, and the old one is
    retired (its connections closed, those in use when they come back), so
    no process keeps writing to the old database.
    """

    def __init__(self, registry, catalog, url_template, engine_options, max_engines):
        self.registry = registry
        self.catalog = catalog
        self.url_template = url_template
        self.engine_options = engine_options
        self.max_engines = max_engines
        self._entries = {}  # name -> (its tenants.db_url or None, its DBFactory)
        self._factories = {}  # name -> its current DBFactory
        self._live = OrderedDict()  # name -> factory with an engine, LRU first
        self._lock = threading.RLock()

    def url_for(self, name, own_url=None):
        if not is_valid_tenant_name(name):
            raise ValueError(f"invalid tenant name: {name!r}")
        return own_url or self.url_template.format(name=name)

    def factory(self, name, url=LOOK_UP):
        """The DBFactory of tenant ``name`` at ``url``, its ``tenants.db_url``
        as the caller read it (None: the template's); read in the catalog
        when not given (``LookupError`` for a tenant the catalog does not know).
        """
        if url is LOOK_UP:
            url = self._lookup_url(name)
        entry = self._entries.get(name)
        if entry is not None and entry[0] == (url or None):
            return entry[1]
        return self.register(name, url)

    def register(self, name, url=None):
        """Register (or return) the DBFactory of tenant ``name`` at ``url``
        (None: the template's). A factory of the name at another URL is
        replaced and retired."""
        url = url or None
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry[0] == url:
                return entry[1]
            factory = DBFactory(
                tenant_utility_name(name),
                self.url_for(name, url),
                engine_options=dict(self.engine_options, must_exist=True),
                on_use=self._used,
            )
            self._entries[name] = (url, factory)
            self._factories[name] = factory
            # Not registered as a ``tenant:<name>`` utility: the directory is
            # the one way to a tenant's factory, and ten thousand utilities
            # in the registry would be dead weight.
            old = entry[1] if entry is not None else None
            if old is not None and self._live.get(name) is old:
                del self._live[name]
        if old is not None:
            log.info("tenant %s moved: %r replaces %r", name, factory, old)
            old.retire()
        return factory

    def register_known(self):
        """Register a factory for every tenant in the catalog (at start-up)."""
        with self.catalog.transaction(write=False) as session:
            rows = session.execute(select(Tenant.name, Tenant.db_url)).all()
        for name, url in rows:
            self.register(name, url)
        return len(rows)

    def _lookup_url(self, name):
        if not is_valid_tenant_name(name):
            raise LookupError(name)
        with self.catalog.transaction(write=False) as session:
            row = session.execute(select(Tenant.db_url).where(Tenant.name == name)).first()
        if row is None:
            raise LookupError(name)
        return row.db_url

    def _used(self, factory):
        # Called on every engine access: keep LRU order, empty pools beyond the cap.
        name = factory.name.split(":", 1)[1]
        live = self._live
        if live.get(name) is factory:
            # No lock on this path (every request takes it): at worst the order
            # is a little off, or the entry was evicted by another thread meanwhile.
            try:
                live.move_to_end(name)
            except KeyError:
                return  # evicted meanwhile: nothing left to reorder
            return
        with self._lock:
            if self._factories.get(name) is not factory:
                return  # replaced by another URL meanwhile (retired, see register)
            live[name] = factory
            live.move_to_end(name)
            # Close the idle connections of the least recently used idle
            # tenants; a tenant with a request in flight is left alone this time.
            for old_name, old in list(live.items()):
                if len(live) <= self.max_engines:
                    break
                if old is not factory and old.checked_out() == 0:
                    del live[old_name]
                    old.dispose()

    def release_idle(self, holders=(), wanted=1):
        """Close idle pooled connections to make room in the connection budget.

        Called (again and again) while a request waits for the budget; the
        engines stay registered and reconnect on their next use. Coldest
        first: pools the directory no longer counts as live that still hold
        connections (``holders``, from the budget: a request took one after
        its tenant was evicted), then the live tenants' from the least
        recently used, busy pools too (only their idle connections are closed,
        never one in use), the catalog's last. Returns how many were closed.
        """
        with self._lock:
            live = [factory.made_engine for factory in self._live.values()]
        live = [engine for engine in live if engine is not None]
        catalog = self.catalog.made_engine
        known = {*live, catalog}
        freed = 0
        for engine in [*(e for e in holders if e not in known), *live, catalog]:
            close_idle = getattr(getattr(engine, "pool", None), "close_idle", None)
            if close_idle is not None:
                freed += close_idle(wanted - freed)
                if freed >= wanted:
                    break
        return freed

    def live_engines(self):
        """How many tenant pools may hold connections right now."""
        return len(self._live)

    def dispose_all(self):
        with self._lock:
            factories = list(self._factories.values())
            self._live.clear()
        for factory in factories:
            factory.dispose()
