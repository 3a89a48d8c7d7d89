"""TenantRequest: the custom Request class, with the request's databases on it."""

import logging
from dataclasses import replace

import transaction
from pyramid.decorator import reify
from pyramid.request import Request
from sqlalchemy.exc import SQLAlchemyError
from webob.cookies import RequestCookies, parse_cookie

from tenantapp.auth import tokens
from tenantapp.auth.sessions import load_login, touch_login
from tenantapp.db.session import may_write, open_request_session
from tenantapp.errors import Forbidden, TenantMoving, TenantRequired, TenantSuspended
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import USABLE_STATUSES

log = logging.getLogger(__name__)


def readable_cookies(header):
    """``{name: value}`` of a ``Cookie`` header (WSGI: its bytes as latin-1).

    WebOb's parser and WebOb's answers (of a name sent twice, the last copy
    counts), except that a cookie it cannot read is no cookie, instead of an
    exception for the whole header: a value that is not UTF-8 (``"x.\\377"``,
    an octal escape in quotes) is skipped as if it had not been sent.
    """
    cookies = {}
    try:
        for raw_name, raw_value in parse_cookie(header):
            try:
                # WebOb's pattern lets ASCII names only through.
                cookies[raw_name.decode("ascii")] = raw_value.decode("utf-8")
            except UnicodeDecodeError:
                continue
    except UnicodeEncodeError:
        return {}  # not latin-1: no WSGI server hands over such a header
    return cookies


class ReadableCookies(RequestCookies):
    """``request.cookies`` through :func:`readable_cookies`.

    WebOb decodes every cookie of the header on first use and raises for all
    of them when one is not UTF-8: one stray byte from a client was a 500 on
    every route that reads any cookie. Cached like WebOb's, per header value.
    """

    @property
    def _cache(self):
        environ = self._environ
        header = environ.get("HTTP_COOKIE", "")
        cache, cached_header = environ.get(self._cache_key, ({}, None))
        if cached_header != header:
            cache = readable_cookies(header)
            environ[self._cache_key] = (cache, header)
        return cache


def _record_use(catalog, touch):
    """A finished callback that commits ``touch`` (the login's "last used")."""

    def record_use(request):
        try:
            with catalog.transaction() as db:
                db.execute(touch)
        except SQLAlchemyError as exc:
            # The answer is given; an unrecorded use only brings the idle
            # expiry closer, and the next request records it again.
            # (The first line only: the rest is the statement and its parameters.)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("could not record the use of a login session: %s", reason)

    return record_use


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

    @property
    def cookies(self):
        """The request's cookies; one that cannot be read is no cookie (see
        :class:`ReadableCookies`), never an exception."""
        return ReadableCookies(self.environ)

    @cookies.setter
    def cookies(self, value):
        Request.cookies.fset(self, value)

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
            # Committed on its own once the request is over, whatever its
            # outcome: a write that fails is still a use, and the catalog is
            # never a second participant in the commit of a tenant write
            # (committed one after the other, a catalog failure after the
            # tenant's commit answered 503 for an applied write). After the
            # request, too, it never waits on the request's own catalog
            # transaction (SQLite has one writer at a time).
            self.add_finished_callback(_record_use(catalog, touch))
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
        membership is gone, ``tenant_suspended`` when the tenant is suspended,
        and, for a write, ``service_unavailable`` while the tenant moves.
        """
        login = self.login
        if login is None or login.chosen_tenant_id is None:
            raise TenantRequired()
        if login.tenant is None:
            raise Forbidden("you are no longer a member of this tenant")
        status = login.tenant.status
        if status != "active":
            if status not in USABLE_STATUSES:
                raise TenantSuspended()
            if may_write(self):
                # `tenant move` is copying its database: reads go on.
                raise TenantMoving(retry_after=self.registry.tenantapp_settings.retry_after)
        return login.tenant

    @reify
    def tenant_factory(self):
        """The DBFactory of the chosen tenant's own database (at the URL the
        login lookup read)."""
        tenant = self.tenant
        return self.registry.getUtility(ITenantDirectory).factory(tenant.name, tenant.db_url)

    @reify
    def tenant_db(self):
        """Session on the chosen tenant's own database."""
        return open_request_session(self, self.tenant_factory)
