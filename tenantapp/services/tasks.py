"""Tasks of one tenant (the Session is that tenant's database)."""

from sqlalchemy import func, select

from tenantapp.errors import NotFound, ValidationFailed
from tenantapp.models.tenant import Project, Task
from tenantapp.services.pages import fetch_page, like_pattern

FIELDS = (
    "id",
    "project_id",
    "title",
    "status",
    "assignee",
    "due_date",
    "created_at",
    "updated_at",
    "version",
)


def task_json(task):
    """The API representation of a Task."""
    return {name: getattr(task, name) for name in FIELDS}


def list_tasks(db, *, after_id=0, limit=50, project_id=None, status=None, assignee=None, q=None):
    """A page of tasks matching every filter given."""
    filters, values = [], {}
    for name, value in (("project_id", project_id), ("status", status), ("assignee", assignee)):
        if value is not None:
            filters.append((name, "eq"))
            values[name] = value
    if q:
        # Case-folded on both sides, so any script compares alike.
        filters.append(("title_key", "like"))
        values["title_key"] = like_pattern(q.casefold())
    return fetch_page(
        db,
        Task.__table__,
        FIELDS,
        filters=tuple(filters),
        values=values,
        after_id=after_id,
        limit=limit,
    )


def get_task(db, task_id, for_update=False):
    """The task with this id in this tenant; 404 otherwise."""
    # for_update: a write locks the row first, so concurrent writers queue
    # and each sees the version the one before it committed.
    task = db.get(Task, task_id, with_for_update=for_update)
    if task is None:
        raise NotFound("no such task")
    return task


def _ensure_project(db, project_id):
    if db.get(Project, project_id) is None:
        raise ValidationFailed({"project_id": "no such project in this tenant"})


def create_task(db, *, project_id, title, status, assignee, due_date, now):
    """Add a task; its id is known on return (flushed, not committed)."""
    _ensure_project(db, project_id)
    task = Task(
        project_id=project_id,
        title=title,
        status=status,
        assignee=assignee,
        due_date=due_date,
        created_at=now,
        updated_at=now,
    )
    db.add(task)
    db.flush()
    return task


def update_task(db, task, changes, now):
    """Apply ``changes``; the version grows only if a stored value changed."""
    changed = {k: v for k, v in changes.items() if getattr(task, k) != v}
    if not changed:
        return False
    if "project_id" in changed:
        _ensure_project(db, changed["project_id"])
    for name, value in changed.items():
        setattr(task, name, value)
    task.updated_at = now
    db.flush()
    return True


def delete_task(db, task):
    db.delete(task)
    db.flush()


def count_tasks_by_project(db, project_ids):
    """``{project_id: number of tasks}`` for ``project_ids`` (0 for a project without
    tasks), in one grouped query; for the pages, which list projects with their
    task counts."""
    project_ids = list(project_ids)
    counts = dict.fromkeys(project_ids, 0)
    if project_ids:
        rows = db.execute(
            select(Task.project_id, func.count())
            .where(Task.project_id.in_(project_ids))
            .group_by(Task.project_id)
        )
        counts.update({project_id: count for project_id, count in rows})
    return counts
