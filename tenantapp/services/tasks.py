"""Tasks of one tenant (the Session is that tenant's database)."""

from sqlalchemy import func, select

from tenantapp.errors import NotFound, ValidationFailed
from tenantapp.models.tenant import Project, Task
from tenantapp.services import flush_or_refuse
from tenantapp.services.insert_order import lock_id_order
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


_NO_SUCH_PROJECT = "no such project in this tenant"


def _ensure_project(db, project_id):
    """422 unless the project exists; it then stays until this transaction ends.

    The row is locked FOR KEY SHARE: a concurrent delete of the project
    (FOR UPDATE) is waited for, and then the project is seen gone (422), or it
    waits for this transaction and its cascade takes the new task along. A
    change of the project's fields (FOR NO KEY UPDATE) does not conflict.
    Without the lock the check could pass, the delete commit, and the insert
    fail on the foreign key.
    """
    query = (
        select(Project.id)
        .where(Project.id == project_id)
        .with_for_update(read=True, key_share=True)
    )
    if db.execute(query).first() is None:
        raise ValidationFailed({"project_id": _NO_SUCH_PROJECT})


def _flush(db):
    # Schema validation leaves only the foreign key to fail, and the lock
    # above leaves it no chance; should a project vanish anyway, it is the
    # client's 422, not a 500.
    flush_or_refuse(db, {"project_id": _NO_SUCH_PROJECT})


def create_task(db, *, project_id, title, status, assignee, due_date, now):
    """Add a task; its id is known on return (flushed, not committed)."""
    _ensure_project(db, project_id)
    lock_id_order(db, "tasks")
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
    _flush(db)
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
    _flush(db)
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
