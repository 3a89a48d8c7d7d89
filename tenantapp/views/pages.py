"""Server-rendered pages: what the JSON API offers, in a browser, without JavaScript.

The pages live outside ``/api`` and call the same services as the JSON views
(:mod:`tenantapp.services`). The API's contract deriver does not apply to them;
the ``page=Page(...)`` view option gives each page view its own checks, in the
API's order: a body within the size limit (413), a login (otherwise a redirect
to the login page), the CSRF token of every POST form (403), a usable chosen
tenant (otherwise a redirect to the tenant chooser, which says why), and the
role for writes and for the members pages (403, however the form was made).

Status codes: a form that comes back to the person with something to act on
(a wrong password, a throttled login, an invalid field, a stale edit) is a 200
page with the message in place, and the request's transaction is doomed, so
nothing of it is written; a browser reports every 4xx document as an error,
and these are ordinary turns of the conversation. What the pages themselves
never send (a missing or wrong CSRF token, a viewer's write, an unknown id)
gets its 4xx status. Every error outside ``/api`` is the HTML error page
(:func:`error_page`), also when it is raised before a page view runs (an
unknown URL, a wrong method, a catalog that does not answer, a bug): the
exception views of :mod:`tenantapp.views.errors` render it too.
"""

import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.view import view_config

from tenantapp.auth import tokens
from tenantapp.auth.sessions import choose_tenant, end_login_session, memberships
from tenantapp.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    TenantRequired,
    TenantSuspended,
    TooManyRequests,
    Unauthenticated,
    ValidationFailed,
)
from tenantapp.interfaces import IDBFactory
from tenantapp.routes import OBJECT_ID
from tenantapp.schemas import (
    LoginBody,
    ProjectCreate,
    ProjectReplace,
    TaskCreate,
    TaskPatch,
    TaskReplace,
    parse_page,
    parse_task_filters,
    validate_body,
)
from tenantapp.services import account, members, project_move, projects, tasks
from tenantapp.services import login as login_service
from tenantapp.views.contract import MAX_BODY_BYTES, declared_length, object_id

STATUS_LABELS = {"open": "Open", "in_progress": "In progress", "done": "Done"}
TASKS_PER_PAGE = "20"
PROJECT_FIELDS = ("name", "description")
TASK_FIELDS = ("title", "status", "assignee", "due_date")

# The login form's CSRF protection, before there is a session to derive a
# token from: a random nonce in a cookie of its own, and in the form the
# CSRF token of that nonce (double submit, signed with the app's secret).
LOGIN_FORM_COOKIE = "login_form"
_LOGIN_NONCE = re.compile(r"[A-Za-z0-9_-]{22,64}")

# A path on this site, for "come back here" fields (no open redirect).
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_\-.~%?=&+]*")

STALE_MESSAGE = (
    "Someone else changed it first. These are the current values; your changes "
    "were not saved. Make them again if they still apply."
)


@dataclass(frozen=True)
class Page:
    """What a page view needs before it runs (the pages' counterpart of
    :class:`~tenantapp.views.contract.Endpoint`).

    - ``login``: a live login session; a visitor without one is sent to the
      login page. Every POST then carries the form field ``csrf_token``.
    - ``tenant``: a usable chosen tenant; otherwise to the tenant chooser.
    - ``write``: the ``write`` permission (editor or admin) in that tenant.
    - ``admin``: the ``admin`` permission (managing the tenant's members).
    """

    login: bool = True
    tenant: bool = True
    write: bool = False
    admin: bool = False


def page_checks(view, info):
    """The view deriver behind the ``page`` view option."""
    page = info.options.get("page")
    if page is None:
        return view

    def checked_view(context, request):
        response = _refusal(page, request)
        if response is None:
            try:
                response = view(context, request)
            except APIError as error:
                # The project's own errors (404 for an object, a malformed
                # filter, a database that does not answer...) as a page.
                response = error_page(request, error.status, error.message, error.headers)
        # One person's data: no cache keeps it, and Back after a logout
        # asks the server again (which sends the visitor to the login page).
        response.headers["Cache-Control"] = "no-store"
        return response

    return checked_view


