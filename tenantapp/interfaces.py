"""The component interfaces registered in Pyramid's registry."""

from zope.interface import Attribute, Interface


class IDBFactory(Interface):
    """One database: its engine, its sessions, and a transaction for scripts.

    Registered as a named utility: ``catalog``, and ``tenant:{name}`` for each
    tenant database.
    """

    name = Attribute("The utility name, 'catalog' or 'tenant:{name}'.")
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
        """Close every pooled connection; the pool refills on the next use."""


class ITenantDirectory(Interface):
    """The one place that turns a tenant name into its :class:`IDBFactory`."""

    def factory(name, url=None):
        """Return the DBFactory of tenant ``name``.

        ``url`` is the tenant's own database URL when the caller already read
        it from the catalog; otherwise the directory looks the tenant up.
        Raises ``LookupError`` when the catalog does not know the tenant.
        """

    def url_for(name, own_url=None):
        """The database URL of tenant ``name`` (its own, else the template's)."""

    def dispose_all():
        """Dispose every engine the directory keeps (shutdown, tests)."""
