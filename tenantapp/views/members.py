"""Members of the chosen tenant (admins only)."""

from pyramid.view import view_config
from sqlalchemy import select

from tenantapp.models.catalog import Membership, User
from tenantapp.views.contract import Endpoint, json_response


@view_config(route_name="members", request_method="GET", api=Endpoint(permission="admin"))
def list_members(request):
    rows = request.catalog_db.execute(
        select(User.username, User.display_name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == request.tenant.id)
        .order_by(User.username)
    ).all()
    return json_response(request, [row._asdict() for row in rows])
