"""Security headers on every response (a tween: cheaper than a NewResponse
subscriber, which costs a registry lookup per response).

``/api`` answers are never cached (they hold one user's data); pages may not be
framed by another site (clickjacking); no answer is content-sniffed.
"""

from pyramid.tweens import INGRESS


def security_headers_tween_factory(handler, registry):
    def security_headers_tween(request):
        response = handler(request)
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        # The raw WSGI path: it may not even be valid UTF-8 (that request is a 400).
        if request.environ.get("PATH_INFO", "").startswith("/api"):
            headers["Cache-Control"] = "no-store"
        else:
            headers.setdefault("X-Frame-Options", "DENY")
            headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
            headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return security_headers_tween


def includeme(config):
    # Outermost, so error answers rendered by the exception view get them too.
    config.add_tween("tenantapp.headers.security_headers_tween_factory", under=INGRESS)
