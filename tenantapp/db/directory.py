"""The tenant directory: the one place that turns a tenant name into its DBFactory."""

import contextlib
import re
import threading
from collections import OrderedDict

from sqlalchemy import select
from zope.interface import implementer

from tenantapp.db.factory import DBFactory
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import Tenant

TENANT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


def is_valid_tenant_name(name):
    """True for a name safe inside a database name or a file name."""
    return isinstance(name, str) and TENANT_NAME_RE.fullmatch(name) is not None


def tenant_utility_name(name):
    return f"tenant:{name}"


@implementer(ITenantDirectory)
class TenantDirectory:
    """Knows every tenant's DBFactory and keeps few of their engines alive.

    Factories are cheap (a name and a URL) and registered as named
    ``IDBFactory`` utilities; their engines are made on first use. At most
    ``max_engines`` pools hold connections at once: using one more empties
    the pool of the least recently used idle tenant. A tenant created after
    start-up (by ``tenantapp-admin`` in another process) is found in the
    catalog on first use.
    """

    def __init__(self, registry, catalog, url_template, engine_options, max_engines):
        self.registry = registry
        self.catalog = catalog
        self.url_template = url_template
        self.engine_options = engine_options
        self.max_engines = max_engines
        self._factories = {}
        self._live = OrderedDict()  # name -> factory with an engine, LRU first
        self._lock = threading.RLock()

    def url_for(self, name, own_url=None):
        if not is_valid_tenant_name(name):
            raise ValueError(f"invalid tenant name: {name!r}")
        return own_url or self.url_template.format(name=name)

    def factory(self, name, url=None):
        factory = self._factories.get(name)
        if factory is not None:
            return factory
        if url is None:
            url = self._lookup_url(name)
        return self.register(name, url)

    def register(self, name, url=None):
        """Register (or return) the DBFactory of tenant ``name``."""
        with self._lock:
            factory = self._factories.get(name)
            if factory is None:
                factory = DBFactory(
                    tenant_utility_name(name),
                    self.url_for(name, url),
                    engine_options=dict(self.engine_options, must_exist=True),
                    on_use=self._used,
                )
                self._factories[name] = factory
                self.registry.registerUtility(factory, IDBFactory, name=factory.name)
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
        # Called on every engine access: keep LRU order, dispose beyond the cap.
        name = factory.name.split(":", 1)[1]
        live = self._live
        if live.get(name) is factory:
            with contextlib.suppress(KeyError):  # evicted by another thread meanwhile
                live.move_to_end(name)
            return
        with self._lock:
            live[name] = factory
            live.move_to_end(name)
            # Empty the pools of the least recently used idle tenants; a
            # tenant with a request in flight is left alone this time.
            for old_name, old in list(live.items()):
                if len(live) <= self.max_engines:
                    break
                if old is not factory and old.checked_out() == 0:
                    del live[old_name]
                    old.dispose()

    def release_idle(self):
        """Close the pooled connections of idle tenants, least recently used first.

        Called when the connection budget is spent; engines stay registered
        and reconnect on their next use.
        """
        with self._lock:
            candidates = list(self._live.items())
        freed = 0
        for name, factory in candidates:
            if factory.checked_out() == 0:
                with self._lock:
                    if self._live.get(name) is factory:
                        del self._live[name]
                factory.dispose()
                freed += 1
                if freed >= 2:
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
