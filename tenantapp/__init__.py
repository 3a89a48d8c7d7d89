"""tenantapp: one catalog database, one database per tenant, a JSON API over both."""

import warnings

# Pyramid 2.1 still imports pkg_resources; the warning is Pyramid's, not ours.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from tenantapp.settings import SettingsError, parse_settings  # noqa: E402

# The web application's modules (Pyramid's configurator, the request, the
# views) are imported by make_app, not here: every `tenantapp-admin` command
# imports this package, and needs none of them (see tenantapp.cli).


def make_app(settings):
    """The WSGI application for ``settings`` (the ini file's app section).

    Raises :class:`SettingsError` for a missing or malformed setting.
    """
    from pyramid.config import Configurator
    from pyramid.interfaces import IRoutesMapper
    from pyramid.registry import Registry
    from pyramid.tweens import EXCVIEW

    from tenantapp.models.types import utcnow
    from tenantapp.request import TenantRequest
    from tenantapp.routes import ExactRoutesMapper

    tenantapp_settings = parse_settings(settings)
    settings = dict(settings)
    # The transaction manager: commit before the response leaves, abort on
    # an exception or an error status; no user lookup just to annotate it.
    settings.setdefault("tm.commit_veto", "pyramid_tm.default_commit_veto")
    settings.setdefault("tm.annotate_user", "false")
    # Only requests that may write have a transaction to manage (GETs read
    # without joining one, see tenantapp.db.session).
    settings.setdefault("tm.activate_hook", "tenantapp.db.session.may_write")
    settings.setdefault("retry.attempts", "3")
    settings.setdefault("retry.activate_hook", "tenantapp.retry.attempts_for")

    registry = Registry("tenantapp")
    # The router's mapper, in place before any route (pyramid.includes too).
    registry.registerUtility(ExactRoutesMapper(), IRoutesMapper)
    with Configurator(registry=registry) as config:
        config.setup_registry(settings=settings, request_factory=TenantRequest)
        config.registry.tenantapp_settings = tenantapp_settings
        # The clock every request reads (tests turn it forward).
        config.registry.clock = utcnow
        config.include("pyramid_retry")  # retry serialization failures and lost races
        # One transaction per request: pyramid_tm's tween, with request.tm
        # defined on TenantRequest (not added per request by pyramid_tm's
        # includeme, which would make Pyramid build a Request subclass for
        # every request).
        config.add_tween("pyramid_tm.tm_tween_factory", over=EXCVIEW)
        config.include(".db")  # catalog + tenant DBFactory utilities, tenant directory
        config.include(".auth.passwords")  # argon2, parameters from the settings
        config.include(".auth.policy")  # identity = login session, permission = role
        config.include(".views.contract")  # the API contract's checks, in its order
        config.include(".headers")  # nosniff, no-store on /api, no framing of pages
        config.include(".routes")
        config.include(".metrics")  # GET /metrics, when tenantapp.metrics is on or token
        config.include(".views.docs")  # OpenAPI document and interactive docs
        config.include(".views.pages")  # server-rendered pages over the same services
        config.scan(".views")
        config.action(None, _reads_first, args=(config.registry,), order=10**6)
    return config.make_wsgi_app()


def _reads_first(registry):
    """Try each route's GET view before its other views.

    A route with views for several methods gets one of Pyramid's MultiViews,
    which tries the views in the order they were registered (by name, as the
    scan finds them) until one's predicates match: a GET /api/tasks first
    tried the POST view, whose request_method mismatch raised an exception
    (a whole HTTPNotFound response) on every read. The methods exclude each
    other, so the order changes which view is tried first, never which answers.
    """
    from pyramid.config.views import MultiView
    from pyramid.interfaces import IRouteRequest, IRoutesMapper, IView, IViewClassifier
    from zope.interface import Interface

    for route in registry.getUtility(IRoutesMapper).get_routes():
        request_iface = registry.queryUtility(IRouteRequest, name=route.name)
        if request_iface is None:
            continue
        view = registry.adapters.lookup((IViewClassifier, request_iface, Interface), IView, name="")
        if isinstance(view, MultiView):
            view.views.sort(key=lambda entry: (entry[0], not _takes_get(entry[1])))


def _takes_get(view):
    from pyramid.predicates import RequestMethodPredicate

    return any(
        isinstance(predicate, RequestMethodPredicate) and "GET" in predicate.val
        for predicate in getattr(view, "__predicates__", ())
    )


def main(global_config, **settings):
    """The PasteDeploy app factory (``pserve development.ini``)."""
    try:
        return make_app(settings)
    except SettingsError as exc:
        # One clear line, no traceback.
        raise SystemExit(f"tenantapp: configuration error: {exc}") from None
