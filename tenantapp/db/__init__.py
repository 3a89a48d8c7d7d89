"""The database layer: DBFactory utilities, the tenant directory, request sessions."""

import logging

from sqlalchemy.exc import SQLAlchemyError

from tenantapp.db.budget import ConnectionBudget
from tenantapp.db.directory import TenantDirectory
from tenantapp.db.factory import DBFactory
from tenantapp.interfaces import IDBFactory, ITenantDirectory

log = logging.getLogger(__name__)


def engine_options(settings, pool_size, budget):
    """Keyword arguments of :func:`tenantapp.db.engines.make_engine` from settings."""
    return {
        "pool_size": pool_size,
        "pool_timeout": settings.pool_timeout,
        "connect_timeout": settings.connect_timeout,
        "ping_after": settings.pool_ping_after,
        "budget": budget,
    }


def build_databases(registry, settings):
    """Register the catalog DBFactory and the tenant directory in ``registry``."""
    budget = ConnectionBudget(settings.max_connections, settings.pool_timeout)
    catalog = DBFactory(
        "catalog",
        settings.catalog_url,
        engine_options=engine_options(settings, settings.catalog_pool_size, budget),
    )
    registry.registerUtility(catalog, IDBFactory, name="catalog")
    directory = TenantDirectory(
        registry,
        catalog,
        settings.tenant_url_template,
        engine_options(settings, settings.tenant_pool_size, budget),
        settings.max_tenant_engines,
    )
    # When the budget is spent, idle connections are closed, coldest first.
    budget.make_room = directory.release_idle
    registry.registerUtility(directory, ITenantDirectory)
    registry.connection_budget = budget
    return catalog, directory


def includeme(config):
    settings = config.registry.tenantapp_settings
    catalog, directory = build_databases(config.registry, settings)
    try:
        count = directory.register_known()
    except SQLAlchemyError as exc:
        # Start anyway: requests answer 503 until the catalog is back, and
        # tenants are then found on first use.
        log.warning(
            "catalog not readable at start-up, tenants will be found on first use: %s",
            str(exc).splitlines()[0],
        )
    else:
        log.info("registered %d tenant database(s)", count)
