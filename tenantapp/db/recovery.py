"""Two-phase commit across databases: transaction ids, decisions, and the resolver.

A move of a project between tenants (tenantapp.services.project_move) prepares
both tenant databases (``PREPARE TRANSACTION``) under transaction ids that name
the move and the process coordinating it, then commits one decision row in
the catalog (``move_decisions``) -- the decision point -- then sends ``COMMIT
PREPARED`` to each. A process that dies in between leaves transactions
prepared: they hold their locks (the moved project's row, the target's
id-order lock) until someone resolves them. That is :func:`resolve`:

- it reads the decision rows *first*, then lists ``pg_prepared_xacts`` on
  every server that holds tenants (only our ids, ``tenantapp:...``);
- a prepared transaction whose move has a decision gets that decision
  (COMMIT or ROLLBACK PREPARED, sent in the transaction's own database);
- one without a decision is left alone while it may still be in the hands of
  a live coordinator: its coordinator process still runs (same host: that
  pid with the same start time; this process: the move is still in flight),
  or, coordinated on another host, it is younger than the grace period.
  Otherwise the resolver first writes an 'abort' decision (``INSERT ... ON
  CONFLICT DO NOTHING``) and then acts on whatever row is there. That insert
  is the fence: a coordinator's own decision row is written (uncommitted)
  before it prepares anything, so the resolver's insert waits for it and
  then finds 'commit', or wins and the coordinator never commits. The two
  can never disagree, whatever the clocks say. (Citus' transaction recovery,
  transaction_recovery.c, likewise keeps one record per decided transaction
  and leaves alone the transactions its own coordinator still has in flight.)
- a decision read before the listing, none of whose transactions is left
  prepared, is deleted (the coordinator deletes its own at once after a
  complete commit; this catches those it could not).

On SQLite there is no PREPARE: the coordinator commits the decision, then
the target, then the source; :func:`resolve` finishes a move whose target
committed and whose source did not (see tenantapp.services.project_move).
"""

import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import MoveDecision, Tenant
from tenantapp.models.tenant import Project
from tenantapp.models.types import utcnow

log = logging.getLogger(__name__)

GID_PREFIX = "tenantapp:"
_GID_RE = re.compile(r"^tenantapp:([0-9a-f]{32}):(source|target):(.+)$")

# SQLSTATE of COMMIT/ROLLBACK PREPARED for an id that is not (or no longer) prepared.
_UNDEFINED_OBJECT = "42704"


# --- who coordinates ----------------------------------------------------------------


def _host():
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60] or "host"


def process_start(pid):
    """The start time of process ``pid`` (clock ticks since boot, /proc), or None.

    With the pid it names one process for the life of the host: a pid reused
    by another process has another start time.
    """
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    # Field 22 of stat(5); fields[0] here is field 3 (the state).
    return fields[19].decode() if len(fields) > 19 else None


_identity = {}


def coordinator_id():
    """``host/pid/start``: this process, as transaction ids and decisions name it."""
    pid = os.getpid()  # computed again in a forked child
    ident = _identity.get(pid)
    if ident is None:
        ident = _identity[pid] = f"{_host()}/{pid}/{process_start(pid) or 0}"
    return ident


# Moves this process is working on right now (its own resolver leaves them alone).
_in_flight = set()
_in_flight_lock = threading.Lock()


def move_started(move_id):
    with _in_flight_lock:
        _in_flight.add(move_id)


def move_ended(move_id):
    with _in_flight_lock:
        _in_flight.discard(move_id)


def coordinator_state(coordinator, move_id):
    """Whether the process that coordinates ``move_id`` may still be working on it:
    ``"alive"``, ``"dead"``, or ``"unknown"`` (another host: it cannot be asked;
    there the grace period and the fence decide).

    This process: alive while the move is in flight. Another process of this
    host: alive while that pid runs with the same start time.
    """
    if coordinator == coordinator_id():
        with _in_flight_lock:
            return "alive" if move_id in _in_flight else "dead"
    parts = coordinator.split("/")
    if len(parts) != 3 or parts[0] != _host():
        return "unknown"
    _host_name, pid, start = parts
    alive = pid.isdigit() and process_start(int(pid)) == start
    return "alive" if alive else "dead"


