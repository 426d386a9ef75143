"""Workloads that drive the shipped Linux scripts' probes, for the probe-cost
benchmarks (stdlib only: runs on the host and inside tools/dtrace-sandbox).

Each runs for ``seconds``, starts its processes itself, stops them by PID and
removes what it made.  Servers listen on 127.0.0.1 only.
"""

import os
import socket
import subprocess
import sys
import threading
import time


def cpu_load(seconds):
    """3 CPU hogs and a 1 ms sleeper: context switches, wakeups, preemptions."""
    procs = []
    try:
        procs += [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                  for _ in range(3)]
        procs.append(subprocess.Popen([sys.executable, "-c",
                                       "import time\nwhile True: time.sleep(0.001)"]))
        time.sleep(seconds)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def disk_load(seconds):
    """64 KiB O_DIRECT writes (dd) to a scratch file under /var/tmp."""
    path = os.path.join("/var/tmp", f"probe-cost-{os.getpid()}.img")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k", "count=200",
                            "oflag=direct", "conv=notrunc", "status=none"], check=True)
    finally:
        os.unlink(path)


def tcp_load(seconds):
    """Loopback connects, one byte sent on each, against a local acceptor."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    server.settimeout(0.2)
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            s = socket.create_connection(server.getsockname())
            s.send(b"x")
            s.close()
    finally:
        done.set()
        t.join()
        server.close()


# by the script's stem: runqueue.bt and runqueue.d share a workload
WORKLOADS = {"runqueue": cpu_load, "diskio": disk_load, "tcp": tcp_load}
