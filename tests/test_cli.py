"""tenantapp-admin as API.md's "Admin command line" describes it.

Most commands run in this process through ``tenantapp.cli.main`` (which
builds the app's databases from an ini file, as another process would); a
few run as a real subprocess of the console script, for exit codes and stderr.
"""

import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest
from alembic import command
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from tenantapp import cli as cli_module
from tenantapp import migrations
from tenantapp.db.engines import normalize_url
from tenantapp.models.catalog import Membership, Tenant, User

SCRIPT = os.path.join(os.path.dirname(sys.executable), "tenantapp-admin")
CLI_SECRET = "cli-tests-secret-0123456789abcdefghijklm"  # 40 characters
DEAD_PG_URL = "postgresql://postgres@127.0.0.1:1/tenant_dead"


def unique(prefix):
    """A tenant (or user) name no other test uses: lowercase, at most 40 characters."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def write_ini(path, catalog_url, template, secret=CLI_SECRET, extra=""):
    def escape(value):
        return value.replace("%", "%%")  # PasteDeploy interpolates %(name)s

    path.write_text(
        "[app:main]\n"
        "use = egg:tenantapp\n"
        f"tenantapp.catalog_url = {escape(catalog_url)}\n"
        f"tenantapp.tenant_url_template = {escape(template)}\n"
        f"tenantapp.secret = {escape(secret)}\n"
        "tenantapp.connect_timeout = 2\n"
        "tenantapp.pool_timeout = 3\n"
        # Cheap password hashing, as in conftest's settings.
        "tenantapp.argon2_time_cost = 1\n"
        "tenantapp.argon2_memory_kib = 1024\n"
        "tenantapp.argon2_parallelism = 1\n" + extra
    )
    return path


@pytest.fixture
def ini_file(tmp_path, db_urls):
    assert len(CLI_SECRET) == 40
    return write_ini(tmp_path / "admin.ini", db_urls["catalog"], db_urls["template"])


@dataclass
class Result:
    code: int
    out: str
    err: str

    def one_error_line(self):
        """stderr is exactly one line, without a traceback; returns it."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


_cli_admins = []


class _CurrentStreamsAdmin(cli_module.Admin):
    # Admin's defaults (out=sys.stdout, err=sys.stderr) are bound when the module
    # is imported; in this process the streams of the moment are pytest's.
    def __init__(self, registry, out=None, err=None):
        super().__init__(registry, out=out or sys.stdout, err=err or sys.stderr)
        _cli_admins.append(self)  # its pools are emptied after the command


@pytest.fixture
def admin_cli(ini_file, capsys, monkeypatch):
    """``admin_cli("tenant", "list", stdin="...")`` -> Result, run in this process."""
    monkeypatch.setattr(cli_module, "Admin", _CurrentStreamsAdmin)
    real_run = cli_module.run
    # run()'s stdin default is bound at import time too: pass the current one.
    monkeypatch.setattr(
        cli_module, "run", lambda admin, args, stdin=None: real_run(admin, args, sys.stdin)
    )

    def run(*argv, stdin="", config=None):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        # main() quiets this logger for the command line; not for the other tests.
        db_logger = logging.getLogger("tenantapp.db")
        level = db_logger.level
        try:
            code = cli_module.main([str(config or ini_file), *argv])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        finally:
            db_logger.setLevel(level)
            while _cli_admins:  # as the end of the process would: close its connections
                done = _cli_admins.pop()
                done.directory.dispose_all()
                done.catalog.dispose()
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_script(*argv, stdin=""):
    """The console script in a process of its own."""
    process = subprocess.run(
        [SCRIPT, *argv], input=stdin, capture_output=True, text=True, timeout=120
    )
    return Result(process.returncode, process.stdout, process.stderr)


def tenant_list(admin_cli):
    result = admin_cli("tenant", "list", "--json")
    assert result.code == 0, result.err
    return {row["name"]: row for row in json.loads(result.out)}


def catalog_tenant_names(admin):
    with admin.catalog.transaction(write=False) as db:
        return set(db.execute(select(Tenant.name)).scalars())


def tenant_database_exists(backend, db_urls, name, url=None):
    url = url or db_urls["template"].format(name=name)
    if backend == "sqlite":
        return os.path.exists(url.removeprefix("sqlite:///"))
    database = url.rsplit("/", 1)[1]
    return database in pg_databases(db_urls)


