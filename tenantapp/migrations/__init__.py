"""Alembic, run from code: one history for the catalog, one for every tenant.

Each database records its own version in its ``alembic_version`` table, so a
half-migrated fleet shows which tenant is where, and running the migration
again resumes where it stopped.
"""

import functools
import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tenantapp.db.engines import normalize_url

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = ("catalog", "tenant")


def alembic_config(schema, connection=None):
    """An Alembic Config for ``schema`` ('catalog' or 'tenant')."""
    if schema not in SCHEMAS:
        raise ValueError(schema)
    config = Config()
    config.set_main_option("script_location", os.path.join(HERE, schema))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision(schema):
    """The newest revision of ``schema``'s history (read once per process)."""
    return ScriptDirectory.from_config(alembic_config(schema)).get_current_head()


def current_revision(connection):
    """The revision a database is at, or None when it has no schema yet."""
    return MigrationContext.configure(connection).get_current_revision()


_STORED_REVISION = text("SELECT version_num FROM alembic_version")


def catalog_behind(connection):
    """What to do when the catalog's schema is older than this code, else None.

    One plain query: /readyz asks every few seconds, and Alembic's
    MigrationContext would log two lines per call.
    """
    stored, needed = connection.execute(_STORED_REVISION).scalar(), head_revision("catalog")
    if stored == needed:
        return None
    return (
        f"the catalog schema is at {stored}, this version needs {needed}: "
        "run tenantapp-admin CONFIG init"
    )


def upgrade(engine, schema):
    """Bring the database behind ``engine`` to the newest revision of ``schema``.

    Idempotent: a database already at head is left as it is. Not for two
    threads at once: Alembic's ``context`` is process-global (see
    :func:`upgrade_url`, which the fleet migration runs in worker processes).
    """
    with engine.begin() as connection:
        command.upgrade(alembic_config(schema, connection), "head")


def revision_at(url):
    """The revision of the database at ``url`` (None: no schema yet); raises when
    it cannot be reached. Safe in threads (it does not run Alembic's env)."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()


def upgrade_url(url, schema="tenant"):
    """Upgrade the database at ``url`` with an engine of its own; returns its revision.

    Runs in a worker process of ``tenant migrate --jobs N``.
    """
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        upgrade(engine, schema)
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()