def may_resolve(coordinator, move_id, since, grace, now):
    """True unless a live coordinator may still be working on the move: it is
    alive, or it cannot be asked and the transaction is younger than ``grace``."""
    state = coordinator_state(coordinator, move_id)
    if state == "alive":
        return False
    if state == "dead":
        return True
    return since is None or now - since >= timedelta(seconds=grace)


def make_gid(move_id, participant):
    """The transaction id of one participant of a move (at most 200 bytes)."""
    return f"{GID_PREFIX}{move_id}:{participant}:{coordinator_id()}"


def parse_gid(gid):
    """``(move_id, participant, coordinator)`` of one of our ids, else None."""
    match = _GID_RE.match(gid)
    return match.groups() if match else None


# --- the resolver ---------------------------------------------------------------------


@dataclass
class Resolution:
    """What one run of the resolver did (and what it left for later)."""

    committed: list = field(default_factory=list)
    rolled_back: list = field(default_factory=list)
    finished: list = field(default_factory=list)  # SQLite moves completed
    waiting: list = field(default_factory=list)  # in a live coordinator's hands
    decisions_deleted: int = 0
    errors: list = field(default_factory=list)

    @property
    def resolved(self):
        return len(self.committed) + len(self.rolled_back) + len(self.finished)

    def lines(self):
        """One line per thing done, for ``tenantapp-admin recover``."""
        out = [f"committed {gid}" for gid in self.committed]
        out += [f"rolled back {gid}" for gid in self.rolled_back]
        out += [f"finished {what}" for what in self.finished]
        out += [f"left to its coordinator {gid}" for gid in self.waiting]
        out += [f"error: {error}" for error in self.errors]
        if self.decisions_deleted:
            out.append(f"deleted {self.decisions_deleted} decision record(s)")
        if not out:
            out.append("nothing to recover")
        return out


def _first_line(exc):
    text_ = str(exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _server_key(url):
    return (url.get_backend_name(), url.host, url.port, url.username)


def _tenant_factories(registry):
    """Every tenant's DBFactory, read from the catalog (the directory's own)."""
    catalog = registry.getUtility(IDBFactory, "catalog")
    directory = registry.getUtility(ITenantDirectory)
    with catalog.transaction(write=False) as session:
        rows = session.execute(select(Tenant.name, Tenant.db_url)).all()
    return {name: directory.factory(name, url) for name, url in rows}


def _prepared_on_servers(factories, result, catalog):
    """``[(gid, prepared_at, factory)]``: our prepared transactions on every
    PostgreSQL server that holds tenants, each with the factory of its database.
    Returns None when a server could not be asked."""
    servers = {}
    for factory in factories.values():
        if factory.url.get_backend_name() == "postgresql":
            servers.setdefault(_server_key(factory.url), []).append(factory)
    found, complete = [], True
    for key, group in servers.items():
        by_database = {factory.url.database: factory for factory in group}
        try:
            with _asking_engine(key, group, catalog).connect() as connection:
                rows = connection.execute(
                    text(
                        "SELECT gid, prepared, database FROM pg_prepared_xacts "
                        "WHERE gid LIKE 'tenantapp:%' ORDER BY prepared"
                    )
                ).all()
        except SQLAlchemyError as exc:
            complete = False
            result.errors.append(f"server of {group[0].name}: {_first_line(exc)}")
            continue
        for gid, prepared_at, database in rows:
            factory = by_database.get(database)
            if factory is None:
                result.errors.append(f"{gid}: database {database} is no tenant's")
                continue
            found.append((gid, prepared_at, factory))
    return found if complete else None, found


def _asking_engine(key, group, catalog):
    """An Engine to ask server ``key`` with (``pg_prepared_xacts`` is the whole
    server's): the catalog's when it is there, else a tenant's already in use,
    else the first tenant's. A pass every minute then opens no tenant
    connection and evicts no live tenant in the usual set-up (the catalog and
    the tenants on one server)."""
    if _server_key(catalog.url) == key:
        return catalog.engine
    for factory in group:
        engine = factory.made_engine
        if engine is not None:
            return engine
    return group[0].engine


def _fence(catalog, move_id, coordinator, now):
    """Write 'abort' for a move unless a decision exists; return the decision."""
    with catalog.transaction() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                pg_insert(MoveDecision)
                .values(move_id=move_id, outcome="abort", coordinator=coordinator, created_at=now)
                .on_conflict_do_nothing(index_elements=["move_id"])
            )
        elif session.get(MoveDecision, move_id) is None:
            session.add(
                MoveDecision(
                    move_id=move_id, outcome="abort", coordinator=coordinator, created_at=now
                )
            )
            session.flush()
        return session.execute(
            select(MoveDecision.outcome).where(MoveDecision.move_id == move_id)
        ).scalar_one()


