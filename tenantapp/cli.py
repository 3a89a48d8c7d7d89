"""tenantapp-admin CONFIG_URI COMMAND ...: the admin command line.

It loads the app from the ini file with ``bootstrap`` (one configuration for
the server and the scripts) and works on the databases the ini file names.
Exit status: 0 success, 2 usage error, 1 any other error, reported as one
line on stderr without a traceback.
"""

import argparse
import json
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from tqdm import tqdm

from tenantapp import migrations, transfer
from tenantapp.db import template
from tenantapp.db.directory import is_valid_tenant_name
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
from tenantapp.services import members


class CommandError(Exception):
    """A failure to report as one line, exit status 1."""


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
    """The commands, over the registry of a bootstrapped app."""

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

    def _tenant(self, session, name):
        tenant = session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
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
        if identity is None:
            return
        for other, other_url in session.execute(select(Tenant.name, Tenant.db_url)):
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
        threads: a dead server costs one connect timeout, not one per tenant."""
        revisions, problems = {}, {}
        if not urls:
            return revisions, problems
        with ThreadPoolExecutor(max_workers=min(len(urls), 8)) as readers:
            checks = {
                readers.submit(migrations.revision_at, url, self.connect_timeout): name
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
            tenant = session.execute(
                select(Tenant).where(Tenant.name == name).with_for_update()
            ).scalar_one_or_none()
            if tenant is None:
                raise CommandError(f"no such tenant: {name}")
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

            # The cheap part first, in threads: which tenants are behind? Those
            # at head are done (a second run resumes where the first stopped).
            behind = []
            with ThreadPoolExecutor(max_workers=max(jobs, 4)) as readers:
                checks = {
                    readers.submit(migrations.revision_at, urls[n], self.connect_timeout): n
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
        from pyramid.paster import bootstrap

        with bootstrap(args.config_uri) as env:
            run(Admin(env["registry"]), args)
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
