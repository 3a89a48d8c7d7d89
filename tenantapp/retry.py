"""When a request may be retried (pyramid_retry's activate hook)."""

from tenantapp.views.contract import MAX_BODY_BYTES


def attempts_for(request):
    """One attempt for a body over the limit (it is refused with 413 unread);
    the configured number otherwise."""
    try:
        length = int(request.environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return 1 if length > MAX_BODY_BYTES else None
