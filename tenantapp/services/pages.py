"""Cursor pagination in id order, shared by every list.

Lists are read with Core statements built once per shape (which filters are
present) and kept: SQLAlchemy then finds the compiled SQL in its cache at once,
and the rows become plain dicts without ORM objects — a list is only
serialized.
"""

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from tenantapp.db.reads import fetch_all
from tenantapp.schemas import encode_cursor

LIKE_ESCAPE = "/"

_statements = {}


def like_pattern(text):
    """A LIKE pattern matching ``text`` anywhere, with % and _ as plain characters."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


def _page_statement(table, fields, filters):
    key = (table.name, fields, filters)
    statement = _statements.get(key)
    if statement is None:
        conditions = [table.c.id > bindparam("after_id")]
        for name, operator in filters:
            column = table.c[name]
            if operator == "like":
                conditions.append(column.like(bindparam(name), escape=LIKE_ESCAPE))
            else:
                conditions.append(column == bindparam(name))
        statement = (
            select(*(table.c[name] for name in fields))
            .where(*conditions)
            .order_by(table.c.id)
            .limit(bindparam("limit"))
        )
        _statements[key] = statement
    return statement


def fetch_page(db, table, fields, *, filters=(), values=None, after_id=0, limit=50):
    """``{"items": [...], "next": cursor | None}`` of rows with id > ``after_id``.

    ``filters`` are ``(column, "eq" | "like")`` pairs whose values are in
    ``values``. Reads ``limit + 1`` rows so that ``next`` is null exactly at
    the end. Walking the pages returns every row once, in id order, even while
    rows are added. ``db``: a Session, or a Core Connection (a read needs no Session).
    """
    params = dict(values or (), after_id=after_id, limit=limit + 1)
    connection = db.connection() if isinstance(db, Session) else db
    rows = fetch_all(connection, _page_statement(table, fields, filters), params)
    items = [dict(zip(fields, row, strict=True)) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > limit else None
    return {"items": items, "next": next_cursor}
