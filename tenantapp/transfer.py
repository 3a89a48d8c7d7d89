"""``tenant export`` / ``tenant import``: a tenant's projects and tasks as one
JSON document, streamed both ways.

The document::

    {"format": "tenantapp-export", "version": 1, "tenant": NAME,
     "schema_revision": REV,
     "projects": [{"id", "name", "description", "created_at", "updated_at",
                   "version"}, ...],
     "tasks": [{"id", "project_id", "title", "status", "assignee", "due_date",
                "created_at", "updated_at", "version"}, ...]}

Timestamps as the API writes them (ISO 8601, ``+00:00``), dates as
``YYYY-MM-DD``. Rows are written as they are fetched (a server-side cursor on
PostgreSQL) and read back one at a time by :class:`StreamReader`, then
inserted in batches, so neither side holds the tenant in memory.
"""

import json
from datetime import UTC, date, datetime

from sqlalchemy import create_engine, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from tenantapp.db.engines import normalize_url
from tenantapp.models.tenant import TASK_STATUSES, Project, Task
from tenantapp.services import projects, tasks
from tenantapp.services.insert_order import lock_id_order

FORMAT = "tenantapp-export"
VERSION = 1
BATCH = 500  # rows fetched, or inserted, at a time
_READ_SIZE = 64 * 1024

# Every column the API shows is every column a tenant holds: the export
# writes the API's fields, in the API's order.
PROJECT_FIELDS = projects.FIELDS
TASK_FIELDS = tasks.FIELDS


class TransferError(Exception):
    """An export or import that cannot be done; the message is one line."""


# --- export ------------------------------------------------------------------------


def _snapshot_engine(url):
    """An engine whose transactions read one consistent snapshot."""
    url = normalize_url(url)
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            poolclass=NullPool,
            isolation_level="REPEATABLE READ",
            execution_options={"postgresql_readonly": True},
        )
    engine = create_engine(url, poolclass=NullPool)

    # pysqlite sends no BEGIN before a SELECT: each would see its own moment.
    @event.listens_for(engine, "connect")
    def no_implicit_transactions(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def begin(connection):
        connection.exec_driver_sql("BEGIN")

    return engine


def _iso(value):
    return value.isoformat() if value is not None else None


def _project_json(row):
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "version": row.version,
    }


def _task_json(row):
    return {
        "id": row.id,
        "project_id": row.project_id,
        "title": row.title,
        "status": row.status,
        "assignee": row.assignee,
        "due_date": _iso(row.due_date),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "version": row.version,
    }


def export_tenant(url, name, revision, out):
    """Write tenant ``name``'s document (its database at ``url``, schema at
    ``revision``) to the text stream ``out``; one snapshot for all of it.
    Returns (projects, tasks) counted."""
    engine = _snapshot_engine(url)
    counts = [0, 0]
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                # The database's statement timeout is for requests.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            header = {
                "format": FORMAT,
                "version": VERSION,
                "tenant": name,
                "schema_revision": revision,
            }
            out.write(json.dumps(header)[:-1])
            streamed = connection.execution_options(stream_results=True, yield_per=BATCH)
            for index, (key, table, to_json) in enumerate(
                (
                    ("projects", Project.__table__, _project_json),
                    ("tasks", Task.__table__, _task_json),
                )
            ):
                out.write(f',\n"{key}": [')
                rows = streamed.execute(select(table).order_by(table.c.id))
                for number, row in enumerate(rows):
                    out.write(("\n" if number == 0 else ",\n") + json.dumps(to_json(row)))
                    counts[index] += 1
                out.write("\n]")
            out.write("}\n")
    finally:
        engine.dispose()
    return tuple(counts)


# --- reading -----------------------------------------------------------------------


