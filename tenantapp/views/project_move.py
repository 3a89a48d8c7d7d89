"""``POST /api/projects/{id}/move``: a project of the chosen tenant to another tenant."""

from pydantic import StrictStr
from pyramid.view import view_config

from tenantapp.errors import ValidationFailed
from tenantapp.schemas import Body, validate_body
from tenantapp.services import project_move, projects
from tenantapp.views.contract import Endpoint, check_if_match, json_response, object_id

SAME_TENANT = "the project is already in this tenant"


class MoveBody(Body):
    """``POST /api/projects/{id}/move``: the tenant to move the project to."""

    tenant: StrictStr


@view_config(
    route_name="project_move", request_method="POST", api=Endpoint(body=True, permission="write")
)
def move_project(request):
    payload = request.json_payload
    project_id = object_id(request)
    name = payload.get("tenant")
    # API.md's order: the target's 403s, then 404, 412, and the 422s last.
    target = None
    if isinstance(name, str):
        target = project_move.find_target(request.catalog_db, request.login.user_id, name)

    def check(project):
        check_if_match(request, project.version)
        validate_body(MoveBody, payload)

    if target is None or target.name == request.tenant.name:
        # Nothing to move: the answer is one of 404, 412 or 422.
        check_refusal(request, project_id, payload, target)
    moved, task_count = project_move.move_project(request, project_id, target, check)
    body = {
        "tenant": target.as_json(),
        "project": projects.project_json(moved),
        "tasks": task_count,
    }
    return json_response(
        request, body, status=201, headers={"Location": request.route_url("project", id=moved.id)}
    )


def check_refusal(request, project_id, payload, target):
    """404, 412 or 422 for a move that cannot happen, in that order."""
    project = projects.get_project(request.tenant_db, project_id)
    check_if_match(request, project.version)
    validate_body(MoveBody, payload)
    raise ValidationFailed({"tenant": SAME_TENANT})
