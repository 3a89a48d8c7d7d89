"""Liveness and readiness for load balancers and orchestrators."""

import logging

from pyramid.view import view_config
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tenantapp import migrations
from tenantapp.errors import ServiceUnavailable
from tenantapp.interfaces import IDBFactory
from tenantapp.views.contract import json_response

log = logging.getLogger(__name__)

# Read directly rather than through Alembic's MigrationContext, which logs a
# line per call: a load balancer asks every few seconds.
_CATALOG_REVISION = text("SELECT version_num FROM alembic_version")


@view_config(route_name="healthz", request_method="GET")
def healthz(request):
    """200 while the process serves; touches no database."""
    return json_response(request, {"status": "ok"})


@view_config(route_name="readyz", request_method="GET")
def readyz(request):
    """200 when the catalog database answers with the schema this version
    needs, else 503 (a process started before ``tenantapp-admin init`` upgraded
    the catalog is not ready: its queries would fail)."""
    catalog = request.registry.getUtility(IDBFactory, "catalog")
    retry_after = request.registry.tenantapp_settings.retry_after
    try:
        with catalog.engine.connect() as connection:
            revision = connection.execute(_CATALOG_REVISION).scalar()
    except SQLAlchemyError as exc:
        log.warning("readyz: catalog unavailable: %s", str(exc).splitlines()[0])
        raise ServiceUnavailable(
            "the catalog database is not available", retry_after=retry_after
        ) from None
    needed = migrations.head_revision("catalog")
    if revision != needed:
        log.warning("readyz: catalog schema at %s, this version needs %s", revision, needed)
        raise ServiceUnavailable(
            f"the catalog schema is at {revision}, this version needs {needed}: "
            "run tenantapp-admin CONFIG init",
            retry_after=retry_after,
        )
    return json_response(request, {"status": "ok"})