def pg_databases(db_urls):
    engine = create_engine(normalize_url(db_urls["catalog"]), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(connection.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def sqlite_files(db_urls):
    folder = os.path.dirname(db_urls["catalog"].removeprefix("sqlite:///"))
    return {os.path.join(root, f) for root, _, files in os.walk(folder) for f in files}


def database_snapshot(backend, db_urls):
    return sqlite_files(db_urls) if backend == "sqlite" else pg_databases(db_urls)


def downgrade_to_base(admin, name):
    """Take tenant ``name``'s schema back to nothing (an out-of-date tenant)."""
    factory = admin.directory.factory(name)
    with factory.write_engine.begin() as connection:
        command.downgrade(migrations.alembic_config("tenant", connection), "base")
    factory.dispose()


def break_tenant_database(backend, admin, db_urls, name):
    """Make tenant ``name``'s database unusable (the catalog still lists it)."""
    if backend == "sqlite":
        admin.directory.factory(name).dispose()
        path = db_urls["template"].removeprefix("sqlite:///").format(name=name)
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        with open(path, "wb") as f:
            f.write(b"this is not an SQLite database\n" * 200)
    else:
        with admin.catalog.transaction() as db:
            db.add(Tenant(name=name, display_name=name, status="active", db_url=DEAD_PG_URL))


HEAD = migrations.head_revision("tenant")


# --- success ----------------------------------------------------------------------


def test_init_is_idempotent(admin_cli):
    for _ in range(2):
        result = admin_cli("init")
        assert result.code == 0, result.err
        assert result.err == ""


def test_tenant_create_then_list_json(admin_cli, admin, backend, db_urls):
    name = unique("beta")
    result = admin_cli("tenant", "create", name, "--display-name", "Beta Corp")
    assert result.code == 0, result.err
    assert tenant_database_exists(backend, db_urls, name)

    rows = tenant_list(admin_cli)
    assert rows[name] == {
        "name": name,
        "display_name": "Beta Corp",
        "status": "active",
        "schema_version": HEAD,
    }
    assert isinstance(rows[name]["schema_version"], str) and rows[name]["schema_version"]
    assert {"acme", "globex"} <= set(rows)
    for row in rows.values():
        assert set(row) == {"name", "display_name", "status", "schema_version"}

    plain = admin_cli("tenant", "list")
    assert plain.code == 0 and name in plain.out and "Beta Corp" in plain.out


def test_tenant_create_display_name_defaults_to_something(admin_cli):
    name = unique("gamma")
    assert admin_cli("tenant", "create", name).code == 0
    row = tenant_list(admin_cli)[name]
    assert isinstance(row["display_name"], str) and row["display_name"]
    assert row["status"] == "active" and row["schema_version"] == HEAD


def test_suspend_and_resume(admin_cli, client, make_user):
    name = unique("delta")
    assert admin_cli("tenant", "create", name).code == 0
    make_user("sue", **{name: "editor"})
    client.login("sue", tenant=name)
    client.get("/api/projects")

    assert admin_cli("tenant", "suspend", name).code == 0
    assert tenant_list(admin_cli)[name]["status"] == "suspended"
    response = client.get("/api/projects", status=403)
    assert response.json["error"]["code"] == "tenant_suspended"

    assert admin_cli("tenant", "resume", name).code == 0
    assert tenant_list(admin_cli)[name]["status"] == "active"
    assert client.get("/api/projects").json == {"items": [], "next": None}


def test_user_create_reads_password_from_stdin(admin_cli, new_client, admin):
    name = unique("pat")
    result = admin_cli(
        "user",
        "create",
        name,
        "--display-name",
        "Pat Q",
        "--password-stdin",
        stdin="s3cret words\n",
    )
    assert result.code == 0, result.err
    assert admin_cli("user", "grant", name, "acme", "--role", "editor").code == 0

    me = new_client().login(name, "s3cret words").json
    assert me["user"]["display_name"] == "Pat Q"
    assert me["tenant"] == {"name": "acme", "display_name": "Acme Inc", "role": "editor"}
    # The trailing newline was dropped, not kept as part of the password.
    new_client().login(name, "s3cret words\n", status=401)


def test_user_create_drops_exactly_one_trailing_newline(admin_cli, new_client):
    two, none = unique("two"), unique("none")
    assert admin_cli("user", "create", two, "--password-stdin", stdin="pw-two\n\n").code == 0
    assert admin_cli("user", "create", none, "--password-stdin", stdin="pw-none").code == 0
    new_client().login(two, "pw-two\n")
    new_client().login(two, "pw-two", status=401)
    new_client().login(none, "pw-none")


def test_grant_and_revoke_take_effect_at_the_next_request(admin_cli, client, make_user):
    make_user("gina")
    assert client.login("gina").json["tenants"] == []

    assert admin_cli("user", "grant", "gina", "acme", "--role", "viewer").code == 0
    assert client.get("/api/me").json["tenants"] == [
        {"name": "acme", "display_name": "Acme Inc", "role": "viewer"}
    ]
    client.put("/api/session/tenant", {"tenant": "acme"})
    client.get("/api/projects")
    forbidden = client.post("/api/projects", {"name": "p"}, status=403)
    assert forbidden.json["error"]["code"] == "forbidden"

    assert admin_cli("user", "grant", "gina", "acme", "--role", "editor").code == 0
    assert client.get("/api/me").json["tenant"]["role"] == "editor"
    client.post("/api/projects", {"name": "p"}, status=201)

    assert admin_cli("user", "revoke", "gina", "acme").code == 0
    me = client.get("/api/me").json
    assert me["tenants"] == [] and me["tenant"] is None
    assert client.get("/api/projects", status=403).json["error"]["code"] == "forbidden"


def test_disable_ends_existing_sessions_and_enable_allows_login(
    admin_cli, client, new_client, make_user
):
    make_user("dave", acme="editor")
    client.login("dave")
    client.get("/api/me")

    assert admin_cli("user", "disable", "dave").code == 0
    assert client.get("/api/me", status=401).json["error"]["code"] == "unauthenticated"
    new_client().login("dave", status=401)

    assert admin_cli("user", "enable", "dave").code == 0
    new_client().login("dave")


def test_migrate_all_with_jobs(admin_cli, admin):
    names = [unique("mig") for _ in range(3)]
    for name in names:
        assert admin_cli("tenant", "create", name).code == 0
    downgrade_to_base(admin, names[0])
    downgrade_to_base(admin, names[2])
    assert tenant_list(admin_cli)[names[0]]["schema_version"] is None

    result = admin_cli("tenant", "migrate", "--all", "--jobs", "2")
    assert result.code == 0, result.err
    rows = tenant_list(admin_cli)
    assert {row["schema_version"] for row in rows.values()} == {HEAD}
    assert set(names) | {"acme", "globex"} <= set(rows)

    # Again (nothing to do, several tenants at once), and by name: still fine.
    for _ in range(3):
        result = admin_cli("tenant", "migrate", "--all", "--jobs", "3")
        assert result.code == 0, result.err
    assert admin_cli("tenant", "migrate", names[0], names[1]).code == 0


def test_migrate_unknown_tenant_is_an_error(admin_cli):
    result = admin_cli("tenant", "migrate", unique("ghost"))
    assert result.code == 1
    assert "ghost" in result.one_error_line()


def test_migrate_reports_a_broken_tenant_and_migrates_the_others(
    admin_cli, admin, backend, db_urls
):
    good, broken, other = unique("good"), unique("broken"), unique("other")
    for name in (good, other):
        assert admin_cli("tenant", "create", name).code == 0
        downgrade_to_base(admin, name)
    if backend == "sqlite":
        assert admin_cli("tenant", "create", broken).code == 0
    break_tenant_database(backend, admin, db_urls, broken)

    started = time.monotonic()
    # One at a time: test_migrate_all_with_jobs covers --jobs N on its own.
    result = admin_cli("tenant", "migrate", "--all")
    assert time.monotonic() - started < 60
    assert result.code == 1
    assert broken in result.err
    assert "Traceback" not in result.err
    for name in (good, other, "acme", "globex"):
        assert name not in result.err

    # tenant list still works and shows who is where.
    rows = tenant_list(admin_cli)
    assert rows[good]["schema_version"] == rows[other]["schema_version"] == HEAD
    assert rows["acme"]["schema_version"] == rows["globex"]["schema_version"] == HEAD
    assert rows[broken]["schema_version"] is None


def test_tenant_create_with_its_own_url(admin_cli, backend, db_urls, client, make_user, admin):
    name = unique("own")
    if backend == "sqlite":
        folder = os.path.dirname(db_urls["catalog"].removeprefix("sqlite:///"))
        own_url = f"sqlite:///{folder}/elsewhere/{name}.sqlite"
    else:
        own_url = db_urls["template"].format(name=f"{name}_own")
    result = admin_cli("tenant", "create", name, "--url", own_url)
    assert result.code == 0, result.err
    assert tenant_database_exists(backend, db_urls, name, url=own_url)
    assert not tenant_database_exists(backend, db_urls, name)
    assert tenant_list(admin_cli)[name]["schema_version"] == HEAD

    make_user("olga", **{name: "editor"})
    client.login("olga")
    client.post("/api/projects", {"name": "in its own database"}, status=201)
    assert [p["name"] for p in client.get("/api/projects").json["items"]] == ["in its own database"]


def test_tenant_created_in_process_is_usable_by_the_running_app(
    admin_cli, editor, new_client, make_user
):
    client = new_client()  # ``editor`` is the ``client`` fixture
    editor.get("/api/projects")  # the test app is up before the tenant exists
    name = unique("fresh")
    assert admin_cli("tenant", "create", name).code == 0
    make_user("fred", **{name: "editor"})
    assert client.login("fred").json["tenant"]["name"] == name
    assert client.get("/api/projects").json == {"items": [], "next": None}
    client.post("/api/projects", {"name": "first"}, status=201)
    assert editor.get("/api/projects").json["items"] == []


# --- usage errors: exit 2 -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["tenant"],
        ["tenant", "frobnicate"],
        ["tenant", "list", "--yaml"],
        ["init", "--force"],
        ["tenant", "create"],
        ["user", "grant", "someone", "acme", "--role", "owner"],
        ["user", "grant", "someone", "acme", "--role", "Admin"],
        ["user", "grant", "someone", "acme"],
        ["user", "create", "someone"],
        ["tenant", "migrate"],
        ["tenant", "migrate", "--jobs", "2"],
        ["tenant", "migrate", "--all", "acme"],
        ["tenant", "migrate", "--all", "--jobs", "two"],
    ],
    ids=lambda argv: " ".join(argv) or "nothing",
)
def test_usage_errors_exit_2(admin_cli, admin, argv):
    before = catalog_tenant_names(admin)
    result = admin_cli(*argv)
    assert result.code == 2, (result.out, result.err)
    assert "usage" in result.err.lower()
    assert "Traceback" not in result.err
    assert catalog_tenant_names(admin) == before


