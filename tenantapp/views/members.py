"""Members of the chosen tenant (admins only), through :mod:`tenantapp.services.members`."""

from pyramid.view import view_config

from tenantapp.errors import ValidationFailed
from tenantapp.schemas import MemberRoleBody, validate_body
from tenantapp.services import members
from tenantapp.views.contract import Endpoint, json_response


@view_config(route_name="members", request_method="GET", api=Endpoint(permission="admin"))
def list_members(request):
    found = members.list_members(request.catalog_db, request.tenant.id)
    return json_response(request, [member.as_json() for member in found])


@view_config(route_name="member", request_method="PUT", api=Endpoint(body=True, permission="admin"))
def put_member(request):
    db = request.catalog_db
    username = request.matchdict["username"]
    try:
        body = validate_body(MemberRoleBody, request.json_payload)
    except ValidationFailed:
        members.find_user(db, username)  # API.md's order: a 404 comes before a 422
        raise
    member, created = members.set_role(db, request.tenant.id, username, body.role)
    return json_response(request, member.as_json(), status=201 if created else 200)


@view_config(route_name="member", request_method="DELETE", api=Endpoint(permission="admin"))
def delete_member(request):
    members.remove_member(request.catalog_db, request.tenant.id, request.matchdict["username"])
    return json_response(request, None, status=204)
