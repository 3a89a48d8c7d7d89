"""The engines: reads in autocommit, writes in explicit transactions, a lean driver."""

import time

import psycopg2.errors
import psycopg2.extensions
import pytest
from sqlalchemy import inspect, text

from tenantapp.db.engines import AutocommitConnection


def test_a_transaction_on_the_writing_engine_is_all_or_nothing(admin):
    """The CLI migrates through ``write_engine``: DDL that fails half-way leaves nothing."""
    factory = admin.directory.factory("acme")
    with pytest.raises(RuntimeError), factory.write_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE half_done (id INTEGER)")
        raise RuntimeError("the migration failed after its first statement")
    with factory.engine.connect() as connection:
        assert "half_done" not in inspect(connection).get_table_names()


@pytest.mark.postgresql_only
def test_a_reading_session_sends_no_begin(admin):
    """Reads run in autocommit (no BEGIN/COMMIT round trips): each statement has
    its own snapshot; a writing session has one transaction for all of them."""
    factory = admin.directory.factory("acme")
    for write, in_transaction in ((False, False), (True, True)):
        session = factory.session(write=write)
        try:
            first = session.execute(text("SELECT clock_timestamp(), now()")).one()
            time.sleep(0.01)
            second = session.execute(text("SELECT now()")).scalar_one()
        finally:
            session.close()
        assert (second == first[1]) is in_transaction
        assert (second > first[0]) is not in_transaction


@pytest.mark.postgresql_only
def test_the_driver_ends_an_open_transaction_and_sends_nothing_otherwise(admin):
    """In autocommit, commit() and rollback() end the explicit transaction that
    is open (SQLAlchemy ends every transaction, and the pool resets every
    connection checked in, through them), and with none open send nothing
    (no round trip, no GIL release). Outside autocommit, psycopg2's own."""
    proxy = admin.directory.factory("acme").engine.raw_connection()
    try:
        connection = proxy.dbapi_connection
        assert isinstance(connection, AutocommitConnection)
        assert connection.autocommit
        cursor = connection.cursor()
        status = connection.info

        cursor.execute("BEGIN")
        cursor.execute("CREATE TEMP TABLE rolled_back (x int)")
        connection.rollback()
        assert status.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        cursor.execute("BEGIN")
        cursor.execute("CREATE TEMP TABLE committed (x int)")
        connection.commit()
        assert status.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        cursor.execute("BEGIN")
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cursor.execute("SELECT 1 / 0")
        connection.rollback()  # a failed transaction too
        assert status.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        cursor.execute(
            "SELECT to_regclass('pg_temp.rolled_back') IS NULL, "
            "to_regclass('pg_temp.committed') IS NOT NULL"
        )
        assert cursor.fetchone() == (True, True)

        # No transaction open: the server sees nothing (its last statement stays).
        cursor.execute("SELECT 'last statement'")
        connection.commit()
        connection.rollback()
        with admin.directory.factory("acme").engine.connect() as other:
            last = other.execute(
                text("SELECT query FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": status.backend_pid},
            ).scalar_one()
        assert last == "SELECT 'last statement'"

        connection.autocommit = False
        cursor.execute("CREATE TEMP TABLE outside_rolled_back (x int)")
        connection.rollback()
        cursor.execute("CREATE TEMP TABLE outside_committed (x int)")
        connection.commit()
        cursor.execute(
            "SELECT to_regclass('pg_temp.outside_rolled_back') IS NULL, "
            "to_regclass('pg_temp.outside_committed') IS NOT NULL"
        )
        assert cursor.fetchone() == (True, True)
    finally:
        proxy.invalidate()  # changed by hand: not for the pool