# --- other errors: exit 1, one line -------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../x", "a;drop", "UPPER", "a", "x" * 41, "1abc", "has-dash", "with space", ""]
)
def test_invalid_tenant_name_creates_nothing(admin_cli, admin, backend, db_urls, name):
    before_rows = catalog_tenant_names(admin)
    before_databases = database_snapshot(backend, db_urls)
    result = admin_cli("tenant", "create", name)
    assert result.code == 1
    assert "invalid tenant name" in result.one_error_line()
    assert result.one_error_line().startswith("tenantapp-admin:")
    assert catalog_tenant_names(admin) == before_rows
    assert database_snapshot(backend, db_urls) == before_databases


def test_invalid_tenant_name_with_own_url_creates_nothing(
    admin_cli, admin, backend, db_urls, tmp_path
):
    url = f"sqlite:///{tmp_path}/evil.sqlite" if backend == "sqlite" else DEAD_PG_URL
    before = database_snapshot(backend, db_urls)
    result = admin_cli("tenant", "create", "../evil", "--url", url)
    assert result.code == 1
    result.one_error_line()
    assert not os.path.exists(tmp_path / "evil.sqlite")
    assert database_snapshot(backend, db_urls) == before
    assert "../evil" not in catalog_tenant_names(admin)


def test_missing_ini_file(admin_cli, tmp_path):
    result = admin_cli("tenant", "list", config=tmp_path / "nowhere.ini")
    assert result.code == 1
    assert "nowhere.ini" in result.one_error_line()


