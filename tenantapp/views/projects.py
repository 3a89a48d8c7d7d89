"""Projects of the chosen tenant."""

from pyramid.view import view_config

from tenantapp.schemas import (
    ProjectCreate,
    ProjectPatch,
    ProjectReplace,
    parse_page,
    parse_task_filters,
    sent_fields,
    validate_body,
)
from tenantapp.services import projects, tasks
from tenantapp.views.contract import (
    Endpoint,
    check_if_match,
    json_response,
    object_id,
    object_response,
)


@view_config(
    route_name="projects", request_method="GET", api=Endpoint(query=parse_page, permission="read")
)
def list_projects(request):
    return json_response(request, projects.list_projects(request.tenant_db, **request.query))


@view_config(
    route_name="projects", request_method="POST", api=Endpoint(body=True, permission="write")
)
def create_project(request):
    body = validate_body(ProjectCreate, request.json_payload)
    project = projects.create_project(
        request.tenant_db, name=body.name, description=body.description, now=request.now
    )
    return object_response(
        request,
        projects.project_json(project),
        status=201,
        location=request.route_url("project", id=project.id),
    )


@view_config(route_name="project", request_method="GET", api=Endpoint(permission="read"))
def get_project(request):
    project = projects.get_project(request.tenant_db, object_id(request))
    return object_response(request, projects.project_json(project))


def _update(request, model, partial):
    db = request.tenant_db
    project = projects.get_project(db, object_id(request), for_update=True)
    check_if_match(request, project.version)
    body = validate_body(model, request.json_payload)
    changes = sent_fields(body) if partial else body.model_dump()
    projects.update_project(db, project, changes, request.now)
    return object_response(request, projects.project_json(project))


@view_config(
    route_name="project", request_method="PUT", api=Endpoint(body=True, permission="write")
)
def replace_project(request):
    return _update(request, ProjectReplace, partial=False)


@view_config(
    route_name="project", request_method="PATCH", api=Endpoint(body=True, permission="write")
)
def patch_project(request):
    return _update(request, ProjectPatch, partial=True)


@view_config(route_name="project", request_method="DELETE", api=Endpoint(permission="write"))
def delete_project(request):
    db = request.tenant_db
    project = projects.get_project(db, object_id(request), for_delete=True)
    check_if_match(request, project.version)
    projects.delete_project(db, project)
    return json_response(request, None, status=204)


@view_config(
    route_name="project_tasks",
    request_method="GET",
    api=Endpoint(query=parse_task_filters, permission="read"),
)
def list_project_tasks(request):
    db = request.tenant_db
    project = projects.get_project(db, object_id(request))
    query = dict(request.query, project_id=project.id)
    if request.query["project_id"] not in (None, project.id):
        # Asked for another project's tasks under this project: none match.
        return json_response(request, {"items": [], "next": None})
    return json_response(request, tasks.list_tasks(db, **query))
