"""A conflict between transactions is not an outage: ``is_conflict`` versus ``is_unavailable``.

The errors are real ones, raised by the database: a serialization failure
and a deadlock on PostgreSQL, a busy SQLite file, a refused connection.
"""

import time

import psycopg2.extensions
import pytest
from races import WAIT_LIMIT, LockHolder, in_thread
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from pg_cluster import free_port
from tenantapp.db import session as db_session
from tenantapp.db.engines import normalize_url
from tenantapp.models.tenant import Project


def classify(exc):
    return {
        "unavailable": db_session.is_unavailable(exc),
        "conflict": db_session.is_conflict(exc),
    }


def two_projects(admin):
    with admin.directory.factory("acme").transaction() as db:
        db.add_all([Project(name="one"), Project(name="two")])
        db.flush()
        return [p.id for p in db.query(Project).order_by(Project.id)]


def acme_engine(admin, **options):
    return create_engine(
        normalize_url(admin.directory.url_for("acme")), poolclass=NullPool, **options
    )


@pytest.mark.postgresql_only
def test_a_serialization_failure_is_a_conflict_not_an_outage(admin):
    two_projects(admin)
    engine = acme_engine(admin, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as first, engine.connect() as second:
            second.execute(select(Project.name)).all()  # its snapshot is taken
            first.execute(update(Project).values(description="first"))
            first.commit()
            with pytest.raises(DBAPIError) as caught:
                second.execute(update(Project).values(description="second"))
            second.rollback()
    finally:
        engine.dispose()
    assert caught.value.orig.pgcode == "40001"
    assert isinstance(caught.value.orig, psycopg2.extensions.TransactionRollbackError)
    assert classify(caught.value) == {"unavailable": False, "conflict": True}


@pytest.mark.postgresql_only
def test_a_deadlock_is_a_conflict_not_an_outage(admin):
    first_id, second_id = two_projects(admin)
    lock = "SELECT id FROM projects WHERE id = %s FOR UPDATE"
    holder = LockHolder(admin.directory.url_for("acme"))
    holder.execute("SET deadlock_timeout = '60s'")  # the other side detects the deadlock
    holder.execute(lock, (first_id,))
    engine = acme_engine(admin)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET deadlock_timeout = '50ms'")
            connection.execute(text(lock.replace("%s", ":id")), {"id": second_id})
            blocked = in_thread(holder.execute, lock, (second_id,))
            deadline = time.monotonic() + WAIT_LIMIT
            while not connection.execute(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": holder.pid},
            ).scalar_one():
                assert time.monotonic() < deadline, "the lock holder never waited"
                time.sleep(0.01)
            with pytest.raises(DBAPIError) as caught:
                connection.execute(text(lock.replace("%s", ":id")), {"id": first_id})
            connection.rollback()
        blocked.result()  # the holder got its row once the deadlock was broken
    finally:
        holder.release()
        engine.dispose()
    assert caught.value.orig.pgcode == "40P01"
    assert classify(caught.value) == {"unavailable": False, "conflict": True}


def test_a_busy_sqlite_file_is_unavailable_not_a_conflict(tmp_path):
    engine = create_engine(
        f"sqlite:///{tmp_path}/busy.sqlite", poolclass=NullPool, connect_args={"timeout": 0}
    )
    try:
        with engine.connect() as holder, engine.connect() as other:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(DBAPIError) as caught:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            holder.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()
    assert "database is locked" in str(caught.value.orig)
    assert classify(caught.value) == {"unavailable": True, "conflict": False}


def test_a_refused_connection_is_unavailable_not_a_conflict():
    engine = create_engine(
        f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing",
        poolclass=NullPool,
        connect_args={"connect_timeout": 2},
    )
    with pytest.raises(DBAPIError) as caught:
        engine.connect()
    assert classify(caught.value) == {"unavailable": True, "conflict": False}


def test_anything_else_is_neither():
    assert classify(ValueError("not a database error")) == {
        "unavailable": False,
        "conflict": False,
    }