def finish_prepared(factory, gid, commit):
    """COMMIT (or ROLLBACK) PREPARED ``gid`` in ``factory``'s database.

    Returns False when it was no longer prepared (someone else finished it).
    """
    verb = "COMMIT" if commit else "ROLLBACK"
    # The reading engine runs in autocommit: no transaction block around it.
    with factory.engine.connect() as connection:
        try:
            connection.exec_driver_sql(f"{verb} PREPARED '{gid}'")
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) == _UNDEFINED_OBJECT:
                return False
            raise
    return True


def resolve(registry, grace=None, now=None):
    """Resolve what moves left behind; return a :class:`Resolution`.

    ``grace``: seconds a transaction without a decision is left to its
    coordinator (default: the setting ``tenantapp.move_grace_period``).
    """
    settings = registry.tenantapp_settings
    grace = settings.move_grace_period if grace is None else grace
    now = now or utcnow()
    catalog = registry.getUtility(IDBFactory, "catalog")
    result = Resolution()
    try:
        # Decisions first: a decision committed after this read has its
        # transactions prepared before, so the listing below sees them.
        with catalog.transaction(write=False) as session:
            decisions = {
                row.move_id: row for row in session.execute(select(MoveDecision)).scalars()
            }
        factories = _tenant_factories(registry)
    except SQLAlchemyError as exc:
        result.errors.append(f"catalog: {_first_line(exc)}")
        log.warning("move recovery: catalog not readable: %s", _first_line(exc))
        return result
    complete, prepared = _prepared_on_servers(factories, result, catalog)
    seen = set()  # moves with a transaction this run left prepared
    for gid, prepared_at, factory in prepared:
        move_id, participant, coordinator = parse_gid(gid) or (None, None, None)
        if move_id is None:
            continue
        decision = decisions.get(move_id)
        if not may_resolve(coordinator, move_id, prepared_at, grace, now):
            seen.add(move_id)
            result.waiting.append(gid)
            continue
        try:
            if decision is not None:
                outcome = decision.outcome
            else:
                outcome = _fence(catalog, move_id, coordinator_id(), now)
                # Deleted below with the others once nothing of the move is
                # left: no coordinator can decide it any more (its own row,
                # written before it prepared, was rolled back: the fence's
                # insert waited for it).
                decisions[move_id] = MoveDecision(
                    move_id=move_id, outcome=outcome, coordinator=coordinator, created_at=None
                )
            commit = outcome == "commit"
            if finish_prepared(factory, gid, commit):
                (result.committed if commit else result.rolled_back).append(gid)
                log.info(
                    "move recovery: %s prepared transaction %s in %s (decision: %s)",
                    "committed" if commit else "rolled back",
                    gid,
                    factory.name,
                    outcome if decision is not None else f"{outcome}, none found",
                )
        except SQLAlchemyError as exc:
            seen.add(move_id)
            result.errors.append(f"{gid}: {_first_line(exc)}")
            log.warning("move recovery: could not resolve %s: %s", gid, _first_line(exc))
    _finish_sqlite_moves(catalog, factories, decisions, seen, grace, now, result)
    if complete is not None:
        _delete_finished_decisions(catalog, decisions, seen, grace, now, result)
    return result


def _finish_sqlite_moves(catalog, factories, decisions, seen, grace, now, result):
    """SQLite: a 'commit' decision still here means the coordinator stopped
    before it deleted it. The target committed before the source (the
    coordinator's order): when the target has the new project, the source's
    copy is deleted; when it does not, the move never happened there and the
    source was never touched."""
    for move_id, decision in list(decisions.items()):
        if move_id in seen or decision.outcome != "commit":
            continue
        source = factories.get(decision.source_tenant)
        target = factories.get(decision.target_tenant)
        if source is None or target is None or target.url.get_backend_name() != "sqlite":
            continue
        if not may_resolve(decision.coordinator, move_id, decision.created_at, grace, now):
            seen.add(move_id)  # not to be deleted below either
            result.waiting.append(move_id)
            continue
        try:
            with target.transaction(write=False) as db:
                moved = db.get(Project, decision.target_project_id)
                moved_key = moved.name_key if moved is not None else None
            if moved_key is not None:
                with source.transaction() as db:
                    original = db.get(Project, decision.source_project_id)
                    if original is not None and original.name_key == moved_key:
                        db.delete(original)
                        result.finished.append(
                            f"move {move_id}: deleted project {decision.source_project_id} "
                            f"of {decision.source_tenant}"
                        )
                        log.info(
                            "move recovery: finished move %s (deleted project %s of %s)",
                            move_id,
                            decision.source_project_id,
                            decision.source_tenant,
                        )
        except SQLAlchemyError as exc:
            seen.add(move_id)
            result.errors.append(f"move {move_id}: {_first_line(exc)}")


