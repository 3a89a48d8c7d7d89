"""Moving a project to another tenant: one request, two databases, all or nothing.

PostgreSQL: two-phase commit, run by the ``transaction`` package that
pyramid_tm already drives for every request. Both tenant sessions are
two-phase sessions registered with zope.sqlalchemy, so at commit time the
request's transaction does, in this order (data managers sort by their key):

1. ``PREPARE TRANSACTION`` in each tenant database (the two-phase data
   managers' ``tpc_vote``), under ids that name the move and this process
   (:func:`tenantapp.db.recovery.make_gid`);
2. the commit of the request's catalog session, which holds the move's
   decision row (the one-phase data manager sorts last and commits in its
   ``tpc_vote``): **the decision point**;
3. ``COMMIT PREPARED`` in each (``tpc_finish``).

The library's two-phase data manager is used as it is except for what
happens after the decision: ``transaction`` calls ``tpc_abort`` on every
manager when a ``tpc_finish`` raises, which would roll back a participant of
a move already decided. :class:`Participant` leaves such a transaction
prepared instead (the resolver, tenantapp.db.recovery, commits it), and a
failure in phase 2 is logged, not raised: a decided move is a moved project,
and answers 201.

SQLite has no PREPARE. The decision row commits first, then the target, then
the source (:class:`SQLiteCommit`); the resolver finishes a move whose
source commit did not happen. See README, "Moving a project".

``registry.move_fault_hook`` (tests only, None otherwise) is called with the
name of each step; a test makes it raise to inject a fault there.
"""

import logging
import uuid
from dataclasses import dataclass

import psycopg2.extensions
import zope.sqlalchemy
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from transaction.interfaces import IDataManager
from zope.interface import implementer
from zope.sqlalchemy.datamanager import STATUS_CHANGED, TwoPhaseSessionDataManager

from tenantapp.db import recovery
from tenantapp.db.directory import is_valid_tenant_name
from tenantapp.db.session import is_conflict, is_unavailable
from tenantapp.errors import (
    DatabaseUnavailable,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TenantSuspended,
    ValidationFailed,
)
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import Membership, MoveDecision, Tenant
from tenantapp.models.tenant import Project, Task
from tenantapp.services import flush_or_refuse
from tenantapp.services.insert_order import lock_id_order

log = logging.getLogger(__name__)

WRITE_ROLES = frozenset({"editor", "admin"})
NOT_YOURS = "you are not a member of that tenant"
NAME_TAKEN = "a project with this name already exists in the target tenant"

# What a task keeps when it moves (its id, project_id and version are new).
TASK_FIELDS = ("title", "status", "assignee", "due_date", "created_at", "updated_at")


@dataclass(frozen=True)
class TargetTenant:
    """The tenant a project moves to, with the user's role there."""

    id: int
    name: str
    display_name: str
    role: str
    db_url: str | None

    def as_json(self):
        return {"name": self.name, "display_name": self.display_name, "role": self.role}


def find_target(catalog_db, user_id, name):
    """The target tenant if the user may write there.

    One answer (403 ``forbidden``) for a tenant that does not exist, one the
    user is not a member of and a string that is no tenant name;
    ``tenant_suspended`` for a suspended one; ``forbidden`` for a viewer.
    """
    if not is_valid_tenant_name(name):
        raise Forbidden(NOT_YOURS)
    row = catalog_db.execute(
        select(
            Tenant.id,
            Tenant.name,
            Tenant.display_name,
            Tenant.status,
            Tenant.db_url,
            Membership.role,
        )
        .join(Membership, Membership.tenant_id == Tenant.id)
        .where(Tenant.name == name, Membership.user_id == user_id)
    ).first()
    if row is None:
        raise Forbidden(NOT_YOURS)
    if row.status == "suspended":
        raise TenantSuspended("the target tenant is suspended")
    if row.status != "active":
        # 'moving': its database is being copied to another server.
        raise ServiceUnavailable("the target tenant is moving to another server; try again shortly")
    if row.role not in WRITE_ROLES:
        raise Forbidden("your role in the target tenant does not allow this (write)")
    return TargetTenant(row.id, row.name, row.display_name, row.role, row.db_url)


# --- the move's state and its steps -------------------------------------------------


class Move:
    """One move in flight: its id and how far its commit got."""

    def __init__(self, registry):
        self.id = uuid.uuid4().hex
        self.hook = getattr(registry, "move_fault_hook", None)
        # Set once the catalog's commit (the decision) may have happened:
        # from then on no participant is rolled back by this process.
        self.decision_attempted = False
        self.decided = False
        self.phase_two_failed = False
        self.committed = []
        self.left_prepared = []
        self.gids = {}  # participant name -> transaction id (PostgreSQL)
        self.factories = {}  # participant name -> DBFactory

    def step(self, name):
        """A named point of the commit; the fault hook (tests) may raise here."""
        if self.hook is not None:
            self.hook(name)


