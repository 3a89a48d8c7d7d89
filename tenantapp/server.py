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
    tune_garbage_collector()
    waitress.serve(app, **options)
    return 0


# Container objects allocated (net) before the youngest generation is
# collected; CPython's default is 700.
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector():
    """Fewer, cheaper collections for a long-lived server process.

    Everything made so far (modules, mappers, the app) lives as long as the
    process: frozen, out of the collector's generations, a full collection
    walks only what requests made (it took ~70 ms with them, at a random
    request; ~7 ms after). And a request allocates more than 700 objects
    before it frees them (a cold tenant's, with its new pool, several times
    over), so with CPython's default every request paid one or more
    collections of the youngest generation, plus a middle one every ten:
    ~1 ms per cold request, ~0.1 ms per warm one. At 10,000 they are rare;
    what they hold meanwhile is at most that many young objects.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


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