def test_missing_environment_variable(admin_cli, tmp_path, db_urls, monkeypatch):
    monkeypatch.delenv("TENANTAPP_TEST_UNSET_SECRET", raising=False)
    config = write_ini(
        tmp_path / "env.ini",
        db_urls["catalog"],
        db_urls["template"],
        secret="env:TENANTAPP_TEST_UNSET_SECRET",
    )
    result = admin_cli("tenant", "list", config=config)
    assert result.code == 1
    assert "TENANTAPP_TEST_UNSET_SECRET" in result.one_error_line()


def test_unreachable_catalog(admin_cli, tmp_path, db_urls):
    config = write_ini(
        tmp_path / "dead.ini", "postgresql://postgres@127.0.0.1:1/catalog", db_urls["template"]
    )
    started = time.monotonic()
    result = admin_cli("tenant", "list", config=config)
    assert time.monotonic() - started < 30
    assert result.code == 1
    result.one_error_line()


def test_duplicate_tenant(admin_cli, admin):
    name = unique("dup")
    assert admin_cli("tenant", "create", name).code == 0
    result = admin_cli("tenant", "create", name, "--display-name", "Other")
    assert result.code == 1
    assert name in result.one_error_line()
    assert tenant_list(admin_cli)[name]["display_name"] != "Other"
    result = admin_cli("tenant", "create", "acme")
    assert result.code == 1
    result.one_error_line()


