"""When a request may be retried (pyramid_retry's activate hook)."""

from tenantapp.views.contract import MAX_BODY_BYTES, declared_length


def attempts_for(request):
    """One attempt for a body over the limit (it is refused with 413 unread);
    the configured number otherwise."""
    return 1 if declared_length(request) > MAX_BODY_BYTES else None