class Participant(TwoPhaseSessionDataManager):
    """zope.sqlalchemy's two-phase data manager, except after the decision.

    Before the decision point it is the library's: PREPARE in ``tpc_vote``,
    rolled back (``ROLLBACK PREPARED``) when the transaction aborts. Once the
    catalog commit was attempted it never rolls back: a failure of ``COMMIT
    PREPARED``, or any error after the decision, leaves the transaction
    prepared for the resolver, which commits it (the decision row says so).
    """

    def __init__(self, move, name, session, connection, transaction_manager):
        self.move = move
        self.name = name
        self.connection = connection
        super().__init__(session, STATUS_CHANGED, transaction_manager)

    def sortKey(self):
        # The library's key holds id(self.tx), a memory address: the two
        # participants would prepare in either order. Source, then target,
        # always (both before the DecisionPoint, "sqlalchemy.twophase~...").
        return f"sqlalchemy.twophase:{self.name}"

    def tpc_vote(self, trans):
        super().tpc_vote(trans)  # PREPARE TRANSACTION
        self.move.step(f"prepared:{self.name}")

    def _in_doubt(self):
        return self.tx is not None and self.state == "voted" and self.move.decision_attempted

    def abort(self, trans):
        if self._in_doubt():
            return self._leave_prepared()
        return super().abort(trans)

    def tpc_abort(self, trans):
        if self._in_doubt():
            return self._leave_prepared()
        return super().tpc_abort(trans)

    def tpc_finish(self, trans):
        if self.tx is None:
            return
        move = self.move
        move.decided = True  # every tpc_vote passed, the catalog's commit included
        if move.phase_two_failed:
            return self._leave_prepared()
        try:
            if not move.committed:
                move.step("decided")
            self.tx.commit()  # COMMIT PREPARED
        except Exception as exc:  # noqa: BLE001 (decided: whatever failed, the resolver finishes)
            move.phase_two_failed = True
            log.warning(
                "move %s: %s not committed yet, left to the resolver: %s",
                move.id,
                self.name,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
            return self._leave_prepared()
        self._finish("committed")
        move.committed.append(self.name)
        try:
            move.step(f"committed:{self.name}")
        except Exception as exc:  # noqa: BLE001 (decided: see above)
            # An error after a COMMIT PREPARED stops phase 2 here, as a crash
            # would; the resolver commits the rest.
            move.phase_two_failed = True
            log.warning("move %s: phase 2 stopped after %s: %s", move.id, self.name, exc)

    def _leave_prepared(self):
        # Closing the session would roll the prepared transaction back: drop
        # the connection first (a prepared transaction outlives its session).
        self.move.left_prepared.append(self.name)
        self.connection.invalidate()
        self._finish("left prepared")


@implementer(IDataManager)
class _Step:
    """A data manager that holds no data of its own: it joins the request's
    transaction to act at one of the two-phase commit's steps, and each
    subclass overrides only the step it acts at. Every other step is nothing
    to do, for ``transaction``'s protocol calls them all."""

    def __init__(self, transaction_manager):
        self.transaction_manager = transaction_manager
        transaction_manager.get().join(self)

    def abort(self, trans):
        return None

    def tpc_begin(self, trans):
        return None

    def commit(self, trans):
        return None

    def tpc_vote(self, trans):
        return None

    def tpc_finish(self, trans):
        return None

    def tpc_abort(self, trans):
        return None


class DecisionPoint(_Step):
    """Marks the moment between the last PREPARE and the catalog's commit.

    Sorts after the two-phase managers ("sqlalchemy.twophase:...") and before
    zope.sqlalchemy's one-phase manager ("~sqlalchemy:..."), which commits
    the catalog in its own ``tpc_vote``.
    """

    def __init__(self, move, transaction_manager):
        self.move = move
        super().__init__(transaction_manager)

    def sortKey(self):
        return "sqlalchemy.twophase~tenantapp.decision"

    def tpc_vote(self, trans):
        self.move.step("prepared")
        self.move.decision_attempted = True


class SQLiteCommit(_Step):
    """SQLite: commit the target, then the source, once the decision committed.

    Sorts after the catalog's one-phase manager ("~sqlalchemy:..."), so the
    decision row is committed first. The target's commit is where the move
    happens: if it fails, nothing moved (the source is rolled back, the
    resolver deletes the decision); if the source's then fails, the resolver
    deletes the source's copy.
    """

    def __init__(self, move, target, source, transaction_manager):
        self.move = move
        self.target = target
        self.source = source
        super().__init__(transaction_manager)

    def sortKey(self):
        return "~~tenantapp.move"

    def tpc_begin(self, trans):
        self.target.flush()
        self.source.flush()

    def tpc_vote(self, trans):
        move = self.move
        move.decision_attempted = True
        move.step("decided")
        self.target.commit()
        move.decided = True
        move.committed.append("target")
        try:
            move.step("committed:target")
            self.source.commit()
            move.committed.append("source")
        except Exception as exc:  # noqa: BLE001 (the target committed: the move happened)
            move.phase_two_failed = True
            log.warning("move %s: source not committed, left to the resolver: %s", move.id, exc)
            self.source.rollback()

    def abort(self, trans):
        self._rollback()

    def tpc_abort(self, trans):
        self._rollback()

    def _rollback(self):
        if not self.move.decided:
            self.target.rollback()
        self.source.rollback()


# --- opening the two databases ------------------------------------------------------


def _unavailable(request, factory, exc):
    if isinstance(exc, PoolTimeoutError) or (isinstance(exc, DBAPIError) and is_unavailable(exc)):
        log.warning("database %s unavailable: %s", factory.name, str(exc).splitlines()[0])
        return DatabaseUnavailable(retry_after=request.registry.tenantapp_settings.retry_after)
    return None


def _release(connection):
    """Back to the pool in autocommit, as the pool's other connections are."""
    try:
        if not connection.invalidated and not connection.closed:
            dbapi = connection.connection.dbapi_connection
            if dbapi.status != psycopg2.extensions.STATUS_READY:
                connection.invalidate()  # never pool a prepared or open transaction
            else:
                dbapi.autocommit = True
    except Exception:  # noqa: BLE001 (a connection in an unknown state is never pooled)
        connection.invalidate()
    finally:
        connection.close()


def _open_two_phase(request, move, factory, name):
    """A Session on ``factory``'s database in a two-phase transaction of this
    move, joined to the request's transaction."""
    settings = request.registry.tenantapp_settings
    try:
        connection = factory.write_engine.connect()
    except (DBAPIError, PoolTimeoutError) as exc:
        raise (_unavailable(request, factory, exc) or exc) from exc
    request.add_finished_callback(lambda request: _release(connection))
    try:
        if int(connection.exec_driver_sql("SHOW max_prepared_transactions").scalar()) == 0:
            log.warning("max_prepared_transactions is 0 on the server of %s", factory.name)
            raise ServiceUnavailable(
                "moving projects is not available: the database server does not allow "
                "prepared transactions (max_prepared_transactions is 0)",
                retry_after=settings.retry_after,
            )
        connection.rollback()  # SQLAlchemy's autobegun (empty) transaction
        # The pool's connections run in autocommit (tenantapp.db.engines);
        # psycopg2's two-phase methods need a transaction of the driver's.
        connection.connection.dbapi_connection.autocommit = False
        move.gids[name] = recovery.make_gid(move.id, name)
        move.factories[name] = factory
        connection.begin_twophase(xid=move.gids[name])
    except (DBAPIError, PoolTimeoutError) as exc:
        raise (_unavailable(request, factory, exc) or exc) from exc
    # The Session takes over the connection's two-phase transaction
    # (control_fully) and then prepares and commits it in two phases.
    # (twophase=True from the start would make it begin one of its own,
    # under an id of the dialect's that names no move.)
    session = Session(
        bind=connection, join_transaction_mode="control_fully", expire_on_commit=False
    )
    request.add_finished_callback(lambda request: session.close())
    session.connection()
    session.twophase = True
    Participant(move, name, session, connection, request.tm)
    zope.sqlalchemy.register(session, transaction_manager=request.tm)
    return session


def _open_sqlite(request, factory):
    session = factory.session(write=True)
    request.add_finished_callback(lambda request: session.close())
    try:
        session.connection()  # BEGIN IMMEDIATE: this move is the database's one writer
    except (DBAPIError, PoolTimeoutError) as exc:
        raise (_unavailable(request, factory, exc) or exc) from exc
    return session


def open_participants(request, move, source_factory, target_factory):
    """``(source, target)`` Sessions of this move, opened in tenant-name order
    (two opposite moves on SQLite would otherwise each hold the lock the other
    waits for)."""
    postgres = source_factory.url.get_backend_name() == "postgresql"
    opened = {}
    order = sorted(
        [("source", source_factory), ("target", target_factory)], key=lambda p: p[1].name
    )
    for name, factory in order:
        if postgres:
            opened[name] = _open_two_phase(request, move, factory, name)
        else:
            opened[name] = _open_sqlite(request, factory)
    if postgres:
        DecisionPoint(move, request.tm)
    else:
        SQLiteCommit(move, opened["target"], opened["source"], request.tm)
    return opened["source"], opened["target"]


# --- the move -----------------------------------------------------------------------


def copy_project(target_db, project, source_tasks):
    """Insert ``project`` and its tasks into the target: new ids, version 1,
    every field and timestamp kept. Returns the new Project."""
    if target_db.execute(
        select(Project.id).where(Project.name_key == project.name_key).limit(1)
    ).first():
        raise ValidationFailed({"name": NAME_TAKEN})
    lock_id_order(target_db, "projects")
    moved = Project(
        name=project.name,
        description=project.description,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )
    target_db.add(moved)
    flush_or_refuse(target_db, {"name": NAME_TAKEN})
    if source_tasks:
        lock_id_order(target_db, "tasks")
        target_db.execute(
            insert(Task.__table__),
            [
                {
                    **{name: getattr(task, name) for name in TASK_FIELDS},
                    "title_key": task.title_key,
                    "project_id": moved.id,
                    "version": 1,
                }
                for task in source_tasks
            ],
        )
    return moved


def lock_project_and_tasks(source_db, project_id):
    """The project and its tasks, locked until the move ends; 404 otherwise."""
    project = source_db.get(Project, project_id, with_for_update=True)
    if project is None:
        raise NotFound("no such project")
    # Locked too: a change of a task meanwhile would be lost with the copy.
    tasks = (
        source_db.execute(
            select(Task).where(Task.project_id == project_id).order_by(Task.id).with_for_update()
        )
        .scalars()
        .all()
    )
    return project, tasks


def record_decision(
    catalog_db, move, now, source_name, project_id, target_name, moved_id, retry_after
):
    """The decision row, in the request's catalog transaction: written now
    (before any PREPARE, so that the resolver's fence waits for it), committed
    after both participants prepared."""
    catalog_db.add(
        MoveDecision(
            move_id=move.id,
            outcome="commit",
            coordinator=recovery.coordinator_id(),
            source_tenant=source_name,
            source_project_id=project_id,
            target_tenant=target_name,
            target_project_id=moved_id,
            created_at=now,
        )
    )
    try:
        catalog_db.flush()
    except DBAPIError as exc:
        if exc.connection_invalidated or is_conflict(exc):
            raise  # retried, or the usual 503 (tenantapp.views.errors)
        # A catalog that refuses writes (read-only, out of disk): no move
        # can be decided, and none is; nothing was prepared yet.
        log.warning("move %s: the catalog refused its decision: %s", move.id, exc.orig)
        raise ServiceUnavailable(
            "the move cannot be recorded in the catalog right now; try again shortly",
            retry_after=retry_after,
        ) from None


def move_project(request, project_id, target, check):
    """Move project ``project_id`` of the chosen tenant to ``target`` (another tenant).

    Returns ``(moved project, number of tasks)``; the commit happens when the
    request's transaction commits (see the module's docstring). ``check(project)``
    runs once the project is found and locked (If-Match, the body's 422).
    """
    tenant = request.tenant
    directory = request.registry.getUtility(ITenantDirectory)
    source_factory = directory.factory(tenant.name, tenant.db_url)
    target_factory = directory.factory(target.name, target.db_url)
    move = Move(request.registry)
    recovery.move_started(move.id)
    request.add_finished_callback(lambda request: recovery.move_ended(move.id))
    source_db, target_db = open_participants(request, move, source_factory, target_factory)
    project, tasks = lock_project_and_tasks(source_db, project_id)
    check(project)
    moved = copy_project(target_db, project, tasks)
    source_db.delete(project)  # its tasks go with it (ON DELETE CASCADE)
    source_db.flush()
    record_decision(
        request.catalog_db,
        move,
        request.now,
        tenant.name,
        project.id,
        target.name,
        moved.id,
        request.registry.tenantapp_settings.retry_after,
    )
    catalog = request.registry.getUtility(IDBFactory, "catalog")
    request.tm.get().addAfterCommitHook(_after_commit, args=(request.registry, catalog, move))
    return moved, len(tasks)


def _after_commit(succeeded, registry, catalog, move):
    if succeeded and move.decided and not move.left_prepared and not move.phase_two_failed:
        # Nothing of a complete move is left: its decision can go at once
        # (otherwise the resolver deletes it once it has finished the move).
        recovery.delete_decision(catalog, move.id)
    elif not succeeded and not move.decided and move.left_prepared:
        # The catalog's commit failed: the decision may or may not be there.
        # Settle it now rather than leave both tenants' locks held until the
        # resolver runs.
        recovery.resolve_move(
            registry,
            move.id,
            {move.gids[name]: move.factories[name] for name in move.left_prepared},
        )
