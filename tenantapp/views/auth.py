"""Login, the current user, tenant choice and logout."""

from pyramid.view import view_config

from tenantapp.auth import tokens
from tenantapp.auth.sessions import choose_tenant, end_login_session, memberships
from tenantapp.interfaces import IDBFactory
from tenantapp.models.catalog import User
from tenantapp.schemas import ChooseTenantBody, LoginBody, validate_body
from tenantapp.services.login import (
    check_credentials,
    delete_session_cookie,
    find_access,
    open_login_session,
    set_session_cookie,
)
from tenantapp.views.contract import Endpoint, json_response


def me_json(user_id, username, display_name, tenants, tenant, csrf_token):
    """The ``Me`` document of API.md."""
    return {
        "user": {"id": user_id, "username": username, "display_name": display_name},
        "tenants": [t.as_json() for t in tenants],
        "tenant": tenant.as_json() if tenant is not None else None,
        "csrf_token": csrf_token,
    }


@view_config(
    route_name="login", request_method="POST", api=Endpoint(login=False, csrf=False, body=True)
)
def login(request):
    body = validate_body(LoginBody, request.json_payload)
    settings = request.registry.tenantapp_settings
    catalog = request.registry.getUtility(IDBFactory, "catalog")
    now = request.now
    user_id = check_credentials(
        catalog, request.registry.passwords, body.username, body.password, now, settings
    )

    db = request.catalog_db
    user = db.get(User, user_id)
    tenants = memberships(db, user.id)
    if body.tenant is not None:
        chosen = find_access(db, user.id, body.tenant)
    else:
        chosen = tenants[0] if len(tenants) == 1 else None

    # The session the browser had is ended; a new session id on every login.
    previous = request.login.token_hash if request.login is not None else None
    token = open_login_session(
        db, user.id, body.username, chosen.id if chosen else None, now, settings, previous
    )
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
    set_session_cookie(response, settings, token)
    return response


def _me_response(request, tenant):
    """``/api/me`` of the request's login, with ``tenant`` as the chosen one."""
    login = request.login
    return json_response(
        request,
        me_json(
            login.user_id,
            login.username,
            login.display_name,
            memberships(request.catalog_db, login.user_id),
            tenant,
            request.csrf_token,
        ),
    )


@view_config(route_name="me", request_method="GET", api=Endpoint())
def me(request):
    return _me_response(request, request.login.tenant)


@view_config(route_name="session_tenant", request_method="PUT", api=Endpoint(body=True))
def put_session_tenant(request):
    body = validate_body(ChooseTenantBody, request.json_payload)
    login = request.login
    access = find_access(request.catalog_db, login.user_id, body.tenant)
    choose_tenant(request.catalog_db, login.token_hash, access.id)
    return _me_response(request, access)


@view_config(route_name="logout", request_method="POST", api=Endpoint())
def logout(request):
    end_login_session(request.catalog_db, request.login.token_hash)
    response = json_response(request, None, status=204)
    delete_session_cookie(response, request.registry.tenantapp_settings)
    return response