class StreamReader:
    """Reads the document from a text stream a piece at a time: the header's
    values, then each element of ``projects`` and ``tasks`` as it comes.

    General JSON (any spacing, keys in any order), parsed with the standard
    decoder one value at a time; only the elements of those two arrays are
    handed out without keeping them.
    """

    _decoder = json.JSONDecoder()

    def __init__(self, stream):
        self.stream = stream
        self.buffer = ""
        self.position = 0
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        chunk = self.stream.read(_READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        self.buffer = self.buffer[self.position :] + chunk
        self.position = 0
        return True

    def _skip_space(self):
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position] in " \t\r\n":
                self.position += 1
            if self.position < len(self.buffer) or not self._fill():
                return

    def _expect(self, characters):
        """The next non-space character, which must be one of ``characters``."""
        self._skip_space()
        if self.position >= len(self.buffer):
            raise TransferError("invalid file: it ends too early (truncated?)")
        found = self.buffer[self.position]
        if found not in characters:
            raise TransferError(f"invalid file: not the JSON document expected near {found!r}")
        self.position += 1
        return found

    def _value(self):
        self._skip_space()
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError:
                if self._fill():
                    continue
                raise TransferError("invalid file: not JSON, or truncated") from None
            # A number at the end of the buffer may go on in the next piece.
            if end == len(self.buffer) and not self.eof and self._fill():
                continue
            self.position = end
            return value

    def items(self):
        """Yield ("header", key, value) for the top-level values and
        ("projects"|"tasks", element) for each array element."""
        self._expect("{")
        if self._peek() == "}":
            self.position += 1
            return
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise TransferError("invalid file: not the JSON document expected")
            self._expect(":")
            if key in ("projects", "tasks"):
                self._expect("[")
                if self._peek() == "]":
                    self.position += 1
                else:
                    while True:
                        yield key, self._value()
                        if self._expect(",]") == "]":
                            break
            else:
                yield "header", (key, self._value())
            if self._expect(",}") == "}":
                break
        self._skip_space()
        if self.position < len(self.buffer):
            raise TransferError("invalid file: more after the JSON document")

    def _peek(self):
        self._skip_space()
        if self.position >= len(self.buffer):
            raise TransferError("invalid file: it ends too early (truncated?)")
        return self.buffer[self.position]


# --- import ------------------------------------------------------------------------


def _field_error(kind, row, message):
    ident = row.get("id") if isinstance(row, dict) else None
    where = f"{kind} {ident}" if isinstance(ident, int) else f"a {kind}"
    return TransferError(f"invalid file: {where}: {message}")


def _timestamp(kind, row, key):
    value = row[key]
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _field_error(kind, row, f"{key} is not an ISO 8601 time with its offset")
    return parsed.astimezone(UTC)


def _integer(kind, row, key, minimum=1):
    value = row[key]
    if type(value) is not int or value < minimum:
        raise _field_error(kind, row, f"{key} is not an integer of at least {minimum}")
    return value


