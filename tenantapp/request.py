"""TenantRequest: the custom Request class, with the request's databases on it."""

from dataclasses import replace

import transaction
from pyramid.decorator import reify
from pyramid.request import Request

from tenantapp.auth import tokens
from tenantapp.auth.sessions import load_login, touch_login
from tenantapp.db.session import SAFE_METHODS, open_request_session
from tenantapp.errors import Forbidden, TenantRequired, TenantSuspended
from tenantapp.interfaces import IDBFactory, ITenantDirectory


class TenantRequest(Request):
    """A request that knows its login, its tenant and their databases.

    Every attribute is reified: computed on first use, once per request, and
    never shared with another request.
    """

    @reify
    def tm(self):
        """This request's own transaction manager (pyramid_tm's tween drives it).

        Explicit mode, as pyramid_tm's ``explicit_manager``: nothing begins
        by accident, and nothing is shared with another request or thread
        (the ``transaction`` package's default manager is thread-local).
        """
        return self.environ.get("tm.manager") or transaction.TransactionManager(explicit=True)

    @reify
    def now(self):
        """The request's clock reading (aware UTC), one value per request."""
        return self.registry.clock()

    @reify
    def catalog_db(self):
        """Session on the catalog database, joined to the request's transaction."""
        return open_request_session(self, self.registry.getUtility(IDBFactory, "catalog"))

    @reify
    def login(self):
        """The live login session behind the cookie, or None."""
        settings = self.registry.tenantapp_settings
        cookie = self.cookies.get(settings.cookie_name)
        if not cookie:
            return None
        token = tokens.unsign_token(settings.secret, cookie)
        if token is None:
            return None
        catalog = self.registry.getUtility(IDBFactory, "catalog")
        # Not through catalog_db: the lookup is one SELECT, and its connection
        # goes back to the pool at once instead of being held while the view
        # works on the tenant's database. (A failure to connect is a 503 by
        # the exception view, like any database error.)
        with catalog.engine.connect() as connection:
            login = load_login(connection, tokens.token_hash(token), self.now, settings)
        if login is None:
            return None
        touch = touch_login(login, self.now, settings)
        if touch is not None:
            # A writing request records the use in its own transaction; a
            # reading one has none, so it commits the one UPDATE on its own.
            if self.method in SAFE_METHODS:
                with catalog.transaction() as db:
                    db.execute(touch)
            else:
                self.catalog_db.execute(touch)
            login = replace(login, last_used_at=self.now)
        return login

    @reify
    def csrf_token(self):
        login = self.login
        if login is None:
            return None
        return tokens.csrf_token(self.registry.tenantapp_settings.secret, login.token_hash)

    @reify
    def tenant(self):
        """The chosen tenant, after the membership and status checks.

        Raises ``tenant_required`` when none is chosen, ``forbidden`` when the
        membership is gone, ``tenant_suspended`` when the tenant is suspended.
        """
        login = self.login
        if login is None or login.chosen_tenant_id is None:
            raise TenantRequired()
        if login.tenant is None:
            raise Forbidden("you are no longer a member of this tenant")
        if login.tenant.status != "active":
            raise TenantSuspended()
        return login.tenant

    @reify
    def tenant_db(self):
        """Session on the chosen tenant's own database."""
        tenant = self.tenant
        directory = self.registry.getUtility(ITenantDirectory)
        return open_request_session(self, directory.factory(tenant.name, tenant.db_url))
