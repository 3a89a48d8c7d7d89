"""The API's documentation: ``GET /api/openapi.json`` (the OpenAPI 3.1 document,
built from the app by :mod:`tenantapp.openapi`) and ``GET /api/docs`` (Swagger
UI over it).

Swagger UI's assets come from the ``swagger-ui-py`` package and are served by
the app itself under ``/swagger-ui/``: the page loads nothing from another
site. (They live outside ``/api`` so that browsers may cache them:
``/api`` answers are ``no-store``.)
"""

import base64
import hashlib
import html
import json

from pyramid.response import Response

from tenantapp.openapi import build_document
from tenantapp.views.contract import JSON_CONTENT_TYPE_HEADER, Endpoint

#: The static files of Swagger UI 5 (the first major version that reads OpenAPI 3.1).
SWAGGER_UI_ASSETS = "swagger_ui:static/"
PUBLIC = Endpoint(login=False, csrf=False)


def openapi_document(registry):
    """The document as JSON bytes, built once per app (routes do not change)."""
    document = getattr(registry, "openapi_json", None)
    if document is None:
        document = json.dumps(build_document(registry), ensure_ascii=False).encode()
        registry.openapi_json = document
    return document


def openapi_json(request):
    return Response(
        body=openapi_document(request.registry),
        headerlist=[("Content-Type", JSON_CONTENT_TYPE_HEADER)],
    )


# The session cookie goes with every same-origin request by itself; the CSRF
# token of the last login (or /api/me) made from the page is remembered and
# sent with every unsafe request, as the API wants.
_INIT_SCRIPT = """\
window.onload = function () {
  var csrfToken = null;
  window.ui = SwaggerUIBundle({
    url: %(url)s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: function (request) {
      if (csrfToken && !/^(GET|HEAD|OPTIONS)$/i.test(request.method || "GET")) {
        request.headers["X-CSRF-Token"] = csrfToken;
      }
      return request;
    },
    responseInterceptor: function (response) {
      if (response.body && typeof response.body.csrf_token === "string") {
        csrfToken = response.body.csrf_token;
      }
      return response;
    }
  });
};
"""

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tenantapp API</title>
<link rel="stylesheet" href="%(css)s">
<link rel="icon" type="image/png" href="%(icon)s">
</head>
<body>
<div id="swagger-ui"></div>
<script src="%(bundle)s"></script>
<script>%(init)s</script>
</body>
</html>
"""


def docs_page(request):
    def asset(name):
        return html.escape(request.static_path(SWAGGER_UI_ASSETS + name))

    # JSON is a JavaScript literal; "<" escaped so that nothing closes the script.
    url = json.dumps(request.route_path("api_openapi")).replace("<", "\\u003c")
    init = _INIT_SCRIPT % {"url": url}
    digest = base64.b64encode(hashlib.sha256(init.encode()).digest()).decode()
    page = _PAGE % {
        "css": asset("swagger-ui.css"),
        "icon": asset("favicon-32x32.png"),
        "bundle": asset("swagger-ui-bundle.js"),
        "init": init,
    }
    response = Response(page, content_type="text/html", charset="utf-8")
    # Only this page's own script and the app's assets; Swagger UI styles
    # elements inline. Never framed: "Try it out" acts with the user's session.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def includeme(config):
    config.add_route("api_openapi", "/api/openapi.json")
    config.add_route("api_docs", "/api/docs")
    config.add_view(openapi_json, route_name="api_openapi", request_method="GET", api=PUBLIC)
    config.add_view(docs_page, route_name="api_docs", request_method="GET", api=PUBLIC)
    config.add_static_view("swagger-ui", SWAGGER_UI_ASSETS, cache_max_age=24 * 3600)
