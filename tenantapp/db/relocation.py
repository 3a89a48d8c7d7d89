"""`tenant move`: the old database's side, locked while it is copied, fenced after.

The copy is taken inside one transaction on the old database that first locks
its tables against writers (reads go on). Before that transaction ends, the
same transaction creates triggers that refuse every write to the old tables:
committing it releases the lock and fences the database in one step. A
request that read the old URL before the catalog changed, and was waiting
on the lock (or comes later), gets the fence's error instead of writing where
no one will read; the app answers it by running the request again, which
reads the catalog anew and writes to the new database (see
:func:`is_moved_error` and tenantapp.views.errors).
"""

from sqlalchemy.exc import DBAPIError

#: Written by the fence's triggers; recognised by :func:`is_moved_error`.
MOVED_MESSAGE = "tenantapp: this tenant moved to another database"

#: The SQLSTATE of the fence's error on PostgreSQL: read_only_sql_transaction,
#: what a write to a read-only database answers.
MOVED_SQLSTATE = "25006"

TABLES = ("projects", "tasks")


def lock_for_copy(connection, lock_timeout_s):
    """In ``connection``'s new writing transaction, before any query: wait for
    the writers in flight to finish (``lock_timeout_s`` at most) and keep new
    ones waiting until the transaction ends; reads are not blocked. The
    transaction then reads one snapshot, taken after the last writer."""
    if connection.dialect.name == "postgresql":
        # LOCK before the first query: the snapshot is taken after it
        # (the pattern PostgreSQL's LOCK documentation gives).
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        # SHARE ROW EXCLUSIVE: conflicts with the writers' ROW EXCLUSIVE,
        # not with SELECT (nor SELECT ... FOR UPDATE's ROW SHARE).
        connection.exec_driver_sql(f"LOCK TABLE {', '.join(TABLES)} IN SHARE ROW EXCLUSIVE MODE")
    # SQLite: the writing transaction's BEGIN IMMEDIATE holds the one write
    # lock already (taken once the writers in flight are done, within the
    # busy timeout); readers go on in WAL mode.


def fence(connection):
    """In the transaction of :func:`lock_for_copy`: make every later write to
    the tables fail with :data:`MOVED_MESSAGE`. Takes effect when the
    transaction commits."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION tenantapp_moved() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{MOVED_MESSAGE}' USING ERRCODE = '{MOVED_SQLSTATE}'; "
            "END $$"
        )
        for table in TABLES:
            # FOR EACH STATEMENT: an UPDATE or DELETE that matches nothing
            # is refused too (it would answer 404 from stale data).
            connection.exec_driver_sql(
                f"CREATE TRIGGER tenantapp_moved BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION tenantapp_moved()"
            )
        return
    # SQLite has row triggers only.
    for table in TABLES:
        for operation in ("INSERT", "UPDATE", "DELETE"):
            connection.exec_driver_sql(
                f"CREATE TRIGGER tenantapp_moved_{table}_{operation.lower()} "
                f"BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{MOVED_MESSAGE}'); END"
            )


def is_moved_error(exc):
    """True for the error of a write to a database the tenant moved away from:
    worth running the request again, which finds the new database."""
    if not isinstance(exc, DBAPIError):
        return False
    return MOVED_MESSAGE in str(exc.orig)
