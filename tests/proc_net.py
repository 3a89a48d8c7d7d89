"""TCP sockets as the kernel sees them (Linux's /proc), for tests that look
at connections from outside the app: who listens on a port, how many
connections a process holds to a server."""

import os

ESTABLISHED = "01"
LISTEN = "0A"


def tcp_inodes(port, *, end, state):
    """Inodes of the IPv4 TCP sockets in ``state`` whose ``end`` ("local" or
    "remote") is on ``port``."""
    column = {"local": 1, "remote": 2}[end]
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == state and int(fields[column].split(":")[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid="self"):
    """Inodes of the sockets process ``pid`` has open (an fd closed meanwhile is skipped)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.append(target[8:-1])
    return found


def connections_to(port):
    """How many established connections this process holds to ``port``."""
    inodes = tcp_inodes(port, end="remote", state=ESTABLISHED)
    return sum(inode in inodes for inode in socket_inodes())


def listening_pid(port):
    """The pid of the process listening on ``port``, or None."""
    inodes = tcp_inodes(port, end="local", state=LISTEN)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if inodes.intersection(socket_inodes(pid)):
                return int(pid)
        except OSError:
            continue  # the process ended meanwhile
    return None
