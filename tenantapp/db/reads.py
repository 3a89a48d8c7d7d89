"""Reads of the hot path at the driver's level, on a SQLAlchemy Connection.

The login lookup and a page of a list are one SELECT each, built once as Core
statements. On PostgreSQL SQLAlchemy's execution path (execution context,
result object, Row objects, a type processor call per timestamp) cost about
as much CPU as the driver itself: these reads send the statement's SQL,
compiled once, on the Connection's own psycopg2 cursor and take its tuples.
Everything around the cursor is still SQLAlchemy's: the pool checkout (its
events: the connection budget, the ping of an idle connection), and an error
goes through the Connection's own handler, so it is wrapped in a
``DBAPIError`` and a dropped connection invalidates the pool, exactly as for
``Connection.execute`` (the exception view retries it or answers 503).

Only statements whose values need no conversion, on an engine with no
connection events (no statement listener is skipped), take this path: no bind
parameter processing, and no result processing other than
:class:`~tenantapp.models.types.UTCDateTime`'s, which is done here (an aware
datetime not in UTC is converted to UTC; when the session's time zone is UTC,
as tenantapp's databases are set, psycopg2 gives UTC and nothing is looked
at). Anything else, and every other database (SQLite's timestamps are text),
goes through ``Connection.execute`` as usual.
"""

import threading
from datetime import UTC

from tenantapp.models.types import UTCDateTime

# (statement, dialect name, server version) -> its _Plan, or _NO_PLAN: not for this path.
_plans = {}
_plans_lock = threading.Lock()
_NO_PLAN = object()
# Session time zones whose timestamps psycopg2 gives with tzinfo UTC.
_UTC = frozenset({"UTC", "Etc/UTC"})


class _Plan:
    __slots__ = ("sql", "utc_positions")

    def __init__(self, sql, utc_positions):
        self.sql = sql
        self.utc_positions = utc_positions


def _make_plan(statement, dialect):
    if dialect.name != "postgresql":
        return _NO_PLAN
    compiled = statement.compile(dialect=dialect)
    # Values sent as given, under their own names, in SQL that is final.
    if (
        compiled._bind_processors  # noqa: SLF001 - see module doc
        or compiled.positional
        or compiled.post_compile_params
        or compiled.literal_execute_params
    ):
        return _NO_PLAN
    utc_positions = []
    for position, column in enumerate(statement.selected_columns):
        if isinstance(column.type, UTCDateTime):
            utc_positions.append(position)
        elif column.type._cached_result_processor(dialect, None) is not None:  # noqa: SLF001
            return _NO_PLAN
    return _Plan(str(compiled), tuple(utc_positions))


def _plan(statement, dialect):
    key = (statement, dialect.name, dialect.server_version_info)
    plan = _plans.get(key)
    if plan is None:
        with _plans_lock:
            plan = _plans.get(key)
            if plan is None:
                plan = _plans[key] = _make_plan(statement, dialect)
    return plan


def _utc_rows(rows, positions):
    """``rows`` with every timestamp at ``positions`` in UTC (the usual case: unchanged)."""
    for row in rows:
        for position in positions:
            value = row[position]
            if value is not None and value.tzinfo is not UTC:
                return [_utc_row(row, positions) for row in rows]
    return rows


def _utc_row(row, positions):
    row = list(row)
    for position in positions:
        value = row[position]
        if value is not None and value.tzinfo is not UTC:
            row[position] = (
                value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            )
    return tuple(row)


def fetch_all(connection, statement, params):
    """Every row of the Core ``statement`` with ``params``, read on
    ``connection`` (a Core Connection): sequences in the order of the
    statement's selected columns (tuples, or SQLAlchemy Rows off this path)."""
    plan = _plan(statement, connection.dialect)
    # An engine with connection events (the writing one's BEGIN/COMMIT, or a
    # listener on statements) has them run: Connection.execute's path.
    if plan is _NO_PLAN or connection._has_events or connection.engine._has_events:  # noqa: SLF001
        return connection.execute(statement, params).all()
    sql = plan.sql
    dbapi_connection = connection.connection.dbapi_connection
    cursor = None
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        cursor.close()
    except BaseException as exc:  # noqa: BLE001 - re-raised by the handler, wrapped
        # Wraps (DBAPIError), invalidates the pool on a disconnect, closes the
        # cursor, and raises: what Connection.execute does with the same error.
        connection._handle_dbapi_exception(exc, sql, params, cursor, None)  # noqa: SLF001
    # A session in UTC (tenantapp's databases are set so) gives UTC values:
    # nothing to look at. Otherwise every timestamp is checked.
    if plan.utc_positions and dbapi_connection.info.parameter_status("TimeZone") not in _UTC:
        rows = _utc_rows(rows, plan.utc_positions)
    return rows
