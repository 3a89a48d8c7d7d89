"""The component interfaces registered in Pyramid's registry."""

from zope.interface import Attribute, Interface


class IDBFactory(Interface):
    """One database: its engine, its sessions, and a transaction for scripts.

    The catalog's is registered as the named utility ``catalog``; a tenant's
    is kept by the :class:`ITenantDirectory` utility (thousands of tenants are
    no registry utilities) and named ``tenant:{name}``.
    """

    name = Attribute("'catalog', or 'tenant:{name}' for a tenant's database.")
    url = Attribute("The SQLAlchemy URL (with its password hidden in repr).")
    engine = Attribute("The Engine for reading, created on first use and kept for the process.")
    write_engine = Attribute("The Engine for transactions that write (same pool).")

    def session(write=False):
        """Return a new Session bound to this database.

        ``write`` asks for a transaction that will write (SQLite takes the
        write lock at BEGIN, so two writers wait instead of failing).
        """

    def transaction(write=True):
        """Context manager for work outside a request (CLI, jobs).

        Yields a Session; commits when the block succeeds, rolls back when it
        raises, and always closes the session.
        """

    def dispose():
        """Close every pooled (idle) connection; the pool refills on the next use.

        Connections in use are left alone and come back to the same pool.
        """


class ITenantDirectory(Interface):
    """The one place that turns a tenant name into its :class:`IDBFactory`."""

    def factory(name, url=...):
        """Return the DBFactory of tenant ``name``.

        ``url`` is the tenant's ``tenants.db_url`` as the caller just read it
        from the catalog (None: the template's URL); when it is not given,
        the directory reads it. A URL other than the one the directory knows
        for the name (the tenant moved) gets a new factory, and the old one's
        connections are closed. Raises ``LookupError`` when the catalog does
        not know the tenant.
        """

    def url_for(name, own_url=None):
        """The database URL of tenant ``name`` (its own, else the template's)."""

    def dispose_all():
        """Dispose every engine the directory keeps (shutdown, tests)."""
