"""Business logic shared by the JSON views, the pages and the CLI.

Plain functions that take a Session; they raise :mod:`tenantapp.errors` and
never see a request.
"""

from sqlalchemy.exc import IntegrityError

from tenantapp.db.relocation import is_moved_error
from tenantapp.errors import ValidationFailed


def flush_or_refuse(db, fields):
    """Flush ``db``; a constraint the database enforces is the client's 422
    with ``fields``, except the fence of a tenant that moved (tenant move),
    which is raised as it is: the request is run again on the new database."""
    try:
        db.flush()
    except IntegrityError as exc:
        if is_moved_error(exc):  # SQLite raises its fence as an IntegrityError
            raise
        raise ValidationFailed(fields) from None