def _text(kind, row, key, limit=None, nullable=False, non_empty=False):
    value = row[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or (limit and len(value) > limit) or (non_empty and not value):
        raise _field_error(kind, row, f"{key} is not a valid text")
    return value


def _check_fields(kind, row, fields):
    if not isinstance(row, dict):
        raise TransferError(f"invalid file: a {kind} is not an object")
    missing = [f for f in fields if f not in row]
    if missing:
        raise _field_error(kind, row, f"missing field {missing[0]}")
    extra = sorted(set(row) - set(fields))
    if extra:
        raise _field_error(kind, row, f"unknown field {extra[0]}")


def _project_row(row):
    _check_fields("project", row, PROJECT_FIELDS)
    name = _text("project", row, "name", limit=200, non_empty=True)
    return {
        "id": _integer("project", row, "id"),
        "name": name,
        "name_key": name.casefold(),
        "description": _text("project", row, "description"),
        "created_at": _timestamp("project", row, "created_at"),
        "updated_at": _timestamp("project", row, "updated_at"),
        "version": _integer("project", row, "version"),
    }


def _task_row(row):
    _check_fields("task", row, TASK_FIELDS)
    title = _text("task", row, "title", limit=500, non_empty=True)
    if row["status"] not in TASK_STATUSES:
        raise _field_error("task", row, "status is not one of " + ", ".join(TASK_STATUSES))
    project_id = _integer("task", row, "project_id")
    due = row["due_date"]
    if due is not None:
        try:
            due = date.fromisoformat(due) if isinstance(due, str) else None
        except ValueError:
            due = None
        if due is None:
            raise _field_error("task", row, "due_date is not a date YYYY-MM-DD")
    return {
        "id": _integer("task", row, "id"),
        "project_id": project_id,
        "title": title,
        "title_key": title.casefold(),
        "status": row["status"],
        "assignee": _text("task", row, "assignee", limit=150, nullable=True),
        "due_date": due,
        "created_at": _timestamp("task", row, "created_at"),
        "updated_at": _timestamp("task", row, "updated_at"),
        "version": _integer("task", row, "version"),
    }


def import_tenant(session, stream):
    """Load the document read from ``stream`` into the tenant database of
    ``session`` (a writing transaction the caller commits, or rolls back on
    any exception: a bad file writes nothing). Returns (projects, tasks).
    """
    for table in ("projects", "tasks"):
        lock_id_order(session, table)
    if session.execute(select(Project.id).limit(1)).first() is not None:
        raise TransferError("the tenant has projects already: import only into an empty tenant")
    header = {}
    counts = {"projects": 0, "tasks": 0}
    batches = {"projects": [], "tasks": []}
    tables = {"projects": Project.__table__, "tasks": Task.__table__}

    def flush(key):
        # No set of the ids seen (it would grow with the file): the database
        # refuses a duplicate id (primary key) and a task whose project is
        # not in the file (foreign key; SQLite's is on for every connection).
        if batches[key]:
            try:
                session.execute(insert(tables[key]), batches[key])
            except IntegrityError as exc:
                raise TransferError(f"invalid file: {_integrity_problem(key, exc)}") from None
            batches[key] = []

    for key, value in StreamReader(stream).items():
        if key == "header":
            name, content = value
            header[name] = content
            continue
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            # Checked before the first row: the header comes first in our files.
            raise TransferError(
                f"invalid file: not a {FORMAT} document of version {VERSION} "
                "(its header must come before its rows)"
            )
        if key == "projects":
            row = _project_row(value)
        else:
            flush("projects")  # tasks refer to them
            row = _task_row(value)
        batches[key].append(row)
        counts[key] += 1
        if len(batches[key]) >= BATCH:
            flush(key)
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise TransferError(f"invalid file: not a {FORMAT} document of version {VERSION}")
    for name in ("tenant", "schema_revision"):
        if not isinstance(header.get(name), str):
            raise TransferError(f"invalid file: no {name}")
    flush("projects")
    flush("tasks")
    _continue_ids(session, session.get_bind().dialect.name)
    return counts["projects"], counts["tasks"]


def _continue_ids(db, dialect_name):
    """New rows continue after the highest id copied in. (SQLite's
    AUTOINCREMENT keeps the highest id ever inserted by itself.)"""
    if dialect_name != "postgresql":
        return
    for table in (Project.__table__, Task.__table__):
        highest = db.execute(select(func.max(table.c.id))).scalar()
        if highest is not None:
            db.execute(
                text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :highest)"),
                {"table": table.name, "highest": highest},
            )


# --- copy (tenant move) -------------------------------------------------------------


def copy_tenant(source, target):
    """Copy every project and task from the connection ``source`` (in the
    transaction whose snapshot is wanted) to the Session ``target`` (in a
    writing transaction the caller commits), ids, versions and timestamps kept;
    the target must have no projects. Row by row in batches, no JSON between.
    Returns (projects, tasks)."""
    for table in ("projects", "tasks"):
        lock_id_order(target, table)
    if target.execute(select(Project.id).limit(1)).first() is not None:
        raise TransferError(
            "the database has projects already: a tenant moves only into an empty one"
        )
    counts = []
    # Per statement: Connection.execution_options() would change ``source``
    # itself, and the caller's next statement would become a cursor too.
    streamed = {"stream_results": True, "yield_per": BATCH}
    for table in (Project.__table__, Task.__table__):
        copied = 0
        result = source.execute(select(table).order_by(table.c.id), execution_options=streamed)
        for rows in result.mappings().partitions():
            target.execute(insert(table), [dict(row) for row in rows])
            copied += len(rows)
        counts.append(copied)
    _continue_ids(target, target.get_bind().dialect.name)
    return tuple(counts)


def _integrity_problem(key, error):
    """What a refused batch of ``key`` rows says about the file, in words."""
    message = str(getattr(error, "orig", error)).lower()
    if "foreign key" in message:
        return "a task's project_id is not a project of the file"
    if "name_key" in message:
        return "two projects have the same name"
    if "unique" in message or "duplicate" in message:
        return f"an id of {key} appears twice"
    return f"its {key} are refused by the database: {message.splitlines()[0]}"
