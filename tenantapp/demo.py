"""Demo users, tenants and data (``tenantapp-admin CONFIG demo``); idempotent."""

from datetime import date

from sqlalchemy import func, select

from tenantapp.models.catalog import Tenant, User
from tenantapp.models.tenant import Project, Task
from tenantapp.models.types import utcnow

DEMO_TENANTS = [("acme", "Acme Corp"), ("globex", "Globex Corporation")]

# username, display name, password, {tenant: role}
DEMO_USERS = [
    ("alice", "Alice Admin", "alice-demo-password", {"acme": "admin", "globex": "editor"}),
    ("bob", "Bob Builder", "bob-demo-password", {"globex": "admin"}),
    ("carol", "Carol Viewer", "carol-demo-password", {"acme": "viewer"}),
]

DEMO_DATA = {
    "acme": [
        (
            "Website relaunch",
            "New site before the spring campaign.",
            [
                ("Write the copy", "in_progress", "alice", date(2026, 12, 15)),
                ("Pick a typeface", "open", None, None),
                ("Set up analytics", "done", "alice", None),
            ],
        ),
        (
            "Hiring",
            "Two engineers by March.",
            [
                ("Post the job ad", "open", "alice", date(2027, 1, 10)),
            ],
        ),
    ],
    "globex": [
        (
            "Quarterly report",
            "Numbers for Q4.",
            [
                ("Collect figures", "open", "bob", date(2027, 1, 5)),
                ("Draft the summary", "open", None, None),
            ],
        ),
    ],
}


def load_demo(admin):
    """Create what is missing of the demo; yield lines to print."""
    with admin.catalog.transaction(write=False) as session:
        tenants = set(session.execute(select(Tenant.name)).scalars())
        users = set(session.execute(select(User.username)).scalars())
    for name, display_name in DEMO_TENANTS:
        if name not in tenants:
            admin.tenant_create(name, display_name)
    for username, display_name, password, roles in DEMO_USERS:
        if username not in users:
            admin.user_create(username, password, display_name)
        for tenant, role in roles.items():
            admin.user_grant(username, tenant, role)
    for tenant, projects in DEMO_DATA.items():
        with admin.directory.factory(tenant).transaction() as db:
            if db.execute(select(func.count()).select_from(Project)).scalar_one():
                continue
            now = utcnow()
            for name, description, tasks in projects:
                project = Project(
                    name=name, description=description, created_at=now, updated_at=now
                )
                db.add(project)
                db.flush()
                for title, status, assignee, due in tasks:
                    db.add(
                        Task(
                            project_id=project.id,
                            title=title,
                            status=status,
                            assignee=assignee,
                            due_date=due,
                            created_at=now,
                            updated_at=now,
                        )
                    )
    yield ""
    yield "Demo logins (username / password: tenants and roles):"
    for username, _, password, roles in DEMO_USERS:
        granted = ", ".join(f"{t} ({r})" for t, r in roles.items())
        yield f"  {username} / {password}: {granted}"
