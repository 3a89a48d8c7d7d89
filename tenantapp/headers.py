"""Security headers on every response.

``/api`` answers are never cached (they hold one user's data); pages may not be
framed by another site (clickjacking); no answer is content-sniffed.
"""

from pyramid.events import NewResponse


def add_security_headers(event):
    headers = event.response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    # The raw WSGI path: it may not even be valid UTF-8 (that request is a 400).
    path = event.request.environ.get("PATH_INFO", "")
    if path.startswith("/api/") or path == "/api":
        headers["Cache-Control"] = "no-store"
    else:
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        headers.setdefault("Referrer-Policy", "same-origin")


def includeme(config):
    config.add_subscriber(add_security_headers, NewResponse)