def _delete_finished_decisions(catalog, decisions, seen, grace, now, result):
    done = [
        move_id
        for move_id, decision in decisions.items()
        if move_id not in seen
        and may_resolve(decision.coordinator, move_id, decision.created_at, grace, now)
    ]
    if not done:
        return
    try:
        with catalog.transaction() as session:
            session.execute(delete(MoveDecision).where(MoveDecision.move_id.in_(done)))
        result.decisions_deleted = len(done)
    except SQLAlchemyError as exc:
        result.errors.append(f"deleting decisions: {_first_line(exc)}")


def resolve_move(registry, move_id, participants):
    """The coordinator's own recovery of one move whose decision is in doubt
    (the catalog's commit failed: it may or may not have happened).

    ``participants``: ``{gid: factory}``. The fence says what was decided
    ('abort' unless the decision committed); every participant gets it. Best
    effort: what fails here is left to the resolver.
    """
    catalog = registry.getUtility(IDBFactory, "catalog")
    try:
        outcome = _fence(catalog, move_id, coordinator_id(), utcnow())
        for gid, factory in participants.items():
            finish_prepared(factory, gid, outcome == "commit")
            log.info("move %s: %s prepared transaction %s", move_id, outcome, gid)
    except SQLAlchemyError as exc:
        log.warning("move %s left to the resolver: %s", move_id, _first_line(exc))
        return None
    delete_decision(catalog, move_id)
    return outcome


def delete_decision(catalog, move_id):
    """Delete a move's decision once nothing of it is left (best effort)."""
    try:
        with catalog.transaction() as session:
            session.execute(delete(MoveDecision).where(MoveDecision.move_id == move_id))
    except SQLAlchemyError as exc:
        # The resolver deletes it later.
        log.warning("could not delete the decision of move %s: %s", move_id, _first_line(exc))


# --- running it -----------------------------------------------------------------------


def warn_without_prepared_transactions(registry):
    """Log a warning for each PostgreSQL server of tenants with
    ``max_prepared_transactions = 0`` (moves there answer 503)."""
    try:
        factories = _tenant_factories(registry)
    except SQLAlchemyError:
        return
    servers = {}
    for factory in factories.values():
        if factory.url.get_backend_name() == "postgresql":
            servers.setdefault(_server_key(factory.url), factory)
    for factory in servers.values():
        try:
            if max_prepared_transactions(factory) == 0:
                log.warning(
                    "max_prepared_transactions is 0 on the server of %s: moving a project "
                    "between tenants answers 503 until it is raised",
                    factory.name,
                )
        except SQLAlchemyError:
            continue


def max_prepared_transactions(factory):
    with factory.engine.connect() as connection:
        return int(connection.exec_driver_sql("SHOW max_prepared_transactions").scalar())


class Resolver:
    """Runs :func:`resolve` now and then in a daemon thread, until stopped."""

    def __init__(self, registry, interval):
        self.registry = registry
        self.interval = interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="move-resolver", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()

    def run_once(self):
        try:
            return resolve(self.registry)
        except Exception:  # a resolver that dies resolves nothing again
            log.exception("move recovery failed")
            return None

    def _run(self):
        self.run_once()
        while not self._stop.wait(self.interval):
            self.run_once()


def start_resolver(registry):
    """At app start: warn about servers without prepared transactions, resolve
    once now and then every ``move_resolver_interval`` seconds (0: never)."""
    interval = registry.tenantapp_settings.move_resolver_interval
    if interval <= 0:
        return None
    warn_without_prepared_transactions(registry)
    resolver = Resolver(registry, interval).start()
    registry.move_resolver = resolver
    return resolver
