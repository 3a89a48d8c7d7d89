"""Cursor pagination in id order, shared by every list."""

from sqlalchemy import select

from tenantapp.schemas import encode_cursor


def fetch_page(db, columns, id_column, *, where=(), after_id=0, limit=50):
    """``{"items": [...], "next": cursor | None}`` of rows with id > ``after_id``.

    Reads ``limit + 1`` rows so that ``next`` is null exactly at the end, and
    plain rows rather than ORM objects: a list is only serialized. Walking the
    pages returns every row once, in id order, even while rows are added.
    """
    rows = db.execute(
        select(*columns).where(id_column > after_id, *where).order_by(id_column).limit(limit + 1)
    ).all()
    items = [row._asdict() for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > limit else None
    return {"items": items, "next": next_cursor}