def test_duplicate_user(admin_cli, admin, new_client):
    assert admin_cli("user", "create", "ulla", "--password-stdin", stdin="first\n").code == 0
    result = admin_cli("user", "create", "ulla", "--password-stdin", stdin="second\n")
    assert result.code == 1
    assert "ulla" in result.one_error_line()
    with admin.catalog.transaction(write=False) as db:
        assert db.execute(select(User.username).where(User.username == "ulla")).all() == [("ulla",)]
    new_client().login("ulla", "first")


def test_empty_password_is_refused(admin_cli, admin):
    result = admin_cli("user", "create", "nopass", "--password-stdin", stdin="\n")
    assert result.code == 1
    result.one_error_line()
    with admin.catalog.transaction(write=False) as db:
        assert db.execute(select(User).where(User.username == "nopass")).first() is None


@pytest.mark.parametrize(
    "argv",
    [
        ["user", "grant", "nobody", "acme", "--role", "viewer"],
        ["user", "grant", "gina", "nosuchtenant", "--role", "viewer"],
        ["user", "revoke", "nobody", "acme"],
        ["user", "revoke", "gina", "nosuchtenant"],
        ["user", "disable", "nobody"],
        ["user", "enable", "nobody"],
        ["tenant", "suspend", "nosuchtenant"],
        ["tenant", "resume", "nosuchtenant"],
    ],
    ids=" ".join,
)
def test_unknown_user_or_tenant(admin_cli, admin, make_user, argv):
    make_user("gina")
    result = admin_cli(*argv)
    assert result.code == 1
    line = result.one_error_line()
    assert "nobody" in line or "nosuchtenant" in line
    with admin.catalog.transaction(write=False) as db:
        assert db.execute(select(Membership)).all() == []


# --- a real process -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,code",
    [
        (["{missing}", "tenant", "list"], 1),
        (["{ini}", "tenant", "create", "../x"], 1),
        (["{ini}", "frobnicate"], 2),
    ],
    ids=["missing ini", "invalid tenant name", "unknown command"],
)
def test_console_script_exit_codes(ini_file, tmp_path, argv, code):
    argv = [a.format(ini=ini_file, missing=tmp_path / "missing.ini") for a in argv]
    result = run_script(*argv)
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    if code == 1:
        result.one_error_line()


def test_console_script_reads_password_from_stdin(ini_file, new_client, make_user, admin):
    name = unique("stdin")
    result = run_script(
        str(ini_file), "user", "create", name, "--password-stdin", stdin="from a pipe\n"
    )
    assert result.code == 0, result.err
    assert result.err == ""
    new_client().login(name, "from a pipe")
    new_client().login(name, "from a pipe\n", status=401)


def test_tenant_created_by_another_process_is_usable_at_once(
    ini_file, editor, new_client, make_user, admin
):
    editor.get("/api/projects")  # the test app is up and serving already
    client = new_client()
    name = unique("proc")
    result = run_script(str(ini_file), "tenant", "create", name, "--display-name", "Proc Ltd")
    assert result.code == 0, result.err
    make_user("pia", **{name: "admin"})
    me = client.login("pia").json
    assert me["tenant"] == {"name": name, "display_name": "Proc Ltd", "role": "admin"}
    assert client.get("/api/projects").json == {"items": [], "next": None}
    created = client.post("/api/projects", {"name": "from the new tenant"}, status=201).json
    assert client.get(f"/api/projects/{created['id']}").json == created
    assert client.get("/api/members").json == [
        {"username": "pia", "display_name": "Pia", "role": "admin"}
    ]
    assert editor.get("/api/projects").json["items"] == []  # acme is not touched


def test_a_command_loads_no_web_application(ini_file):
    # `tenant create` should take well under a second with the process start:
    # the commands build the app's databases, not its views, templates and routes.
    probe = (
        "import sys\n"
        "from tenantapp.cli import main\n"
        f"code = main([{str(ini_file)!r}, 'tenant', 'list'])\n"
        "loaded = [m for m in ('pyramid.config', 'tenantapp.views', 'jinja2', 'tenantapp.request')"
        " if m in sys.modules]\n"
        "print(code, loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr
