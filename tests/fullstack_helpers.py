"""Test helper (root): driving the local stack (``tools/fullstack``, and
``tools/consumers`` on top of it) from a test.

The stack's services listen on the loopback ports a test hands it, and
``up`` records the PID of each service's process group in ``pids.json``;
a test must stop all of them (``down``, then SIGKILL for anything ``down``
missed) and check that nothing it started still runs or listens.
"""

import json
import os
import signal
import socket
import subprocess

from gnocchiclient import auth as gnocchi_auth
from gnocchiclient import client as gnocchi_client
from keystoneauth1 import session as ks_session
from linux_workloads import pid_alive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULLSTACK = os.path.join(REPO, "tools", "fullstack")


def free_ports(n):
    """``n`` distinct loopback ports free now: all bound at once, so that the
    kernel cannot hand out one port twice, then released for the stack."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def read_pids(directory):
    """``{service: pid}`` that ``up`` recorded in ``directory``/pids.json;
    ``{}`` where ``up`` failed before writing it (or mid-write), so that the
    test goes on to report ``up``'s own error and to clean up."""
    try:
        with open(os.path.join(directory, "pids.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def kill_left(pids):
    """SIGKILL the process group of every recorded service still alive (never
    leave anything running, even when ``down`` failed); ``[(service, pid)]``
    of those, for the test to fail on."""
    left = [(name, pid) for name, pid in pids.items() if pid_alive(pid)]
    for _, pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def listeners(ports):
    """The ``ss`` lines (with their process) of TCP listeners on any of ``ports``."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if int(line.split()[3].rsplit(":", 1)[1]) in ports]


def listening(port):
    """Whether something accepts connections on loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def gnocchi(endpoint):
    """A gnocchiclient for the stack's Gnocchi (basic auth, as the stack runs it)."""
    plugin = gnocchi_auth.GnocchiBasicPlugin(user="admin", endpoint=endpoint)
    return gnocchi_client.Client("1", session=ks_session.Session(auth=plugin))


def stack_up(env):
    """``tools/fullstack up`` with ``env`` (its STACK_DIR, ports and options):
    ``(the finished process, {service: pid} it recorded)``.  The PIDs come
    back even when ``up`` failed, so that the caller can stop whatever did
    start before it asserts on the process."""
    up = subprocess.run([FULLSTACK, "up"], env=env, capture_output=True, text=True,
                        timeout=240)
    return up, read_pids(env["STACK_DIR"])


def stack_down(env, tool=FULLSTACK):
    """``down`` of ``tool`` (``tools/fullstack``, or ``tools/consumers`` on top
    of it) with the ``env`` it was started with: the finished process."""
    return subprocess.run([tool, "down"], env=env, capture_output=True, text=True,
                          timeout=180)
