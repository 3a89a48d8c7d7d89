"""``pserve`` in a process of its own, for the tests that check the app as it
is deployed (from outside, over HTTP).

On the PostgreSQL run it serves production.ini with its settings from the
environment; on the SQLite run, a copy of development.ini pointed at the test
databases. The server's log goes to a file: a pipe nobody reads would stall a
server that logs a lot.
"""

import contextlib
import os
import subprocess
import sys
import time
import urllib.request

from conftest import SECRET
from pg_cluster import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PSERVE = os.path.join(os.path.dirname(sys.executable), "pserve")


def server_config(backend, db_urls, folder):
    """(ini file, environment) to serve the test databases of ``backend``."""
    env = dict(os.environ)
    if backend == "postgresql":
        env.update(
            TENANTAPP_CATALOG_URL=db_urls["catalog"],
            TENANTAPP_TENANT_URL_TEMPLATE=db_urls["template"],
            TENANTAPP_SECRET=SECRET,
        )
        return os.path.join(ROOT, "production.ini"), env
    with open(os.path.join(ROOT, "development.ini")) as f:
        text = f.read()
    text = (
        text.replace("sqlite:///%(here)s/var/catalog.sqlite", db_urls["catalog"])
        .replace("sqlite:///%(here)s/var/tenants/{name}.sqlite", db_urls["template"])
        .replace("host = localhost", "host = 127.0.0.1")
    )
    ini = os.path.join(folder, "server.ini")
    with open(ini, "w") as f:
        f.write(text)
    return ini, env


@contextlib.contextmanager
def running_pserve(ini, env, folder, timeout=30):
    """Start ``pserve INI`` on a free 127.0.0.1 port; yield (base URL, log path).

    Stopped by its process id when the block ends.
    """
    port = free_port()
    log_path = os.path.join(folder, f"pserve-{port}.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [PSERVE, ini, f"http_port={port}"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                with open(log_path) as f:
                    raise AssertionError(f"pserve exited: {f.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{base} did not answer within {timeout} s") from None
                time.sleep(0.1)
        yield base, log_path
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
