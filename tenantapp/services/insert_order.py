"""Ids of a tenant table become visible in increasing order.

A list's ``next`` cursor is the last id it handed out, and a client may keep it
as a feed (API.md, ``Page``). That only holds if no row commits later with a
smaller id than one already visible. Ids are drawn from a sequence when a row
is inserted, and two writers can commit in the other order: A draws 4, B draws
5 and commits, a reader sees 5 and keeps its cursor, A commits 4 behind it.

So an insert into a tenant table first takes a lock per table that it keeps
until its transaction ends: ids are drawn and committed one writer at a time.
On PostgreSQL that is a transaction-scoped advisory lock (released by COMMIT or
ROLLBACK, so nothing can leak it, and PgBouncer's transaction pooling keeps
working); advisory locks belong to one database, and every tenant has its
own, so the constant key is per tenant. On SQLite a writing transaction
starts with BEGIN IMMEDIATE, which already admits one writer at a time.
"""

from sqlalchemy import text

# pg_advisory_xact_lock(space, key): the space is tenantapp's own (no other
# user of advisory locks in a tenant database can take these by accident),
# the key names the table.
ID_ORDER_LOCK_SPACE = 0x7461_7070  # "tapp"
ID_ORDER_LOCKS = {
    "projects": (ID_ORDER_LOCK_SPACE, 1),
    "tasks": (ID_ORDER_LOCK_SPACE, 2),
}

_LOCK = text("SELECT pg_advisory_xact_lock(:space, :key)")


def lock_id_order(db, table_name):
    """Before an insert into ``table_name``: wait until no other transaction
    is inserting into it, and keep it so until this one ends.

    Every code path that inserts rows into a tenant table must call this
    first (in the same transaction), or a kept cursor can miss its rows.
    """
    if db.get_bind().dialect.name == "postgresql":
        space, key = ID_ORDER_LOCKS[table_name]
        db.execute(_LOCK, {"space": space, "key": key})
