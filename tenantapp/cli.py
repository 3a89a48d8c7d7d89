"""tenantapp-admin CONFIG_URI COMMAND ...: the admin command line.

It reads the app's settings from the ini file (one configuration for the
server and the scripts), builds the app's databases from them (not the web
application: see :func:`admin_registry`) and works on the databases the ini
file names.
Exit status: 0 success, 2 usage error, 1 any other error, reported as one
line on stderr without a traceback.
"""

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from tqdm import tqdm

from tenantapp import migrations
from tenantapp.db import relocation, template
from tenantapp.db.directory import is_valid_tenant_name
from tenantapp.db.engines import libpq_timeouts, make_engine, normalize_url, writing_engine
from tenantapp.db.provisioning import (
    DatabaseInUse,
    UnusableDatabaseURL,
    configure_database,
    create_database,
    database_identity,
    displayable_url,
    drop_database,
    tenant_database_url,
)
from tenantapp.errors import Conflict, NotFound
from tenantapp.interfaces import IDBFactory, ITenantDirectory
from tenantapp.models.catalog import ROLES, LoginSession, Membership, Tenant, User
from tenantapp.models.tenant import Project, Task
from tenantapp.services import members
from tenantapp.settings import SettingsError, parse_settings

#: How long `tenant move` waits for the writes in flight on the old database.
MOVE_LOCK_WAIT_S = 10


class CommandError(Exception):
    """A failure to report as one line, exit status 1."""


class SwitchUnknown(Exception):
    """`tenant move` could not tell whether the catalog took the new URL."""


