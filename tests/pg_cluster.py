"""A throwaway PostgreSQL cluster in a temporary folder, for tests and benchmarks.

initdb refuses to run as root, so as root the server runs as the ``postgres``
OS user (created by Debian's postgresql package). It listens on 127.0.0.1
only, on a free port, trusts local connections, and is removed on stop.

    python tests/pg_cluster.py start DIR   # prints the port; stop with: stop DIR
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time


class ClusterError(RuntimeError):
    """The cluster could not be created or started; the message says why."""


def find_bindir():
    """The folder of PostgreSQL's server binaries (newest version)."""
    explicit = os.environ.get("TENANTAPP_PG_BINDIR")
    if explicit:
        return explicit
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise ClusterError(
        "PostgreSQL server binaries not found (initdb); install Debian's "
        "postgresql package (make test does: apt-get install -y postgresql)"
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One PostgreSQL server: ``start()``, ``url(dbname)``, ``stop()``."""

    def __init__(self, datadir=None, port=None, settings=None):
        self.bindir = find_bindir()
        self.base = datadir or tempfile.mkdtemp(prefix="tenantapp-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.port = port or free_port()
        self.settings = settings or {}
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterError(
                    "running as root and there is no 'postgres' OS user to run "
                    "PostgreSQL as (install Debian's postgresql package)"
                ) from None

    def _run(self, *args, check=True, timeout=60):
        command = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(
                f"{args[0]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        if not os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            self._run(
                "initdb",
                "-D",
                self.datadir,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                timeout=120,
            )
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.base,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            # Moves between tenants are two-phase commits (PREPARE TRANSACTION).
            "max_prepared_transactions": "20",
            "timezone": "UTC",
            **{k: str(v) for k, v in self.settings.items()},
        }
        option_string = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(
            "pg_ctl",
            "-D",
            self.datadir,
            "-l",
            os.path.join(self.base, "server.log"),
            "-o",
            option_string,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )
        return self

    def is_running(self):
        return self._run("pg_ctl", "-D", self.datadir, "status", check=False).returncode == 0

    def stop(self, mode="fast"):
        if os.path.exists(self.datadir):
            self._run("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop", check=False)

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname="postgres", user="postgres"):
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.base, "server.log")) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def main(argv):
    if len(argv) < 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    base = os.path.abspath(argv[2])
    port_file = os.path.join(base, "port")
    if argv[1] == "start":
        port = int(argv[3]) if len(argv) > 3 else None
        cluster = PostgresCluster(base, port=port)
        cluster.start()
        with open(port_file, "w") as f:
            f.write(str(cluster.port))
        print(cluster.port)
    else:
        with open(port_file) as f:
            PostgresCluster(base, port=int(f.read())).destroy()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except ClusterError as exc:
        print(f"pg_cluster: {exc}", file=sys.stderr)
        sys.exit(1)


def find_pgbouncer():
    path = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(path):
        raise ClusterError(
            "pgbouncer not found; install Debian's pgbouncer package "
            "(make test does: apt-get install -y pgbouncer)"
        )
    return path


class PgBouncer:
    """PgBouncer in transaction pooling in front of one cluster, on loopback.

    Trust authentication for the cluster's ``postgres`` role, every database
    of the cluster behind it (``* = ...``). Runs as the ``postgres`` OS user
    when started by root (PgBouncer refuses to run as root).
    """

    def __init__(self, cluster, pool_size=5):
        self.binary = find_pgbouncer()
        self.cluster = cluster
        self.base = tempfile.mkdtemp(prefix="tenantapp-pgbouncer-")
        self.port = free_port()
        self.pool_size = pool_size
        self.process = None

    def start(self):
        ini = os.path.join(self.base, "pgbouncer.ini")
        users = os.path.join(self.base, "users.txt")
        with open(users, "w") as f:
            f.write('"postgres" ""\n')
        with open(ini, "w") as f:
            f.write(
                "[databases]\n"
                f"* = host=127.0.0.1 port={self.cluster.port}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                "unix_socket_dir =\n"
                "auth_type = trust\n"
                f"auth_file = {users}\n"
                "pool_mode = transaction\n"
                f"default_pool_size = {self.pool_size}\n"
                "max_client_conn = 500\n"
                f"logfile = {os.path.join(self.base, 'pgbouncer.log')}\n"
            )
        command = [self.binary, ini]
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.base, ini, users):
                os.chown(path, user.pw_uid, user.pw_gid)
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(100):
            if self.process.poll() is not None:
                raise ClusterError(f"pgbouncer exited: {self.process.stderr.read()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise ClusterError("pgbouncer did not start listening")

    def url(self, dbname, user="postgres"):
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)
