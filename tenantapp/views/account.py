"""The logged-in user's own account: password and login sessions (no tenant needed)."""

from pyramid.view import view_config

from tenantapp.interfaces import IDBFactory
from tenantapp.schemas import PasswordChangeBody, validate_body
from tenantapp.services import account
from tenantapp.services.login import delete_session_cookie
from tenantapp.views.contract import Endpoint, json_response


@view_config(route_name="me_password", request_method="PUT", api=Endpoint(body=True))
def change_password(request):
    body = validate_body(PasswordChangeBody, request.json_payload)
    # Not request.catalog_db: the service commits in transactions of its own
    # (the throttle's count must stay even when the answer is an error).
    account.change_password(
        request.registry.getUtility(IDBFactory, "catalog"),
        request.registry.passwords,
        request.login,
        body.current_password,
        body.new_password,
        request.now,
        request.registry.tenantapp_settings,
    )
    return json_response(request, None, status=204)


@view_config(route_name="me_sessions", request_method="GET", api=Endpoint())
def list_sessions(request):
    login = request.login
    return json_response(
        request,
        account.list_sessions(
            request.catalog_db,
            login.user_id,
            login.token_hash,
            request.now,
            request.registry.tenantapp_settings,
        ),
    )


@view_config(route_name="me_session", request_method="DELETE", api=Endpoint())
def end_session(request):
    settings = request.registry.tenantapp_settings
    login = request.login
    ended = account.end_session(
        request.catalog_db,
        login.user_id,
        request.matchdict["session_id"],
        settings.secret,
        request.now,
        settings,
    )
    response = json_response(request, None, status=204)
    if ended == login.token_hash:
        delete_session_cookie(response, settings)  # the current session: a logout
    return response
