"""The PasteDeploy server runner: waitress, on ``http_port`` (default 6543).

``pserve production.ini http_port=8080`` passes the port in ``global_conf``;
the default lives here, not in the ini file's [DEFAULT], which would win over
the command line.
"""

import gc
import logging

import waitress
from sqlalchemy.exc import SQLAlchemyError

from tenantapp import migrations
from tenantapp.db.recovery import start_resolver
from tenantapp.interfaces import IDBFactory

DEFAULT_PORT = "6543"

log = logging.getLogger(__name__)


def serve(app, global_conf, **options):
    options.setdefault("port", global_conf.get("http_port") or DEFAULT_PORT)
    warn_if_catalog_is_behind(app.registry)
    # Before the first request, so no login of an unknown user pays for it.
    app.registry.passwords.prepare()
    # Transactions a killed process left prepared: resolved now and every
    # minute (tenantapp.move_resolver_interval), in a daemon thread.
    start_resolver(app.registry)
    # Everything made so far (modules, mappers, the app) lives as long as the
    # process: out of the collector's generations, a full collection walks
    # what requests made only. It took ~70 ms with them, at a random request.
    gc.collect()
    gc.freeze()
    waitress.serve(app, **options)
    return 0


def warn_if_catalog_is_behind(registry):
    """Log an error when the catalog's schema is older than this code needs.

    Here, not in the app factory: ``tenantapp-admin init``, which upgrades
    the catalog, builds the app too. /readyz answers 503 meanwhile.
    """
    try:
        with registry.getUtility(IDBFactory, "catalog").engine.connect() as connection:
            behind = migrations.catalog_behind(connection)
    except SQLAlchemyError:
        return  # the app factory has already said the catalog is not readable
    if behind:
        log.error("%s (until then /readyz answers 503)", behind)
