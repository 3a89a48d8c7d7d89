"""``GET /metrics``: what an operator needs at ten thousand tenants, in
Prometheus' text format (prometheus_client).

Per request, one histogram observation (``tenantapp_requests_seconds``, by
route and status: its ``_count`` is the request count) and, for a 503 only,
one counter by cause. Everything else is read when Prometheus scrapes (a
custom collector): connections in use and idle per database server and in the
connection budget, tenant pools live, evictions, and the few tenants holding
the most connections.

No metric has a tenant label, except that top list (at most
:data:`TOP_TENANTS` series): with 10,000 tenants, one latency histogram per
tenant would be 10,000 × buckets × statuses series per process.

Access (``tenantapp.metrics``): ``off`` (the default: no such route, 404),
``token`` (a bearer token from the environment variable
``TENANTAPP_METRICS_TOKEN``; any other request is a 404), or ``on`` (open to
whoever reaches the port: development, or a port only Prometheus reaches).
"""

import hmac
import os
import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pyramid.response import Response
from pyramid.tweens import INGRESS
from pyramid_retry import is_error_retryable, is_last_attempt
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError

from tenantapp.db.budget import ConnectionBudgetExhausted
from tenantapp.db.factory import engines_dropped
from tenantapp.db.session import is_conflict
from tenantapp.errors import NotFound, ServiceUnavailable
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.settings import SettingsError

MODES = ("off", "on", "token")
TOKEN_VARIABLE = "TENANTAPP_METRICS_TOKEN"
# Per-tenant figures are bounded: the N tenants holding the most connections.
TOP_TENANTS = 5
# The boundaries of the words of a class name (TenantMoving: tenant_moving).
_CAMEL_WORD = re.compile(r"([A-Z])")
# Latency buckets (seconds): a warm read is ~2 ms, a cold tenant ~10 ms, the
# pool and connect timeouts are 1 and 3 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def metrics_mode(settings):
    """``(mode, token)`` from the app settings; SettingsError when malformed."""
    mode = str(settings.get("tenantapp.metrics", "off")).strip().lower() or "off"
    if mode not in MODES:
        raise SettingsError(f"tenantapp.metrics: one of {', '.join(MODES)}, not {mode!r}")
    token = None
    if mode == "token":
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if len(token) < 16:
            raise SettingsError(
                f"tenantapp.metrics = token: the environment variable {TOKEN_VARIABLE} "
                "must hold a token of at least 16 characters"
            )
    return mode, token


def cause_of_503(exc):
    """A short word for why a request answered 503 (a bounded label)."""
    if isinstance(exc, ConnectionBudgetExhausted):
        return "connection_budget"
    if isinstance(exc, PoolTimeoutError):
        return "pool_timeout"
    if isinstance(exc, StaleDataError):
        return "conflict"
    if isinstance(exc, DBAPIError):
        if is_conflict(exc):
            return "conflict"
        if _is_moved_error(exc):
            return "tenant_moving"
        return "database_unavailable"
    if isinstance(exc, ServiceUnavailable):
        # Its class: DatabaseUnavailable, TenantMoving, TransactionConflict...
        return _CAMEL_WORD.sub(r"_\1", type(exc).__name__).lower().lstrip("_")
    return "other"


class RequestMetrics:
    """The per-request metrics of one app, in its own CollectorRegistry."""

    def __init__(self, registry):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "tenantapp_requests_seconds",
            "Requests by route and status, and how long they took (seconds).",
            ["route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.unavailable = Counter(
            "tenantapp_unavailable_responses",
            "Requests answered 503, by cause.",
            ["cause"],
            registry=self.registry,
        )
        self.registry.register(DatabaseCollector(registry))
        # (route, status) -> the histogram's child: labels() takes a lock.
        self._children = {}

    def observe(self, route, status, seconds):
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(route, str(status))
        child.observe(seconds)


def _is_moved_error(exc):
    try:  # tenant move's fence (tenantapp.db.relocation), where it exists
        from tenantapp.db.relocation import is_moved_error  # noqa: PLC0415
    except ImportError:
        return False
    return is_moved_error(exc)


def _database_of(url):
    """A database's label: its name (PostgreSQL) or file name (SQLite)."""
    database = url.database or ""
    if url.get_backend_name() == "sqlite":
        database = os.path.basename(database.split("?", 1)[0])
    return database


