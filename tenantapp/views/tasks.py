"""Tasks of the chosen tenant."""

from pyramid.view import view_config

from tenantapp.schemas import (
    TaskCreate,
    TaskPatch,
    TaskReplace,
    parse_task_filters,
    sent_fields,
    validate_body,
)
from tenantapp.services import tasks
from tenantapp.views.contract import (
    Endpoint,
    check_if_match,
    json_response,
    object_id,
    object_response,
)


@view_config(
    route_name="tasks",
    request_method="GET",
    api=Endpoint(query=parse_task_filters, permission="read"),
)
def list_tasks(request):
    # One SELECT: on a connection of its own, no Session, back in the pool
    # before the JSON is written.
    with request.tenant_factory.engine.connect() as connection:
        page = tasks.list_tasks(connection, **request.query)
    return json_response(request, page)


@view_config(route_name="tasks", request_method="POST", api=Endpoint(body=True, permission="write"))
def create_task(request):
    body = validate_body(TaskCreate, request.json_payload)
    task = tasks.create_task(request.tenant_db, now=request.now, **body.model_dump())
    return object_response(
        request, tasks.task_json(task), status=201, location=request.route_url("task", id=task.id)
    )


@view_config(route_name="task", request_method="GET", api=Endpoint(permission="read"))
def get_task(request):
    task = tasks.get_task(request.tenant_db, object_id(request))
    return object_response(request, tasks.task_json(task))


def _update(request, model, partial):
    db = request.tenant_db
    task = tasks.get_task(db, object_id(request), for_update=True)
    check_if_match(request, task.version)
    body = validate_body(model, request.json_payload)
    changes = sent_fields(body) if partial else body.model_dump()
    tasks.update_task(db, task, changes, request.now)
    return object_response(request, tasks.task_json(task))


@view_config(route_name="task", request_method="PUT", api=Endpoint(body=True, permission="write"))
def replace_task(request):
    return _update(request, TaskReplace, partial=False)


@view_config(route_name="task", request_method="PATCH", api=Endpoint(body=True, permission="write"))
def patch_task(request):
    return _update(request, TaskPatch, partial=True)


@view_config(route_name="task", request_method="DELETE", api=Endpoint(permission="write"))
def delete_task(request):
    db = request.tenant_db
    task = tasks.get_task(db, object_id(request), for_update=True)
    check_if_match(request, task.version)
    tasks.delete_task(db, task)
    return json_response(request, None, status=204)
