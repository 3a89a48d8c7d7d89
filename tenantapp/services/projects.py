"""Projects of one tenant (the Session is that tenant's database)."""

from sqlalchemy import select

from tenantapp.errors import NotFound, ValidationFailed
from tenantapp.models.tenant import Project
from tenantapp.services import flush_or_refuse
from tenantapp.services.insert_order import lock_id_order
from tenantapp.services.pages import fetch_page

FIELDS = ("id", "name", "description", "created_at", "updated_at", "version")


def project_json(project):
    """The API representation of a Project."""
    return {name: getattr(project, name) for name in FIELDS}


def list_projects(db, *, after_id=0, limit=50):
    return fetch_page(db, Project.__table__, FIELDS, after_id=after_id, limit=limit)


def get_project(db, project_id, for_update=False, for_delete=False):
    """The project with this id in this tenant; 404 otherwise.

    ``for_update``: lock the row for a change of its fields; ``for_delete``:
    lock it for its deletion.
    """
    # A write locks the row first, so concurrent writers queue and each sees
    # the version the one before it committed. A change of the fields keeps
    # the id, so it takes FOR NO KEY UPDATE: a task create in the project
    # (FOR KEY SHARE on it, see services.tasks) does not wait for it, nor it
    # for the create. A delete takes FOR UPDATE, which waits for those creates.
    if for_delete:
        lock = True  # FOR UPDATE
    elif for_update:
        lock = {"key_share": True}  # FOR NO KEY UPDATE
    else:
        lock = None
    project = db.get(Project, project_id, with_for_update=lock)
    if project is None:
        raise NotFound("no such project")
    return project


def _ensure_unique_name(db, name, project_id=None):
    query = select(Project.id).where(Project.name_key == name.casefold())
    if project_id is not None:
        query = query.where(Project.id != project_id)
    if db.execute(query.limit(1)).first() is not None:
        raise ValidationFailed({"name": "a project with this name already exists"})


def _flush(db):
    # Two requests raced past the check above: the unique index decides.
    flush_or_refuse(db, {"name": "a project with this name already exists"})


def create_project(db, *, name, description, now):
    """Add a project; its id is known on return (flushed, not committed)."""
    _ensure_unique_name(db, name)
    lock_id_order(db, "projects")
    project = Project(name=name, description=description, created_at=now, updated_at=now)
    db.add(project)
    _flush(db)
    return project


def update_project(db, project, changes, now):
    """Apply ``changes`` (field -> value); the version grows only if a value changed."""
    changed = {k: v for k, v in changes.items() if getattr(project, k) != v}
    if not changed:
        return False
    if "name" in changed:
        _ensure_unique_name(db, changed["name"], project.id)
    for name, value in changed.items():
        setattr(project, name, value)
    project.updated_at = now
    _flush(db)
    return True


def delete_project(db, project):
    """Delete a project; the database deletes its tasks (ON DELETE CASCADE)."""
    db.delete(project)
    db.flush()