def _server_of(url):
    """A database server's label: driver, host and port; never a database name."""
    if url.get_backend_name() == "sqlite":
        return "sqlite"
    return f"{url.host or 'localhost'}:{url.port or 5432}"


class DatabaseCollector:
    """Gauges read at scrape time from the pools, the directory and the budget."""

    def __init__(self, registry):
        self._registry = registry

    def describe(self):
        return []  # read from collect() only when scraped

    def collect(self):
        registry = self._registry
        catalog = registry.getUtility(IDBFactory, "catalog").made_engine
        directory = registry.getUtility(ITenantDirectory)
        budget = registry.connection_budget

        # Every engine with an open connection, live tenant or evicted one
        # still holding some (the budget counts connections by engine).
        per_server = {}
        per_database = []
        for engine in budget.holders():
            pool = engine.pool
            in_use, idle = pool.checkedout(), pool.checkedin()
            counts = per_server.setdefault(_server_of(engine.url), [0, 0])
            counts[0] += in_use
            counts[1] += idle
            if engine is not catalog and in_use + idle:
                per_database.append((in_use + idle, _database_of(engine.url)))
        connections = GaugeMetricFamily(
            "tenantapp_db_connections",
            "Open connections of this process per database server: in_use (lent to "
            "a request) or idle (in a pool).",
            labels=["server", "state"],
        )
        for server, (in_use, idle) in sorted(per_server.items()):
            connections.add_metric([server, "in_use"], in_use)
            connections.add_metric([server, "idle"], idle)
        yield connections

        yield GaugeMetricFamily(
            "tenantapp_budget_connections_open",
            "Connections open in this process, counted by the connection budget.",
            value=budget.in_use,
        )
        yield GaugeMetricFamily(
            "tenantapp_budget_connections_limit",
            "The connection budget (tenantapp.max_connections).",
            value=budget.limit,
        )
        yield GaugeMetricFamily(
            "tenantapp_tenant_engines_live",
            "Tenant pools that may hold connections (at most tenantapp.max_tenant_engines).",
            value=directory.live_engines(),
        )
        yield GaugeMetricFamily(
            "tenantapp_tenant_engines_limit",
            "tenantapp.max_tenant_engines.",
            value=directory.max_engines,
        )
        yield CounterMetricFamily(
            "tenantapp_engine_evictions",
            "Idle engines emptied and dropped (least recently used tenants evicted).",
            value=engines_dropped(),
        )
        top = GaugeMetricFamily(
            "tenantapp_top_tenant_connections",
            f"Open connections of the {TOP_TENANTS} tenant databases holding the most.",
            labels=["database"],
        )
        per_database.sort(key=lambda item: (-item[0], item[1]))
        for count, database in per_database[:TOP_TENANTS]:
            top.add_metric([database], count)
        yield top


def metrics_tween_factory(handler, registry):
    """Times every request: one histogram observation, one counter for a 503."""
    metrics = registry.request_metrics
    observe = metrics.observe
    unavailable = metrics.unavailable
    clock = time.perf_counter

    def metrics_tween(request):
        started = clock()
        response = handler(request)
        status = response.status_code
        exc = getattr(request, "exception", None)
        if status >= 500 and exc is not None and _will_be_retried(request, exc):
            return response  # pyramid_retry runs it again: counted once, then
        route = request.matched_route
        observe(route.name if route is not None else "", status, clock() - started)
        if status == 503:
            unavailable.labels(cause_of_503(exc)).inc()
        return response

    return metrics_tween


def _will_be_retried(request, exc):
    return is_error_retryable(request, exc) and not is_last_attempt(request)


def metrics_view(request):
    """The Prometheus text format; a 404 without the token when one is required."""
    token = request.registry.metrics_token
    if token is not None:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise NotFound()
    body = generate_latest(request.registry.request_metrics.registry)
    response = Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


def includeme(config):
    mode, token = metrics_mode(config.registry.settings)
    if mode == "off":
        return
    config.registry.metrics_token = token
    config.registry.request_metrics = RequestMetrics(config.registry)
    config.add_tween("tenantapp.metrics.metrics_tween_factory", under=INGRESS)
    config.add_route("metrics", "/metrics")
    config.add_view(metrics_view, route_name="metrics", request_method="GET")
