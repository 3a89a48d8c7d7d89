"""The two schemas: ``catalog`` (one database) and ``tenant`` (one per tenant).

They have separate declarative bases and metadata, so a tenant table can
never be created in the catalog, or the other way round.
"""