page_checks.options = ("page",)


def _refusal(page, request):
    """The answer when ``page``'s needs are not met, else None."""
    if declared_length(request) > MAX_BODY_BYTES:
        # Refused before the form is parsed.
        return error_page(request, 413, PayloadTooLarge.message)
    if not page.login:
        return None
    if request.login is None:
        return HTTPSeeOther(request.route_url("page_login"))
    if request.method == "POST" and not tokens.csrf_matches(
        request.registry.tenantapp_settings.secret,
        request.login.token_hash,
        request.POST.get("csrf_token", ""),
    ):
        return error_page(
            request,
            403,
            "this form has expired or did not come from this site; "
            "go back, reload the page and try again",
        )
    if page.tenant:
        try:
            request.tenant  # noqa: B018 (raises when no usable tenant)
        except (TenantRequired, Forbidden, TenantSuspended):
            # None chosen, the membership is gone, or the tenant is suspended:
            # the chooser says which.
            return HTTPSeeOther(request.route_url("page_tenants"))
    if page.write and not request.has_permission("write"):
        return error_page(request, 403, "your role in this tenant does not allow changes")
    if page.admin and not request.has_permission("admin"):
        return error_page(request, 403, "only the admins of this tenant manage its members")
    return None


def sentence(text):
    """A message as a sentence: the API's lower-case messages start upper-case
    and end with a full stop (the templates' ``sentence`` filter)."""
    text = str(text).strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _render(request, template, status=200, **values):
    values.setdefault("statuses", STATUS_LABELS)
    response = render_to_response(template, values, request=request)
    response.status = status
    return response


def error_page(request, status, message, headers=None):
    """The HTML error page: ``message`` as a sentence, with ``status`` and
    ``headers`` (Retry-After, Allow, X-Request-Id) as the JSON answer has them.

    What a person gets for any error outside ``/api``, from a page view or from
    the exception views. The top bar shows the login only when this request
    has already read it: an error page never queries the catalog (the catalog
    may be what failed, and an unknown URL should cost no query).
    """
    response = _render(
        request,
        "error.jinja2",
        status=status,
        message=message,
        # reify keeps a value it computed in the instance's __dict__.
        known_login=vars(request).get("login"),
    )
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def _form_again(request, template, **values):
    """A form back to the person with its messages: 200, and nothing this
    request did is written (a POST always has a transaction to doom)."""
    request.tm.doom()
    return _render(request, template, **values)


def _redirect(request, route_name, **kw):
    return HTTPSeeOther(request.route_url(route_name, **kw))


def _can_write(request):
    return bool(request.has_permission("write"))


def _form(request, names):
    return {name: request.POST.get(name, "") for name in names}


def _params(request):
    """The query string's fields; 400 when it is not UTF-8."""
    try:
        return request.GET
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None


def _query(parse, params):
    """``params`` parsed by ``parse`` (a schema's query parser), empty fields
    left out (an empty filter field means no filter); 400 for a malformed one."""
    return parse({name: value for name, value in params.items() if value})


def _stale(request, stored):
    """True when the form was filled in from another version than the stored one
    (the pages' If-Match: every edit and delete form carries ``version``)."""
    raw = request.POST.get("version", "")
    if not re.fullmatch(r"[1-9]\d{0,9}", raw):
        raise BadRequest("the form carries no valid version")
    return int(raw) != stored.version


def _local_path(value, default):
    """``value`` if it is a path on this site, else ``default``."""
    return value if _LOCAL_PATH.fullmatch(value or "") else default


# --- home, login, logout, tenant choice ------------------------------------------


@view_config(route_name="page_home", request_method="GET", page=Page(login=False, tenant=False))
def home(request):
    login = request.login
    if login is None:
        return _redirect(request, "page_login")
    if login.tenant is not None and login.tenant.status != "suspended":
        return _redirect(request, "page_projects")
    return _redirect(request, "page_tenants")


