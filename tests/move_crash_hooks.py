"""Loaded into a ``pserve`` process by the move crash test (``pyramid.includes``).

Every move stops for good at a step of its commit and says so in the file
``TENANTAPP_MOVE_CRASH_LOG``: the odd moves right after both PREPAREs (no
decision yet), the even ones right after the decision committed (before any
COMMIT PREPARED). The test then kills the process with SIGKILL: it leaves
both kinds of transactions prepared, deterministically.
"""

import os
import threading

_lock = threading.Lock()
_count = [0]


def includeme(config):
    log_path = os.environ["TENANTAPP_MOVE_CRASH_LOG"]

    def stop_here(step):
        with open(log_path, "a") as log:
            log.write(step + "\n")
        threading.Event().wait()  # until the process is killed

    def hook(step):
        if step == "prepared":
            with _lock:
                _count[0] += 1
                odd = _count[0] % 2 == 1
            if odd:
                stop_here("undecided")
        elif step == "decided":
            stop_here("decided")

    config.registry.move_fault_hook = hook
