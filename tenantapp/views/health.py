"""Liveness and readiness for load balancers and orchestrators."""

import logging

from pyramid.view import view_config
from sqlalchemy.exc import SQLAlchemyError

from tenantapp import migrations
from tenantapp.errors import ServiceUnavailable
from tenantapp.interfaces import IDBFactory
from tenantapp.views.contract import json_response

log = logging.getLogger(__name__)


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
            behind = migrations.catalog_behind(connection)
    except SQLAlchemyError as exc:
        log.warning("readyz: catalog unavailable: %s", str(exc).splitlines()[0])
        raise ServiceUnavailable(
            "the catalog database is not available", retry_after=retry_after
        ) from None
    if behind:
        log.warning("readyz: %s", behind)
        raise ServiceUnavailable(behind, retry_after=retry_after)
    return json_response(request, {"status": "ok"})
