"""URL routes, and the methods each allows (for 405 answers)."""

from pyramid.interfaces import IRoutesMapper
from pyramid.urldispatch import RoutesMapper

# The ``{id}`` of an object's URL: ASCII digits only (``\d`` would also take
# "１" or "٣" and int() would read them), at most 10 of them, since ids are
# 32-bit (views.contract.MAX_OBJECT_ID): a longer one matches no route and is
# the router's 404, before any int() or database sees it. Pyramid reads one
# level of braces inside a marker, so ``{1,10}`` belongs to the regex.
OBJECT_ID = r"{id:[0-9]{1,10}}"


def _ends_in_newline(request):
    # The raw WSGI path (latin-1): decoding is the router's business.
    return request.environ.get("PATH_INFO", "").endswith("\n")


class ExactRoutesMapper(RoutesMapper):
    """Pyramid's routes mapper, except that a path ending in a newline is no route.

    Registered by ``make_app`` before the Configurator is set up, since a
    route added before would go to Pyramid's own mapper.

    Pyramid anchors every route's regex with ``$``, which Python's ``re``
    also matches just before a final newline: ``/api/tasks%0A`` was the task
    list and ``/api/tasks/7%0A`` task 7. One string test per request.
    """

    def __call__(self, request):
        if _ends_in_newline(request):
            return {"route": None, "match": None}
        return super().__call__(request)


def includeme(config):
    config.add_route("healthz", "/healthz")
    config.add_route("readyz", "/readyz")

    config.add_route("login", "/api/login")
    config.add_route("logout", "/api/logout")
    config.add_route("me", "/api/me")
    config.add_route("session_tenant", "/api/session/tenant")
    config.add_route("me_password", "/api/me/password")
    config.add_route("me_sessions", "/api/me/sessions")
    config.add_route("me_session", "/api/me/sessions/{session_id}")
    config.add_route("members", "/api/members")
    config.add_route("member", "/api/members/{username}")
    config.add_route("projects", "/api/projects")
    config.add_route("project", f"/api/projects/{OBJECT_ID}")
    config.add_route("project_tasks", f"/api/projects/{OBJECT_ID}/tasks")
    config.add_route("project_move", f"/api/projects/{OBJECT_ID}/move")
    config.add_route("tasks", "/api/tasks")
    config.add_route("task", f"/api/tasks/{OBJECT_ID}")

    # Filled from the view registrations once configuration is done.
    config.registry.route_methods = {}
    config.action(None, _collect_route_methods, args=(config,), order=10**6)


def _collect_route_methods(config):
    methods = config.registry.route_methods
    for item in config.registry.introspector.get_category("views") or ():
        view = item["introspectable"]
        route_name = view.get("route_name")
        request_methods = view.get("request_methods")
        if route_name and request_methods:
            if isinstance(request_methods, str):
                request_methods = (request_methods,)
            methods.setdefault(route_name, set()).update(request_methods)
    for route_methods in methods.values():
        if "GET" in route_methods:
            route_methods.add("HEAD")


def allowed_methods(request):
    """The methods of the route that matches this path, or None if none does."""
    if _ends_in_newline(request):
        return None
    mapper = request.registry.getUtility(IRoutesMapper)
    for route in mapper.get_routes():
        if route.match(request.path_info) is not None:
            methods = request.registry.route_methods.get(route.name)
            if methods:
                return sorted(methods)
    return None
