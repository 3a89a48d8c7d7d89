"""Login, the current user, tenant choice and logout."""

from pyramid.view import view_config
from sqlalchemy import select

from tenantapp.auth import throttle, tokens
from tenantapp.auth.sessions import (
    choose_tenant,
    end_login_session,
    membership,
    memberships,
    start_login_session,
)
from tenantapp.db.directory import is_valid_tenant_name
from tenantapp.errors import Forbidden, TenantSuspended, TooManyRequests, Unauthenticated
from tenantapp.interfaces import IDBFactory
from tenantapp.models.catalog import User
from tenantapp.schemas import ChooseTenantBody, LoginBody, validate_body
from tenantapp.views.contract import Endpoint, json_response

NOT_A_MEMBER = "you are not a member of this tenant"


def me_json(user_id, username, display_name, tenants, tenant, csrf_token):
    """The ``Me`` document of API.md."""
    return {
        "user": {"id": user_id, "username": username, "display_name": display_name},
        "tenants": [t.as_json() for t in tenants],
        "tenant": tenant.as_json() if tenant is not None else None,
        "csrf_token": csrf_token,
    }


def find_access(db, user_id, tenant_name):
    """The user's usable access to ``tenant_name``: 403 ``forbidden`` when there is
    none (not a member, no such tenant, not a tenant name: one answer), 403
    ``tenant_suspended`` when the tenant is suspended."""
    access = membership(db, user_id, tenant_name) if is_valid_tenant_name(tenant_name) else None
    if access is None:
        raise Forbidden(NOT_A_MEMBER)
    if access.status != "active":
        raise TenantSuspended()
    return access


@view_config(
    route_name="login", request_method="POST", api=Endpoint(login=False, csrf=False, body=True)
)
def login(request):
    body = validate_body(LoginBody, request.json_payload)
    settings = request.registry.tenantapp_settings
    catalog = request.registry.getUtility(IDBFactory, "catalog")
    now = request.now

    # Checked in a short transaction of its own, before the request's catalog
    # session exists: a failure is recorded (and committed) on its own, and the
    # password hash is computed while no connection is held.
    with catalog.transaction(write=False) as lookup:
        wait = throttle.retry_after(lookup, body.username, now, settings)
        user = lookup.execute(
            select(User.id, User.password_hash, User.disabled).where(User.username == body.username)
        ).first()
    if wait:
        raise TooManyRequests(wait)
    # Unknown user, wrong password and disabled user: same answer, same cost.
    password_ok = request.registry.passwords.verify(
        user.password_hash if user else None, body.password
    )
    if not password_ok or user.disabled:
        throttle.record_failure(catalog, body.username, now, settings)
        raise Unauthenticated("wrong username or password")

    db = request.catalog_db
    user = db.get(User, user.id)
    tenants = memberships(db, user.id)
    if body.tenant is not None:
        chosen = find_access(db, user.id, body.tenant)
    else:
        chosen = tenants[0] if len(tenants) == 1 else None

    throttle.clear_failures(db, body.username)
    # A new session id on every login; the session the browser had is ended.
    if request.login is not None:
        end_login_session(db, request.login.token_hash)
    token = start_login_session(db, user.id, chosen.id if chosen else None, now, settings)
    hashed = tokens.token_hash(token)

    response = json_response(
        request,
        me_json(
            user.id,
            user.username,
            user.display_name,
            tenants,
            chosen,
            tokens.csrf_token(settings.secret, hashed),
        ),
    )
    response.set_cookie(
        settings.cookie_name,
        tokens.sign_token(settings.secret, token),
        max_age=settings.session_max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )
    return response


@view_config(route_name="me", request_method="GET", api=Endpoint())
def me(request):
    login = request.login
    return json_response(
        request,
        me_json(
            login.user_id,
            login.username,
            login.display_name,
            memberships(request.catalog_db, login.user_id),
            login.tenant,
            request.csrf_token,
        ),
    )


@view_config(route_name="session_tenant", request_method="PUT", api=Endpoint(body=True))
def put_session_tenant(request):
    body = validate_body(ChooseTenantBody, request.json_payload)
    login = request.login
    db = request.catalog_db
    access = find_access(db, login.user_id, body.tenant)
    choose_tenant(db, login.token_hash, access.id)
    return json_response(
        request,
        me_json(
            login.user_id,
            login.username,
            login.display_name,
            memberships(db, login.user_id),
            access,
            request.csrf_token,
        ),
    )


@view_config(route_name="logout", request_method="POST", api=Endpoint())
def logout(request):
    end_login_session(request.catalog_db, request.login.token_hash)
    response = json_response(request, None, status=204)
    settings = request.registry.tenantapp_settings
    response.delete_cookie(settings.cookie_name, path="/")
    return response