def _login_form_key(nonce):
    return f"login-form:{nonce}"


def _login_page(request, status=200, username="", message=None, errors=None):
    nonce = request.cookies.get(LOGIN_FORM_COOKIE, "")
    if not _LOGIN_NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(24)
    settings = request.registry.tenantapp_settings
    response = _render(
        request,
        "login.jinja2",
        status=status,
        username=username,
        message=message,
        errors=errors or {},
        form_token=tokens.csrf_token(settings.secret, _login_form_key(nonce)),
    )
    response.set_cookie(
        LOGIN_FORM_COOKIE,
        nonce,
        path=request.route_path("page_login"),
        httponly=True,
        samesite="Strict",
        secure=settings.cookie_secure,
    )
    return response


@view_config(route_name="page_login", request_method="GET", page=Page(login=False, tenant=False))
def login_form(request):
    if request.login is not None:
        return _redirect(request, "page_home")
    return _login_page(request)


@view_config(route_name="page_login", request_method="POST", page=Page(login=False, tenant=False))
def login_submit(request):
    """The JSON login's logic (:mod:`tenantapp.services.login`) behind a form."""
    settings = request.registry.tenantapp_settings
    nonce = request.cookies.get(LOGIN_FORM_COOKIE, "")
    username = request.POST.get("username", "")
    if not _LOGIN_NONCE.fullmatch(nonce) or not tokens.csrf_matches(
        settings.secret, _login_form_key(nonce), request.POST.get("csrf_token", "")
    ):
        return _login_page(
            request,
            status=403,
            username=username,
            message="The login form had expired. Please log in again.",
        )
    try:
        body = validate_body(
            LoginBody, {"username": username, "password": request.POST.get("password", "")}
        )
        user_id = login_service.check_credentials(
            request.registry.getUtility(IDBFactory, "catalog"),
            request.registry.passwords,
            body.username,
            body.password,
            request.now,
            settings,
        )
    except ValidationFailed as error:
        request.tm.doom()
        return _login_page(request, username=username, errors=error.fields)
    except TooManyRequests as error:
        request.tm.doom()
        minutes = math.ceil(int(error.headers["Retry-After"]) / 60)
        return _login_page(
            request,
            username=username,
            message="Too many failed logins for this username. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        )
    except Unauthenticated:
        request.tm.doom()
        return _login_page(request, username=username, message="Wrong username or password.")

    db = request.catalog_db
    tenants = memberships(db, user_id)
    # As the JSON login: a user with exactly one tenant has it chosen.
    chosen = tenants[0] if len(tenants) == 1 else None
    previous = request.login.token_hash if request.login is not None else None
    token = login_service.open_login_session(
        db, user_id, body.username, chosen.id if chosen else None, request.now, settings, previous
    )
    chosen_usable = chosen is not None and chosen.status != "suspended"
    response = _redirect(request, "page_projects" if chosen_usable else "page_tenants")
    login_service.set_session_cookie(response, settings, token)
    response.delete_cookie(LOGIN_FORM_COOKIE, path=request.route_path("page_login"))
    return response


@view_config(route_name="page_logout", request_method="POST", page=Page(tenant=False))
def logout(request):
    end_login_session(request.catalog_db, request.login.token_hash)
    response = _redirect(request, "page_login")
    login_service.delete_session_cookie(response, request.registry.tenantapp_settings)
    return response


@view_config(route_name="page_tenants", request_method="GET", page=Page(tenant=False))
def tenant_chooser(request):
    login = request.login
    notice = None
    if login.chosen_tenant_id is not None and login.tenant is None:
        notice = "You are no longer a member of the tenant you had chosen. Choose another one."
    elif login.tenant is not None and login.tenant.status == "suspended":
        notice = f"{login.tenant.display_name} is suspended. Choose another tenant."
    return _render(
        request,
        "tenants.jinja2",
        tenants=memberships(request.catalog_db, login.user_id),
        notice=notice,
    )


@view_config(route_name="page_tenants", request_method="POST", page=Page(tenant=False))
def tenant_choose(request):
    login = request.login
    # Not a member, no such tenant, suspended: the API's 403s, as a page.
    access = login_service.find_access(
        request.catalog_db, login.user_id, request.POST.get("tenant", "")
    )
    choose_tenant(request.catalog_db, login.token_hash, access.id)
    return _redirect(request, "page_projects")


# --- projects --------------------------------------------------------------------


@view_config(route_name="page_projects", request_method="GET", page=Page())
def project_list(request):
    db = request.tenant_db
    params = _params(request)
    page = projects.list_projects(db, **_query(parse_page, params))
    next_url = None
    if page["next"] is not None:
        next_url = request.route_path("page_projects", _query={"after": page["next"]})
    return _render(
        request,
        "projects.jinja2",
        projects=page["items"],
        counts=tasks.count_tasks_by_project(db, [p["id"] for p in page["items"]]),
        next_url=next_url,
        first_url=request.route_path("page_projects") if params.get("after") else None,
        can_write=_can_write(request),
        form=dict.fromkeys(PROJECT_FIELDS, ""),
        errors={},
    )


@view_config(route_name="page_projects", request_method="POST", page=Page(write=True))
def project_create(request):
    form = _form(request, PROJECT_FIELDS)
    try:
        body = validate_body(ProjectCreate, form)
        project = projects.create_project(
            request.tenant_db, name=body.name, description=body.description, now=request.now
        )
    except ValidationFailed as error:
        return _form_again(
            request, "project_form.jinja2", project=None, form=form, errors=error.fields
        )
    return _redirect(request, "page_project", id=project.id)


@view_config(route_name="page_project_edit", request_method="GET", page=Page(write=True))
def project_edit_form(request):
    project = projects.get_project(request.tenant_db, object_id(request))
    return _render(
        request,
        "project_form.jinja2",
        project=project,
        form={"name": project.name, "description": project.description},
        version=project.version,
        errors={},
    )


@view_config(route_name="page_project_edit", request_method="POST", page=Page(write=True))
def project_edit(request):
    db = request.tenant_db
    # Writes lock the row they read, as the JSON views do.
    project = projects.get_project(db, object_id(request), for_update=True)
    if _stale(request, project):
        return _form_again(
            request,
            "project_form.jinja2",
            project=project,
            form={"name": project.name, "description": project.description},
            version=project.version,
            errors={},
            stale=STALE_MESSAGE,
        )
    # What the page shows about the project if the change is refused.
    shown = {"id": project.id, "name": project.name}
    form = _form(request, PROJECT_FIELDS)
    try:
        body = validate_body(ProjectReplace, form)
        projects.update_project(db, project, body.model_dump(), request.now)
    except ValidationFailed as error:
        return _form_again(
            request,
            "project_form.jinja2",
            project=shown,
            form=form,
            version=request.POST["version"],
            errors=error.fields,
        )
    return _redirect(request, "page_projects")


def _delete_project_page(request, project, stale=None):
    count = tasks.count_tasks_by_project(request.tenant_db, [project.id])[project.id]
    page = _form_again if stale else _render
    return page(request, "project_delete.jinja2", project=project, task_count=count, stale=stale)


@view_config(route_name="page_project_delete", request_method="GET", page=Page(write=True))
def project_delete_confirm(request):
    return _delete_project_page(
        request, projects.get_project(request.tenant_db, object_id(request))
    )


@view_config(route_name="page_project_delete", request_method="POST", page=Page(write=True))
def project_delete(request):
    db = request.tenant_db
    # Writes lock the row they read, as the JSON views do.
    project = projects.get_project(db, object_id(request), for_update=True)
    if _stale(request, project):
        return _delete_project_page(request, project, stale=STALE_MESSAGE)
    projects.delete_project(db, project)
    return _redirect(request, "page_projects")


# --- one project's tasks ---------------------------------------------------------


def _task_body(form, project_id):
    """A form's task fields as the API's body: empty assignee and date are null."""
    return {
        "project_id": project_id,
        "title": form["title"],
        "status": form["status"] or "open",
        "assignee": form["assignee"].strip() or None,
        "due_date": form["due_date"] or None,
    }


def _task_values(task):
    return {
        "title": task.title,
        "status": task.status,
        "assignee": task.assignee or "",
        "due_date": task.due_date.isoformat() if task.due_date else "",
    }


@view_config(route_name="page_project", request_method="GET", page=Page())
def project_page(request):
    db = request.tenant_db
    project = projects.get_project(db, object_id(request))
    given = _params(request)
    params = {name: given.get(name, "") for name in ("status", "assignee", "q", "limit")}
    query = _query(
        parse_task_filters,
        {**params, "limit": params["limit"] or TASKS_PER_PAGE, "after": given.get("after")},
    )
    page = tasks.list_tasks(db, **dict(query, project_id=project.id))
    kept = {name: value for name, value in params.items() if value}
    next_url = first_url = None
    if page["next"] is not None:
        next_url = request.route_path(
            "page_project", id=project.id, _query={**kept, "after": page["next"]}
        )
    if query["after_id"]:
        first_url = request.route_path("page_project", id=project.id, _query=kept)
    return _render(
        request,
        "project.jinja2",
        project=project,
        task_count=tasks.count_tasks_by_project(db, [project.id])[project.id],
        tasks=page["items"],
        filters=params,
        filtered=any(params[name] for name in ("status", "assignee", "q")),
        next_url=next_url,
        first_url=first_url,
        here=request.path_qs,
        can_write=_can_write(request),
        move_targets=_move_targets(request) if _can_write(request) else [],
        form={"title": "", "status": "open", "assignee": "", "due_date": ""},
        errors={},
    )


def _move_targets(request):
    """The tenants the project could move to: where the user may write, but this one."""
    chosen = request.tenant.name
    return [
        access
        for access in memberships(request.catalog_db, request.login.user_id)
        if access.name != chosen
        and access.status == "active"
        and access.role in project_move.WRITE_ROLES
    ]


@view_config(route_name="page_project_move", request_method="POST", page=Page(write=True))
def project_move_submit(request):
    """Move the project to another tenant, then show it there: the page flow
    follows the project, so its new tenant becomes the chosen one (in the
    same catalog transaction as the move's decision)."""
    login = request.login
    project_id = object_id(request)
    target = project_move.find_target(
        request.catalog_db, login.user_id, request.POST.get("tenant", "")
    )
    if target.name == request.tenant.name:
        return error_page(request, 422, "The project is already in this tenant.")

    def check(project):
        if _stale(request, project):
            raise PreconditionFailed(STALE_MESSAGE)

    try:
        moved, _count = project_move.move_project(request, project_id, target, check)
    except ValidationFailed as error:
        return error_page(request, 422, sentence(next(iter(error.fields.values()))))
    choose_tenant(request.catalog_db, login.token_hash, target.id)
    return _redirect(request, "page_project", id=moved.id)


@view_config(route_name="page_project_tasks", request_method="POST", page=Page(write=True))
def task_create(request):
    db = request.tenant_db
    project = projects.get_project(db, object_id(request))
    form = _form(request, TASK_FIELDS)
    try:
        body = validate_body(TaskCreate, _task_body(form, project.id))
        tasks.create_task(db, now=request.now, **body.model_dump())
    except ValidationFailed as error:
        return _form_again(
            request, "task_form.jinja2", project=project, task=None, form=form, errors=error.fields
        )
    return _redirect(request, "page_project", id=project.id)


def _task_and_project(request, for_update=False):
    db = request.tenant_db
    task = tasks.get_task(db, object_id(request), for_update=for_update)
    return task, projects.get_project(db, task.project_id)


def _stale_task_page(request, task, project):
    return _form_again(
        request,
        "task_form.jinja2",
        project=project,
        task=task,
        form=_task_values(task),
        version=task.version,
        errors={},
        stale=STALE_MESSAGE,
    )


@view_config(route_name="page_task_edit", request_method="GET", page=Page(write=True))
def task_edit_form(request):
    task, project = _task_and_project(request)
    return _render(
        request,
        "task_form.jinja2",
        project=project,
        task=task,
        form=_task_values(task),
        version=task.version,
        errors={},
    )


@view_config(route_name="page_task_edit", request_method="POST", page=Page(write=True))
def task_edit(request):
    task, project = _task_and_project(request, for_update=True)
    if _stale(request, task):
        return _stale_task_page(request, task, project)
    form = _form(request, TASK_FIELDS)
    try:
        body = validate_body(TaskReplace, _task_body(form, project.id))
        tasks.update_task(request.tenant_db, task, body.model_dump(), request.now)
    except ValidationFailed as error:
        return _form_again(
            request,
            "task_form.jinja2",
            project=project,
            task=task,
            form=form,
            version=request.POST["version"],
            errors=error.fields,
        )
    return _redirect(request, "page_project", id=project.id)


@view_config(route_name="page_task_status", request_method="POST", page=Page(write=True))
def task_status(request):
    task, project = _task_and_project(request, for_update=True)
    if _stale(request, task):
        return _stale_task_page(request, task, project)
    try:
        body = validate_body(TaskPatch, {"status": request.POST.get("status", "")})
    except ValidationFailed as error:
        return _form_again(
            request,
            "task_form.jinja2",
            project=project,
            task=task,
            form=_task_values(task),
            version=task.version,
            errors=error.fields,
        )
    tasks.update_task(request.tenant_db, task, {"status": body.status}, request.now)
    back = request.route_path("page_project", id=project.id)
    return HTTPSeeOther(_local_path(request.POST.get("next", ""), back))


def _delete_task_page(request, task, project, stale=None):
    page = _form_again if stale else _render
    return page(request, "task_delete.jinja2", task=task, project=project, stale=stale)


@view_config(route_name="page_task_delete", request_method="GET", page=Page(write=True))
def task_delete_confirm(request):
    return _delete_task_page(request, *_task_and_project(request))


@view_config(route_name="page_task_delete", request_method="POST", page=Page(write=True))
def task_delete(request):
    task, project = _task_and_project(request, for_update=True)
    if _stale(request, task):
        return _delete_task_page(request, task, project, stale=STALE_MESSAGE)
    tasks.delete_task(request.tenant_db, task)
    return _redirect(request, "page_project", id=project.id)


# --- members of the chosen tenant (its admins only) --------------------------------

ROLE_LABELS = {"viewer": "Viewer", "editor": "Editor", "admin": "Admin"}
LAST_ADMIN_MESSAGE = (
    "{tenant} needs at least one admin: make someone else an admin first. Nothing was changed."
)


def member_path(request, username, action):
    """The URL of ``action`` ("role", "remove") on member ``username``.

    Every character but the unreserved ones is escaped, "/" included: a
    username like "a/../b" must not become a path a browser shortens to
    another member's. (Pyramid's route_path would leave "/" as it is.)
    """
    return f"{request.route_path('page_members')}/{quote(username, safe='')}/{action}"


def _members_page(request, form=None, errors=None, message=None):
    """The members page; with a ``message`` or ``errors`` it is a refused form
    (200, and nothing this request did is written)."""
    values = {
        "members": members.list_members(request.catalog_db, request.tenant.id),
        "roles": ROLE_LABELS,
        "form": form or {"username": "", "role": "viewer"},
        "errors": errors or {},
        "message": message,
        "me": request.login.username,
        "member_path": member_path,
    }
    page = _form_again if message or errors else _render
    return page(request, "members.jinja2", **values)


def _last_admin(request):
    return LAST_ADMIN_MESSAGE.format(tenant=request.tenant.display_name)


def _member(request, username):
    """The member ``username`` of the chosen tenant; 404 when not a member."""
    for member in members.list_members(request.catalog_db, request.tenant.id):
        if member.username == username:
            return member
    raise NotFound("no such member of this tenant")


def _after_member_change(request, username, role=None):
    """Where a successful change leads: the members page, unless the admin has
    just changed or removed their own membership (then the page is no longer
    theirs to see)."""
    if username != request.login.username or role == "admin":
        return _redirect(request, "page_members")
    return _redirect(request, "page_projects" if role else "page_tenants")


@view_config(route_name="page_members", request_method="GET", page=Page(admin=True))
def member_list(request):
    return _members_page(request)


@view_config(route_name="page_members", request_method="POST", page=Page(admin=True))
def member_add(request):
    """Add a user by username with a role (a member already: their role is set)."""
    form = {
        "username": request.POST.get("username", "").strip(),
        "role": request.POST.get("role", ""),
    }
    errors = {}
    if not form["username"]:
        errors["username"] = "must not be empty"
    if form["role"] not in ROLE_LABELS:
        errors["role"] = "must be viewer, editor or admin"
    if errors:
        return _members_page(request, form=form, errors=errors)
    try:
        members.set_role(request.catalog_db, request.tenant.id, form["username"], form["role"])
    except NotFound:
        return _members_page(
            request,
            form=form,
            errors={"username": "there is no such user, or their account is disabled"},
        )
    except Conflict:
        return _members_page(request, form=form, message=_last_admin(request))
    return _after_member_change(request, form["username"], form["role"])


@view_config(route_name="page_member_role", request_method="POST", page=Page(admin=True))
def member_role(request):
    """Change a member's role (the role selector of each row of the list)."""
    username = request.matchdict["username"]
    role = request.POST.get("role", "")
    if role not in ROLE_LABELS:
        raise BadRequest("the form carries no valid role")
    # A member removed meanwhile is not added back by a stale row's selector.
    member = _member(request, username)
    if role != member.role:
        try:
            members.set_role(request.catalog_db, request.tenant.id, username, role)
        except Conflict:
            return _members_page(request, message=_last_admin(request))
    return _after_member_change(request, username, role)


@view_config(route_name="page_member_remove", request_method="GET", page=Page(admin=True))
def member_remove_confirm(request):
    return _render(
        request,
        "member_remove.jinja2",
        member=_member(request, request.matchdict["username"]),
        me=request.login.username,
        roles=ROLE_LABELS,
        member_path=member_path,
    )


@view_config(route_name="page_member_remove", request_method="POST", page=Page(admin=True))
def member_remove(request):
    username = request.matchdict["username"]
    try:
        members.remove_member(request.catalog_db, request.tenant.id, username)
    except Conflict:
        return _members_page(request, message=_last_admin(request))
    return _after_member_change(request, username)


# --- the user's own account (no tenant needed) ------------------------------------

PASSWORD_FIELDS = ("current_password", "new_password", "new_password_again")
# What the account page says after a change it redirected to (a fixed text per
# key: nothing of the query string is shown).
ACCOUNT_NOTICES = {
    "password": "Your password was changed. Every other session has ended.",
    "ended": "The session was ended: that device has to log in again.",
}


def _shown_time(value):
    """``value`` (a datetime or its ISO text) as ``(iso, "YYYY-MM-DD HH:MM UTC")``."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.isoformat(), value.strftime("%Y-%m-%d %H:%M UTC")


def _account_page(request, errors=None, message=None, refused=False):
    login = request.login
    settings = request.registry.tenantapp_settings
    sessions = [
        {
            **item,
            "created": _shown_time(item["created_at"]),
            "used": _shown_time(item["last_used_at"]),
        }
        for item in account.list_sessions(
            request.catalog_db, login.user_id, login.token_hash, request.now, settings
        )
    ]
    page = _form_again if refused else _render
    return page(
        request,
        "account.jinja2",
        sessions=sessions,
        errors=errors or {},
        message=message,
        notice=None if refused else ACCOUNT_NOTICES.get(_params(request).get("done", "")),
    )


@view_config(route_name="page_account", request_method="GET", page=Page(tenant=False))
def account_page(request):
    return _account_page(request)


@view_config(route_name="page_account_password", request_method="POST", page=Page(tenant=False))
def password_change(request):
    """The JSON API's password change behind a form, plus "new password again"."""
    form = _form(request, PASSWORD_FIELDS)
    if form["new_password"] != form["new_password_again"]:
        # Checked here, before any password is: a typo costs no attempt.
        return _account_page(
            request,
            errors={"new_password_again": "does not match the new password"},
            refused=True,
        )
    settings = request.registry.tenantapp_settings
    try:
        account.change_password(
            request.registry.getUtility(IDBFactory, "catalog"),
            request.registry.passwords,
            request.login,
            form["current_password"],
            form["new_password"],
            request.now,
            settings,
        )
    except ValidationFailed as error:
        return _account_page(request, errors=error.fields, refused=True)
    except Forbidden:
        return _account_page(
            request,
            errors={"current_password": "this is not your current password"},
            refused=True,
        )
    except TooManyRequests as error:
        minutes = math.ceil(int(error.headers["Retry-After"]) / 60)
        return _account_page(
            request,
            message="Too many wrong passwords for this account. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            refused=True,
        )
    return HTTPSeeOther(request.route_path("page_account", _query={"done": "password"}))


@view_config(route_name="page_account_session_end", request_method="POST", page=Page(tenant=False))
def session_end(request):
    """End one of the user's sessions; the current one is a logout."""
    login = request.login
    settings = request.registry.tenantapp_settings
    try:
        ended = account.end_session(
            request.catalog_db,
            login.user_id,
            request.matchdict["session_id"],
            settings.secret,
            request.now,
            settings,
        )
    except NotFound:
        # Ended meanwhile (another tab, its expiry): the list as it is now.
        return _account_page(request, message="That session had already ended.", refused=True)
    if ended == login.token_hash:
        response = _redirect(request, "page_login")
        login_service.delete_session_cookie(response, settings)
        return response
    return HTTPSeeOther(request.route_path("page_account", _query={"done": "ended"}))


def includeme(config):
    settings = config.registry.settings
    settings.setdefault("jinja2.directories", "tenantapp:templates")
    # A name the template does not know is an error, not an empty string.
    settings.setdefault("jinja2.undefined", "strict")
    settings.setdefault("jinja2.filters", "sentence = tenantapp.views.pages.sentence")
    settings.setdefault("jinja2.trim_blocks", "true")
    settings.setdefault("jinja2.lstrip_blocks", "true")
    config.include("pyramid_jinja2")
    config.add_view_deriver(page_checks)
    # Every asset is the app's own (no CDN).
    config.add_static_view("static", "tenantapp:static", cache_max_age=3600)

    config.add_route("page_home", "/")
    config.add_route("page_login", "/login")
    config.add_route("page_logout", "/logout")
    config.add_route("page_tenants", "/tenants")
    config.add_route("page_projects", "/projects")
    # ASCII digits, at most 10 (routes.OBJECT_ID): "/projects/１" or an id
    # of 5000 digits is no page (404), and never reaches int().
    config.add_route("page_project", f"/projects/{OBJECT_ID}")
    config.add_route("page_project_edit", f"/projects/{OBJECT_ID}/edit")
    config.add_route("page_project_delete", f"/projects/{OBJECT_ID}/delete")
    config.add_route("page_project_tasks", f"/projects/{OBJECT_ID}/tasks")
    config.add_route("page_project_move", f"/projects/{OBJECT_ID}/move")
    config.add_route("page_task_edit", f"/tasks/{OBJECT_ID}/edit")
    config.add_route("page_task_status", f"/tasks/{OBJECT_ID}/status")
    config.add_route("page_task_delete", f"/tasks/{OBJECT_ID}/delete")
    config.add_route("page_members", "/members")
    # A username may hold any character, "/" included (member_path quotes it
    # as %2F, which the server decodes): ".+" keeps it whole.
    config.add_route("page_member_role", "/members/{username:.+}/role")
    config.add_route("page_member_remove", "/members/{username:.+}/remove")
    config.add_route("page_account", "/account")
    config.add_route("page_account_password", "/account/password")
    config.add_route("page_account_session_end", "/account/sessions/{session_id}/end")