def first_line(error):
    """The first line of an error's text (a driver's message runs on), or its type."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def database_problem(error):
    """(word for the SCHEMA column, one line) for a database that could not be read."""
    if isinstance(error, migrations.DatabaseMissing):
        return "missing", first_line(error)
    if isinstance(error, OperationalError):
        return "unreachable", f"database unreachable: {first_line(error)}"
    return "unreadable", f"database unreadable: {first_line(error)}"


class Admin:
    """The commands, over a registry with the app's databases (:func:`admin_registry`)."""

    def __init__(self, registry, out=None, err=None):
        self.registry = registry
        self.catalog = registry.getUtility(IDBFactory, "catalog")
        self.directory = registry.getUtility(ITenantDirectory)
        # Looked up now, not at import: tests and callers may replace sys.stdout.
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # Every connection the commands open gives up on a silent server.
        self.connect_timeout = registry.tenantapp_settings.connect_timeout

    def say(self, line):
        print(line, file=self.out)

    def warn(self, line):
        print(f"tenantapp-admin: warning: {line}", file=self.err)

    # --- catalog -------------------------------------------------------------

    def _configure(self, url):
        warning = configure_database(
            url, self.registry.tenantapp_settings.statement_timeout_ms, self.connect_timeout
        )
        if warning:
            self.warn(warning)

    def init(self):
        create_database(self.catalog.url, self.connect_timeout)
        self._configure(self.catalog.url)
        migrations.upgrade(self.catalog.write_engine, "catalog")
        self.say(f"catalog schema at {migrations.head_revision('catalog')}")
        self._refresh_templates([self._default_tenant_url()])

    def _default_tenant_url(self):
        # A tenant URL of the template's server (or folder): where tenants go.
        return self.directory.url_template.format(name="template")

    def _refresh_templates(self, urls):
        """Make the tenant template at the newest schema on the server (or in
        the folder) of each of ``urls``; a failure is a warning: tenants are
        then created by migrating."""
        places = {}
        for url in urls:
            try:
                identity = database_identity(url)
            except (ValueError, SQLAlchemyError):
                continue
            # One per PostgreSQL server, one per SQLite folder.
            place = identity[:3] if identity[0] == "postgresql" else os.path.dirname(identity[1])
            places.setdefault(place, url)
        for url in places.values():
            try:
                template.ensure_template(url, connect_timeout=self.connect_timeout)
            except template.TemplateUnusable as exc:
                self.warn(f"{exc} ({displayable_url(url)})")
            except SQLAlchemyError as exc:
                self.warn(f"no tenant template on {displayable_url(url)}: {first_line(exc)}")

    def demo(self):
        from tenantapp.demo import load_demo

        for line in load_demo(self):
            self.say(line)

    # --- tenants -------------------------------------------------------------

    def _tenant(self, session, name, lock=False):
        """Tenant ``name`` (its row locked until the transaction ends if ``lock``)."""
        query = select(Tenant).where(Tenant.name == name)
        tenant = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if tenant is None:
            raise CommandError(f"no such tenant: {name}")
        return tenant

    def tenant_create(self, name, display_name=None, url=None):
        if not is_valid_tenant_name(name):
            raise CommandError(
                f"invalid tenant name {name!r}: 2-40 characters, a-z, 0-9 and _, "
                "starting with a letter"
            )
        own_url = None
        if url is not None:
            try:
                own_url = tenant_database_url(url).render_as_string(hide_password=False)
            except UnusableDatabaseURL as exc:
                raise CommandError(str(exc)) from None
        db_url = self.directory.url_for(name, own_url)
        identity = database_identity(db_url)
        # Checked before anything is created, and again where the tenant is
        # registered, serialized with any other registration.
        with self.catalog.transaction(write=False) as session:
            self._refuse_taken(session, name, db_url, identity)
        try:
            cloned = template.create_from_template(db_url, connect_timeout=self.connect_timeout)
        except template.TemplateUnusable as exc:
            self.warn(f"{exc}: creating tenant {name}'s database by migrating instead")
            cloned = False
        if not cloned:
            create_database(db_url, self.connect_timeout)
        self._configure(db_url)
        factory = self.directory.register(name, own_url)
        if not cloned:  # a copy of the template is at the newest schema already
            migrations.upgrade(factory.write_engine, "tenant")
        factory.dispose()  # a script keeps no pool open per tenant
        with self.catalog.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Blocks other registrations (and any write to tenants) until
                # this one commits; reads, such as a login's, go on. SQLite:
                # this transaction's BEGIN IMMEDIATE serializes writers already.
                session.execute(text("LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE"))
            self._refuse_taken(session, name, db_url, identity)
            session.add(
                Tenant(
                    name=name, display_name=display_name or name, status="active", db_url=own_url
                )
            )
        self.say(f"tenant {name} created")

    def _refuse_taken(self, session, name, db_url, identity):
        """CommandError when tenant ``name`` exists, or another tenant's database
        (its own URL or the template's) is the one at ``db_url``."""
        if session.execute(select(Tenant.id).where(Tenant.name == name)).first():
            raise CommandError(f"tenant {name} already exists")
        self._refuse_shared(session, db_url, identity)

    def _refuse_shared(self, session, db_url, identity, mover=None):
        """CommandError when the database at ``db_url`` is a tenant's other than ``mover``."""
        if identity is None:
            return
        for other, other_url in session.execute(select(Tenant.name, Tenant.db_url)):
            if other == mover:
                continue
            try:
                same = database_identity(self.directory.url_for(other, other_url)) == identity
            except (ValueError, SQLAlchemyError):
                continue  # a stored URL this code cannot read names no database of ours
            if same:
                raise CommandError(
                    f"the database {displayable_url(db_url)} is tenant {other}'s: "
                    "two tenants never share a database"
                )

    def tenant_list(self, as_json=False):
        with self.catalog.transaction(write=False) as session:
            tenants = session.execute(
                select(Tenant.name, Tenant.display_name, Tenant.status, Tenant.db_url).order_by(
                    Tenant.name
                )
            ).all()
        revisions, problems = self._read_revisions(
            {t.name: self.directory.url_for(t.name, t.db_url) for t in tenants}
        )
        for name, (_, reason) in sorted(problems.items()):
            self.warn(f"tenant {name}: {reason}")
        rows = [
            {
                "name": t.name,
                "display_name": t.display_name,
                "status": t.status,
                "schema_version": revisions.get(t.name),
            }
            for t in tenants
        ]
        if as_json:
            # The contract's statuses are "active" and "suspended": a tenant
            # being moved serves (reads), so it is active there.
            for row in rows:
                row["status"] = "active" if row["status"] == "moving" else row["status"]
            self.say(json.dumps(rows, indent=2))
            return
        self.say(f"{'NAME':<24} {'STATUS':<10} {'SCHEMA':<12} DISPLAY NAME")
        for row in rows:
            schema = problems[row["name"]][0] if row["name"] in problems else None
            self.say(
                f"{row['name']:<24} {row['status']:<10} "
                f"{schema or row['schema_version'] or '-':<12} {row['display_name']}"
            )

    def _read_revisions(self, urls):
        """({name: revision}, {name: (word, reason)}) for ``{name: url}``, read in
        threads: a dead server costs one connect timeout, not one per tenant.
        One query per tenant (``stored_revision``), not Alembic's two."""
        revisions, problems = {}, {}
        if not urls:
            return revisions, problems
        with ThreadPoolExecutor(max_workers=min(len(urls), 8)) as readers:
            checks = {
                readers.submit(migrations.stored_revision, url, self.connect_timeout): name
                for name, url in urls.items()
            }
            for future in as_completed(checks):
                error = future.exception()
                if error is None:
                    revisions[checks[future]] = future.result()
                else:
                    problems[checks[future]] = database_problem(error)
        return revisions, problems

    def tenant_delete(self, name):
        """Drop a suspended tenant's database, then its memberships and catalog entry.

        The database goes first, inside the catalog transaction that holds the
        tenant's row: a failed drop changes nothing; a catalog commit that fails
        after the drop leaves a suspended tenant without a database, which
        running the command again finishes (dropping what is gone is a no-op).
        """
        with self.catalog.transaction() as session:
            tenant = self._tenant(session, name, lock=True)
            if tenant.status != "suspended":
                raise CommandError(f"tenant {name} is {tenant.status}: suspend it first")
            url = self.directory.url_for(name, tenant.db_url)
            try:
                drop_database(url, self.connect_timeout)
            except DatabaseInUse as exc:
                raise CommandError(f"tenant {name} not deleted: {exc}") from None
            except SQLAlchemyError as exc:
                raise CommandError(
                    f"tenant {name} not deleted: its database could not be dropped: "
                    f"{first_line(exc)}"
                ) from None
            # Sessions that had it chosen go back to "no tenant chosen".
            session.execute(
                LoginSession.__table__.update()
                .where(LoginSession.tenant_id == tenant.id)
                .values(tenant_id=None)
            )
            session.execute(Membership.__table__.delete().where(Membership.tenant_id == tenant.id))
            session.delete(tenant)
        self.say(f"tenant {name} deleted")

    def tenant_export(self, name, path):
        """Write the tenant's projects and tasks to ``path`` (``-``: standard
        output) as one JSON document, from one snapshot of its database."""
        from tenantapp import transfer  # its JSON and row code: for these commands only

        with self.catalog.transaction(write=False) as session:
            url = self.directory.url_for(name, self._tenant(session, name).db_url)
        revision = migrations.revision_at(url, self.connect_timeout)
        if path == "-":
            transfer.export_tenant(url, name, revision, self.out)
            return
        # Written beside it, then renamed: FILE is whole or untouched.
        partial = f"{path}.{os.getpid()}.tmp"
        try:
            with open(partial, "w", encoding="utf-8") as out:
                projects, tasks = transfer.export_tenant(url, name, revision, out)
            os.replace(partial, path)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        self.say(f"tenant {name}: {projects} project(s), {tasks} task(s) written to {path}")

    def tenant_import(self, name, path):
        """Load a ``tenant export`` document into tenant ``name``, which has no
        projects yet; all of it in one transaction, or nothing."""
        from tenantapp import transfer  # its JSON and row code: for these commands only

        with self.catalog.transaction(write=False) as session:
            tenant = self._tenant(session, name)
            factory = self.directory.factory(name, tenant.db_url)
        try:
            with open(path, encoding="utf-8") as stream, factory.transaction() as session:
                projects, tasks = transfer.import_tenant(session, stream)
        except transfer.TransferError as exc:
            raise CommandError(f"tenant {name} not imported: {exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"tenant {name} not imported: invalid file: not UTF-8") from None
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        finally:
            factory.dispose()
        self.say(f"tenant {name}: {projects} project(s), {tasks} task(s) imported")

    def tenant_move(self, name, url, drop_old=False):
        """Move tenant ``name``'s database to ``url`` while the tenant serves.

        The new database is made (from the template) or must be empty; the
        tenant is marked 'moving' (its writes answer 503, reads go on); the
        old database's tables are locked against writers and copied from one
        snapshot; triggers that refuse writes are put on the old tables; the
        catalog then points at the new database, which every process uses
        from its next request; committing the old database's transaction
        releases the lock and fences it in one step (tenantapp.db.relocation).
        Any failure before the catalog changes switches nothing: the lock and
        the fence are rolled back, the new database is dropped (or emptied),
        the tenant is active again.
        """
        try:
            new_url = tenant_database_url(url).render_as_string(hide_password=False)
        except UnusableDatabaseURL as exc:
            raise CommandError(str(exc)) from None
        shown = displayable_url(new_url)
        with self.catalog.transaction(write=False) as session:
            tenant = self._tenant(session, name)
            old_url = self.directory.url_for(name, tenant.db_url)
            identity = database_identity(new_url)
            if identity is not None and identity == database_identity(old_url):
                raise CommandError(f"tenant {name}'s database is {shown} already")
            self._refuse_shared(session, new_url, identity, mover=name)
        head = migrations.head_revision("tenant")
        try:
            revision = migrations.revision_at(old_url, self.connect_timeout)
        except (SQLAlchemyError, migrations.DatabaseMissing) as exc:
            raise CommandError(f"tenant {name} not moved: {database_problem(exc)[1]}") from None
        if revision != head:
            raise CommandError(
                f"tenant {name} not moved: its schema is at {revision}, not {head}: "
                f"run tenant migrate {name} first"
            )
        created = self._prepare_move_target(name, new_url)
        moved = self._copy_and_switch(name, old_url, new_url, created)
        projects, tasks, refused_s = moved
        self.say(
            f"tenant {name} moved to {shown}: {projects} project(s), {tasks} task(s); "
            f"writes refused for {refused_s:.2f} s"
        )
        if drop_old:
            try:
                drop_database(old_url, self.connect_timeout)
            except (DatabaseInUse, SQLAlchemyError, OSError) as exc:
                self.warn(
                    f"the old database {displayable_url(old_url)} was not dropped: "
                    f"{first_line(exc)}"
                )
            else:
                self.say(f"old database {displayable_url(old_url)} dropped")
        else:
            self.say(f"old database kept (writes to it are refused): {displayable_url(old_url)}")

    def _prepare_move_target(self, name, url):
        """Make the database at ``url`` (a copy of the template) or check that the
        existing one is empty; bring it to the newest schema. True if made here."""
        try:
            created = template.create_from_template(url, connect_timeout=self.connect_timeout)
        except template.TemplateUnusable as exc:
            self.warn(f"{exc}: creating tenant {name}'s new database by migrating instead")
            created = create_database(url, self.connect_timeout)
        except SQLAlchemyError as exc:
            raise CommandError(
                f"tenant {name} not moved: the new database could not be made: {first_line(exc)}"
            ) from None
        try:
            self._configure(url)
            engine = self._move_engine(url)
            try:
                migrations.upgrade(writing_engine(engine), "tenant")
                with engine.connect() as connection:
                    if connection.execute(select(Project.id).limit(1)).first() is not None:
                        raise CommandError(
                            f"tenant {name} not moved: the database {displayable_url(url)} "
                            "has projects: a tenant moves only into a new or empty database"
                        )
            finally:
                engine.dispose()
        except BaseException as exc:
            if created:
                drop_database(url, self.connect_timeout)
            if isinstance(exc, SQLAlchemyError):
                raise CommandError(
                    f"tenant {name} not moved: the new database is unusable: {first_line(exc)}"
                ) from None
            raise
        return created

    def _move_engine(self, url):
        timeout = self.connect_timeout
        return make_engine(
            url, pool_size=1, pool_timeout=timeout, connect_timeout=timeout, must_exist=True
        )

    def _move_source_engine(self, url):
        """The old database's engine: SQLite's writing transactions take the
        write lock (BEGIN IMMEDIATE); PostgreSQL's driver begins by itself, as a
        server-side cursor (the copy is streamed) needs."""
        if normalize_url(url).get_backend_name() == "sqlite":
            return writing_engine(self._move_engine(url))
        return create_engine(
            normalize_url(url),
            poolclass=NullPool,
            connect_args={**libpq_timeouts(self.connect_timeout), "application_name": "tenantapp"},
        )

    def _copy_and_switch(self, name, old_url, new_url, created):
        """The read-only part of `tenant move`; returns (projects, tasks, seconds refused)."""
        from tenantapp import transfer  # its JSON and row code: for these commands only

        prior = self._mark_moving(name)
        refused_since = time.monotonic()
        switched = False
        source_engine = self._move_source_engine(old_url)
        target_engine = writing_engine(self._move_engine(new_url))
        try:
            with source_engine.connect() as source:
                source.begin()
                try:
                    relocation.lock_for_copy(source, MOVE_LOCK_WAIT_S)
                    with Session(bind=target_engine) as target, target.begin():
                        projects, tasks = transfer.copy_tenant(source, target)
                    relocation.fence(source)
                    switched = self._switch(name, old_url, new_url, prior)
                except BaseException:
                    source.rollback()  # no fence, lock released: writes resume there
                    raise
                refused_s = time.monotonic() - refused_since
                try:
                    source.commit()  # the fence, and the writers waiting meet it
                except SQLAlchemyError as exc:
                    self.warn(
                        f"the old database {displayable_url(old_url)} could not be fenced "
                        f"(a process that read its URL before the move may still write there): "
                        f"{first_line(exc)}"
                    )
        except SwitchUnknown:
            raise CommandError(
                f"tenant {name}: could not tell whether the catalog now points at "
                f"{displayable_url(new_url)} (check tenant list); the copy there is kept"
            ) from None
        except BaseException as exc:
            if not switched:
                self._undo_move(name, new_url, created, prior)
                if isinstance(exc, (SQLAlchemyError, transfer.TransferError)):
                    raise CommandError(
                        f"tenant {name} not moved (nothing switched): {first_line(exc)}"
                    ) from None
            raise
        finally:
            source_engine.dispose()
            target_engine.dispose()
        return projects, tasks, refused_s

    def _mark_moving(self, name):
        """Set an active tenant's status to 'moving'; return the status it had."""
        with self.catalog.transaction() as session:
            tenant = self._tenant(session, name, lock=True)
            prior = tenant.status
            if prior == "moving":
                raise CommandError(
                    f"tenant {name} is moving already (if an earlier tenant move was "
                    f"interrupted, tenant resume {name} makes it writable again)"
                )
            if prior == "active":
                tenant.status = "moving"
        return prior

    def _switch(self, name, old_url, new_url, prior):
        """Point the catalog at ``new_url``: True once committed. SwitchUnknown
        when the commit failed and the catalog cannot tell what it holds."""
        stored = None if new_url == self.directory.url_for(name) else new_url
        try:
            with self.catalog.transaction() as session:
                tenant = self._tenant(session, name)
                tenant.db_url = stored
                if tenant.status == "moving":
                    tenant.status = prior
            return True
        except SQLAlchemyError:
            # A COMMIT that failed may have been applied: ask again.
            try:
                with self.catalog.transaction(write=False) as session:
                    now = self._tenant(session, name).db_url
            except SQLAlchemyError:
                raise SwitchUnknown() from None
            if now == stored:
                return True
            raise

    def _undo_move(self, name, new_url, created, prior):
        """After a failed move: the new database gone (or emptied), the status back."""
        try:
            if created:
                drop_database(new_url, self.connect_timeout)
            else:
                engine = writing_engine(self._move_engine(new_url))
                try:
                    with engine.begin() as connection:
                        connection.execute(Task.__table__.delete())
                        connection.execute(Project.__table__.delete())
                finally:
                    engine.dispose()
        except (SQLAlchemyError, DatabaseInUse, OSError) as exc:
            self.warn(
                f"the new database {displayable_url(new_url)} was not cleaned up: {first_line(exc)}"
            )
        try:
            with self.catalog.transaction() as session:
                tenant = self._tenant(session, name)
                if tenant.status == "moving":
                    tenant.status = prior
        except SQLAlchemyError as exc:
            self.warn(
                f"tenant {name} is still marked moving (read-only): {first_line(exc)}; "
                f"tenant resume {name} makes it writable again"
            )

    def tenant_set_status(self, name, status):
        with self.catalog.transaction() as session:
            self._tenant(session, name).status = status
        self.say(f"tenant {name} {status}")

    def tenant_migrate(self, names, all_tenants=False, jobs=1):
        with self.catalog.transaction(write=False) as session:
            known = dict(session.execute(select(Tenant.name, Tenant.db_url)).all())
        if all_tenants:
            names = sorted(known)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise CommandError(f"no such tenant: {', '.join(unknown)}")
        head = migrations.head_revision("tenant")
        urls = {name: self.directory.url_for(name, known[name]) for name in names}
        failures = {}
        with tqdm(
            total=len(names), desc="migrating", unit="tenant", file=self.err, disable=None
        ) as progress:

            def failed(name, reason):
                failures[name] = reason
                progress.write(f"FAILED {name}: {reason}", file=self.err)

            # The cheap part first, in threads: which tenants are behind? One
            # query per database (its alembic_version), no Alembic environment;
            # those at head are done and not touched again (a second run
            # resumes where the first stopped).
            behind = []
            with ThreadPoolExecutor(max_workers=max(jobs, 4)) as readers:
                checks = {
                    readers.submit(migrations.stored_revision, urls[n], self.connect_timeout): n
                    for n in names
                }
                for future in as_completed(checks):
                    name = checks[future]
                    if future.exception() is not None:
                        failed(name, database_problem(future.exception())[1])
                        progress.update(1)
                    elif future.result() == head:
                        progress.update(1)
                    else:
                        behind.append(name)
            # Then the migrations, N at a time in worker processes, not threads:
            # Alembic's migration context is global to a process. A failure is
            # reported and the others go on.
            if behind:
                workers = ProcessPoolExecutor(
                    max_workers=min(jobs, len(behind)),
                    mp_context=multiprocessing.get_context("spawn"),
                )
                with workers:
                    futures = {
                        workers.submit(
                            migrations.upgrade_url, urls[name], "tenant", self.connect_timeout
                        ): name
                        for name in sorted(behind)
                    }
                    for future in as_completed(futures):
                        if future.exception() is not None:
                            failed(futures[future], first_line(future.exception()))
                        progress.update(1)
        self._refresh_templates([self._default_tenant_url(), *urls.values()])
        at_head = len(names) - len(behind) - sum(1 for n in failures if n not in behind)
        self.say(f"{at_head} tenant(s) already at {head}, not touched; {len(behind)} behind")
        self.say(f"{len(names) - len(failures)} of {len(names)} tenant(s) at {head}")
        if failures:
            raise CommandError(f"{len(failures)} tenant(s) failed: {', '.join(sorted(failures))}")

    # --- users ---------------------------------------------------------------

    def _user(self, session, username):
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            raise CommandError(f"no such user: {username}")
        return user

    def user_create(self, username, password, display_name=None):
        if not username or len(username) > 150 or username != username.strip():
            raise CommandError("a username is 1-150 characters without surrounding spaces")
        if not password:
            raise CommandError("the password read from standard input is empty")
        with self.catalog.transaction() as session:
            if session.execute(select(User.id).where(User.username == username)).first():
                raise CommandError(f"user {username} already exists")
            session.add(
                User(
                    username=username,
                    display_name=display_name or username,
                    password_hash=self.registry.passwords.hash(password),
                    disabled=False,
                )
            )
        self.say(f"user {username} created")

    def user_set_disabled(self, username, disabled):
        with self.catalog.transaction() as session:
            user = self._user(session, username)
            user.disabled = disabled
            if disabled:
                # Their sessions end now, on every process.
                session.execute(
                    LoginSession.__table__.delete().where(LoginSession.user_id == user.id)
                )
        self.say(f"user {username} {'disabled' if disabled else 'enabled'}")

    def user_grant(self, username, tenant_name, role, force=False):
        """Add or change a membership, through the members service (the API's):
        demoting a tenant's last admin is refused unless ``force``."""
        with self.catalog.transaction() as session:
            user = self._user(session, username)
            tenant = self._tenant(session, tenant_name)
            if user.disabled:
                raise CommandError(f"user {username} is disabled")
            try:
                members.set_role(session, tenant.id, username, role, force=force)
            except Conflict as exc:
                raise CommandError(_refused(exc, tenant_name)) from None
        self.say(f"{username} is {role} of {tenant_name}")

    def user_revoke(self, username, tenant_name, force=False):
        """Remove a membership, through the members service (the API's):
        removing a tenant's last admin is refused unless ``force``."""
        with self.catalog.transaction() as session:
            self._user(session, username)
            tenant = self._tenant(session, tenant_name)
            try:
                members.remove_member(session, tenant.id, username, force=force)
            except NotFound:
                raise CommandError(f"{username} is not a member of {tenant_name}") from None
            except Conflict as exc:
                raise CommandError(_refused(exc, tenant_name)) from None
        self.say(f"{username} is no longer a member of {tenant_name}")

    def count_users(self):
        with self.catalog.transaction(write=False) as session:
            return session.execute(select(func.count()).select_from(User)).scalar_one()

    def recover(self, grace=None):
        """Resolve now what interrupted moves of projects left behind (issue 12):
        transactions left prepared, decisions nothing is left of. Prints one
        line per thing done; a CommandError when something could not be resolved."""
        from tenantapp.db.recovery import resolve

        result = resolve(self.registry, grace=grace)
        for line in result.lines():
            self.say(line)
        if result.errors:
            raise CommandError("some prepared transactions could not be resolved (see above)")
        return result


def _refused(conflict, tenant_name):
    return f"{tenant_name}: {conflict.message} (--force to do it anyway)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tenantapp-admin",
        description="Administer tenantapp's catalog and tenant databases.",
    )
    parser.add_argument("config_uri", help="the ini file, e.g. development.ini")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init", help="create or upgrade the catalog schema")
    commands.add_parser("demo", help="load demo users and tenants, print their logins")
    commands.add_parser(
        "recover", help="resolve transactions that interrupted project moves left prepared"
    )

    tenant = commands.add_parser("tenant", help="tenants").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = tenant.add_parser("create", help="register a tenant and create its database")
    create.add_argument("name")
    create.add_argument("--display-name")
    create.add_argument("--url", help="its own database URL (default: the template's)")
    listing = tenant.add_parser("list", help="list tenants with status and schema version")
    listing.add_argument("--json", action="store_true")
    for action in ("suspend", "resume"):
        tenant.add_parser(action, help=f"{action} a tenant").add_argument("name")
    delete = tenant.add_parser("delete", help="delete a suspended tenant and its database")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", required=True, help="yes, delete it")
    export = tenant.add_parser("export", help="write a tenant's projects and tasks as JSON")
    export.add_argument("name")
    export.add_argument("file", help="the file to write, - for standard output")
    load = tenant.add_parser("import", help="load an export into a tenant without projects")
    load.add_argument("name")
    load.add_argument("file")
    move = tenant.add_parser(
        "move", help="move a tenant's database to another URL while it serves reads"
    )
    move.add_argument("name")
    move.add_argument("--url", required=True, help="the new database (created when needed)")
    move.add_argument("--drop-old", action="store_true", help="drop the old database afterwards")
    migrate = tenant.add_parser("migrate", help="upgrade tenant schemas (--all or NAME...)")
    migrate.add_argument("--all", action="store_true", dest="all_tenants")
    migrate.add_argument("names", nargs="*", default=[], metavar="NAME")
    migrate.add_argument("--jobs", type=int, default=1, help="tenants migrated at once")

    user = commands.add_parser("user", help="users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    user_create = user.add_parser("create", help="create a user")
    user_create.add_argument("username")
    user_create.add_argument("--display-name")
    user_create.add_argument("--password-stdin", action="store_true", required=True)
    for action in ("disable", "enable"):
        user.add_parser(action, help=f"{action} a user").add_argument("username")
    grant = user.add_parser("grant", help="add or change a membership")
    grant.add_argument("username")
    grant.add_argument("tenant")
    grant.add_argument("--role", choices=ROLES, required=True)
    grant.add_argument(
        "--force", action="store_true", help="even if it demotes the tenant's last admin"
    )
    revoke = user.add_parser("revoke", help="remove a membership")
    revoke.add_argument("username")
    revoke.add_argument("tenant")
    revoke.add_argument(
        "--force", action="store_true", help="even if it removes the tenant's last admin"
    )
    return parser


def run(admin, args, stdin=None):
    """Carry out the parsed command ``args`` with ``admin``."""
    stdin = stdin or sys.stdin
    if args.command == "init":
        admin.init()
    elif args.command == "demo":
        admin.demo()
    elif args.command == "recover":
        admin.recover()
    elif args.command == "tenant":
        if args.action == "create":
            admin.tenant_create(args.name, args.display_name, args.url)
        elif args.action == "list":
            admin.tenant_list(as_json=args.json)
        elif args.action == "suspend":
            admin.tenant_set_status(args.name, "suspended")
        elif args.action == "resume":
            admin.tenant_set_status(args.name, "active")
        elif args.action == "delete":
            admin.tenant_delete(args.name)
        elif args.action == "export":
            admin.tenant_export(args.name, args.file)
        elif args.action == "import":
            admin.tenant_import(args.name, args.file)
        elif args.action == "move":
            admin.tenant_move(args.name, args.url, drop_old=args.drop_old)
        elif args.action == "migrate":
            admin.tenant_migrate(args.names, all_tenants=args.all_tenants, jobs=args.jobs)
    elif args.command == "user":
        if args.action == "create":
            password = stdin.read()
            password = password[:-1] if password.endswith("\n") else password
            admin.user_create(args.username, password, args.display_name)
        elif args.action in ("disable", "enable"):
            admin.user_set_disabled(args.username, args.action == "disable")
        elif args.action == "grant":
            admin.user_grant(args.username, args.tenant, args.role, force=args.force)
        elif args.action == "revoke":
            admin.user_revoke(args.username, args.tenant, force=args.force)


def admin_registry(config_uri):
    """What the commands need of the app, without the web application: the
    ini file's settings, the catalog and tenant databases (DBFactory, tenant
    directory, connection budget) and the password hasher, in a registry of
    their own. No views, templates or routes are loaded, no tenant is looked
    up: a command starts in about half the time that ``pyramid.paster.bootstrap``
    (the whole app) took."""
    import plaster
    from pyramid.registry import Registry

    from tenantapp.auth.passwords import passwords_for
    from tenantapp.db import build_databases
    from tenantapp.models.types import utcnow

    settings = plaster.get_settings(config_uri, "app:main")
    tenantapp_settings = parse_settings(settings)
    registry = Registry("tenantapp-admin")
    registry.settings = settings
    registry.tenantapp_settings = tenantapp_settings
    registry.clock = utcnow
    build_databases(registry, tenantapp_settings)
    registry.passwords = passwords_for(tenantapp_settings)
    return registry


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error
    if args.command == "tenant" and args.action == "migrate":
        if args.all_tenants == bool(args.names):
            parser.error("tenant migrate takes --all or tenant names, not both or neither")
        if args.jobs < 1:
            parser.error("--jobs must be at least 1")
    # Warnings and errors only: the command's own output is on stdout.
    logging.basicConfig(level=logging.WARNING, format="tenantapp-admin: %(message)s")
    logging.getLogger("tenantapp.db").setLevel(logging.ERROR)
    try:
        run(Admin(admin_registry(args.config_uri)), args)
    except SettingsError as exc:
        print(f"tenantapp-admin: configuration error: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"tenantapp-admin: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # a configuration error from the app factory
        if exc.code in (None, 0):
            return 0
        print(
            f"tenantapp-admin: {exc.code}" if isinstance(exc.code, str) else exc.code,
            file=sys.stderr,
        )
        return 1
    except FileNotFoundError as exc:
        print(f"tenantapp-admin: no such file: {exc.filename or args.config_uri}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"tenantapp-admin: database error: {first_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the contract: one line, no traceback
        print(f"tenantapp-admin: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
