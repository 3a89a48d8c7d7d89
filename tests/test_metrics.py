"""GET /metrics: Prometheus' text format, reachable only as configured.

``tenantapp.metrics``: off (the default: 404), token (a bearer token from
TENANTAPP_METRICS_TOKEN), on. Requests are counted by route and status with
their latency, 503s by cause; the pools, the budget and the tenant engines
are read when scraped. No series has a tenant label but the bounded top list.
"""

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families

from conftest import assert_error, dispose_app, logged_in
from tenantapp import make_app
from tenantapp.models.catalog import Tenant
from tenantapp.settings import SettingsError

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def metrics_app(settings, monkeypatch):
    """An app of the test's own with /metrics behind a bearer token."""
    monkeypatch.setenv("TENANTAPP_METRICS_TOKEN", TOKEN)
    app = make_app(dict(settings, **{"tenantapp.metrics": "token"}))
    yield app
    dispose_app(app)


def scrape(app, token=TOKEN):
    response = webtest.TestApp(app).get(
        "/metrics", headers={"Authorization": f"Bearer {token}"}, status=200
    )
    assert response.content_type == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def not_found(response):
    """The answer to a path that is no route: a program's path, so JSON."""
    assert_error(response, 404, "not_found")
    assert "tenantapp_" not in response.text


def test_metrics_are_off_unless_configured(app):
    not_found(webtest.TestApp(app).get("/metrics", status=404))


def test_metrics_need_the_token(metrics_app):
    client = webtest.TestApp(metrics_app)
    not_found(client.get("/metrics", status=404))
    for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", "Bearer \u00e9"):
        not_found(client.get("/metrics", headers={"Authorization": header}, status=404))
    assert "tenantapp_budget_connections_limit" in scrape(metrics_app).__repr__()


def test_metrics_on_is_open(settings):
    app = make_app(dict(settings, **{"tenantapp.metrics": "on"}))
    try:
        body = webtest.TestApp(app).get("/metrics", status=200).text
        assert "tenantapp_tenant_engines_live" in body
    finally:
        dispose_app(app)


@pytest.mark.parametrize("mode", ["yes", "tokens", "1"])
def test_a_bad_metrics_setting_stops_the_start(settings, mode):
    with pytest.raises(SettingsError, match="tenantapp.metrics"):
        make_app(dict(settings, **{"tenantapp.metrics": mode}))


def test_token_mode_without_a_token_stops_the_start(settings, monkeypatch):
    monkeypatch.delenv("TENANTAPP_METRICS_TOKEN", raising=False)
    with pytest.raises(SettingsError, match="TENANTAPP_METRICS_TOKEN"):
        make_app(dict(settings, **{"tenantapp.metrics": "token"}))


def test_requests_are_counted_by_route_and_status_without_a_tenant(metrics_app, make_user):
    make_user("mel", acme="editor", globex="viewer")
    client = logged_in(metrics_app, "mel", tenant="acme")
    for _ in range(3):
        client.get("/api/tasks")
    client.get("/api/tasks/2147483000", status=404)
    client.put_json("/api/session/tenant", {"tenant": "globex"})
    client.get("/api/tasks")
    client.get("/no/such/page", status=404)

    samples = scrape(metrics_app)
    assert value(samples, "tenantapp_requests_seconds_count", route="tasks", status="200") == 4
    assert value(samples, "tenantapp_requests_seconds_count", route="task", status="404") == 1
    assert value(samples, "tenantapp_requests_seconds_count", route="", status="404") == 1
    assert (
        value(samples, "tenantapp_requests_seconds_bucket", route="tasks", status="200", le="+Inf")
        == 4
    )
    assert value(samples, "tenantapp_requests_seconds_sum", route="tasks", status="200") > 0
    # No request series names a tenant: no label but route, status (and le).
    for name, labels in samples:
        if name.startswith("tenantapp_requests_seconds"):
            assert {key for key, _ in labels} <= {"route", "status", "le"}

    # Gauges, read at scrape time.
    assert value(samples, "tenantapp_budget_connections_limit") == 50
    assert value(samples, "tenantapp_tenant_engines_limit") == 32
    assert value(samples, "tenantapp_tenant_engines_live") == 2
    open_now = value(samples, "tenantapp_budget_connections_open")
    by_server = [samples[key] for key in samples if key[0] == "tenantapp_db_connections"]
    assert open_now >= 2  # the catalog's and at least one per tenant used
    assert sum(by_server) == open_now
    tops = [
        dict(labels)["database"]
        for name, labels in samples
        if name == "tenantapp_top_tenant_connections"
    ]
    assert 1 <= len(tops) <= 5
    assert any("acme" in database for database in tops)


def test_a_503_is_counted_by_its_cause(metrics_app, admin, make_user):
    with admin.catalog.transaction() as db:
        db.add(
            Tenant(
                name="nowhere",
                display_name="Nowhere",
                status="active",
                # Nothing listens on port 1: the connection is refused at once.
                db_url="postgresql://postgres@127.0.0.1:1/tenant_nowhere",
            )
        )
    make_user("nel", nowhere="editor")
    client = logged_in(metrics_app, "nel", tenant="nowhere")
    response = client.get("/api/tasks", status=503)
    assert_error(response, 503, "service_unavailable")

    samples = scrape(metrics_app)
    assert (
        value(samples, "tenantapp_unavailable_responses_total", cause="database_unavailable") == 1
    )
    assert value(samples, "tenantapp_requests_seconds_count", route="tasks", status="503") == 1


def test_evictions_are_counted(settings, monkeypatch, make_user):
    monkeypatch.setenv("TENANTAPP_METRICS_TOKEN", TOKEN)
    app = make_app(
        dict(settings, **{"tenantapp.metrics": "token", "tenantapp.max_tenant_engines": "1"})
    )
    try:
        make_user("eve", acme="viewer", globex="viewer")
        client = logged_in(app, "eve", tenant="acme")
        before = value(scrape(app), "tenantapp_engine_evictions_total")
        client.get("/api/tasks")
        client.put_json("/api/session/tenant", {"tenant": "globex"})
        client.get("/api/tasks")  # acme's pool is emptied and its engine dropped
        samples = scrape(app)
        assert value(samples, "tenantapp_engine_evictions_total") == before + 1
        assert value(samples, "tenantapp_tenant_engines_live") == 1
    finally:
        dispose_app(app)
