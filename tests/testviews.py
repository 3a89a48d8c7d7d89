"""Views that exist only in the test app (``pyramid.includes = testviews``).

They do through the real request machinery what no public endpoint should:
write to both databases and then fail, in each way a request can fail, so the
lifecycle rules can be checked against the real databases.
"""

from tenantapp.errors import ValidationFailed
from tenantapp.models.catalog import LoginFailure
from tenantapp.models.tenant import Project, Task
from tenantapp.views.contract import Endpoint, json_response

WRITE = Endpoint(permission="write")


def _write_both(request, label):
    request.catalog_db.add(LoginFailure(username=f"marker-{label}", attempted_at=request.now))
    request.tenant_db.add(
        Project(
            name=f"marker-{label}", description="", created_at=request.now, updated_at=request.now
        )
    )
    request.catalog_db.flush()
    request.tenant_db.flush()


def raise_after_write(request):
    _write_both(request, "exception")
    raise RuntimeError("boom: a bug after writing")


def error_after_write(request):
    _write_both(request, "error")
    raise ValidationFailed({"field": "refused after writing"})


def commit_fails(request):
    _write_both(request, "commit")
    # Not flushed: the foreign key fails when the transaction commits.
    request.tenant_db.add(
        Task(
            project_id=2**31 - 1,
            title="orphan",
            status="open",
            created_at=request.now,
            updated_at=request.now,
        )
    )
    return json_response(request, {"ok": True})


def read_both(request):
    project_count = request.tenant_db.query(Project).count()
    return json_response(request, {"projects": project_count})


def sleep_in_tenant(request):
    # PostgreSQL only: holds a tenant connection for a while (burst tests).
    from sqlalchemy import text

    request.tenant_db.execute(text("SELECT pg_sleep(:s)"), {"s": float(request.GET["seconds"])})
    return json_response(request, {"slept": True})


def serializable_increment(request):
    # PostgreSQL only: a read-modify-write under SERIALIZABLE, so that
    # concurrent calls fail with serialization errors (to be retried).
    from sqlalchemy import text

    db = request.tenant_db
    db.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
    project_id = int(request.GET["project_id"])
    count = int(
        db.execute(
            text("SELECT description FROM projects WHERE id = :id"), {"id": project_id}
        ).scalar_one()
        or 0
    )
    # Between the read (the snapshot) and the write, a test may hold this
    # attempt at its gate and commit a change of the row meanwhile.
    _wait_at_gate(request, db)
    db.execute(
        text("UPDATE projects SET description = :d WHERE id = :id"),
        {"d": str(count + 1), "id": project_id},
    )
    import zope.sqlalchemy

    zope.sqlalchemy.mark_changed(db)
    return json_response(request, {"count": count + 1})


def _wait_at_gate(request, db):
    # PostgreSQL only: with ``?gate=K``, wait for the advisory lock
    # K + attempt number, which the test holds and lets go when it is ready:
    # each attempt of a retried request waits at a gate of its own.
    if "gate" in request.GET:
        from sqlalchemy import text

        key = int(request.GET["gate"]) + request.environ.get("retry.attempt", 0)
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def lock_in_order(request):
    # PostgreSQL only: lock project ``first``, pass the gate, lock project
    # ``then`` (FOR UPDATE). Against a connection that holds ``then`` and
    # waits for ``first``, a deadlock.
    from sqlalchemy import text

    db = request.tenant_db
    lock = text("SELECT id FROM projects WHERE id = :id FOR UPDATE")
    db.execute(lock, {"id": int(request.GET["first"])})
    _wait_at_gate(request, db)
    db.execute(lock, {"id": int(request.GET["then"])})
    return json_response(request, {"locked": True})


def page_raises(request):
    raise RuntimeError("boom: a bug in a page view")


def includeme(config):
    for name, view, method in (
        ("raise_after_write", raise_after_write, "POST"),
        ("error_after_write", error_after_write, "POST"),
        ("commit_fails", commit_fails, "POST"),
        ("read_both", read_both, "GET"),
        ("sleep", sleep_in_tenant, "GET"),
        ("serializable_increment", serializable_increment, "POST"),
        ("lock_in_order", lock_in_order, "POST"),
    ):
        config.add_route(f"test_{name}", f"/api/_test/{name}")
        config.add_view(
            view,
            route_name=f"test_{name}",
            request_method=method,
            api=WRITE if method == "POST" else Endpoint(permission="read"),
        )
    # A page (outside /api) whose view fails: the HTML error pages' test.
    from tenantapp.views.pages import Page

    config.add_route("test_page_raises", "/_test/page_raises")
    config.add_view(
        page_raises, route_name="test_page_raises", request_method="GET", page=Page(tenant=False)
    )
