"""Test helpers (root, real kernel): cgroups under the unified root, workloads in them.

Every cgroup is made under one directory with a unique prefix and removed
afterwards; every process is started by the test and stopped by its PID.
"""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

from smartos_telemetry.zones.linux_cgroups import unified_root


@contextlib.contextmanager
def scratch_cgroups(*names):
    """``{name: path}`` of fresh cgroups ``<unified>/st-test-XXXX/<name>`` (may nest)."""
    top = os.path.join(unified_root(), f"st-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(top)
    paths = {}
    try:
        for name in names:
            paths[name] = os.path.join(top, name)
            os.makedirs(paths[name])
        paths[""] = top
        yield paths
    finally:
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            for _ in range(50):  # processes just killed leave a moment later
                try:
                    os.rmdir(dirpath)
                    break
                except OSError:
                    time.sleep(0.1)


@contextlib.contextmanager
def loopback_acceptor(backlog=512):
    """A listener on 127.0.0.1 that accepts and closes every connection; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(backlog)
    server.settimeout(0.2)
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        acceptor.join()
        server.close()


def cgroup_id(path):
    return os.stat(path).st_ino


def start_in(path, argv, **kwargs):
    """Start ``argv`` inside cgroup ``path`` (it joins before it execs)."""
    return subprocess.Popen(
        ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', path, *argv], **kwargs)


def python_in(path, code, **kwargs):
    return start_in(path, [sys.executable, "-c", code], **kwargs)


def stop(*procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def percentile(histogram, q):
    """Upper bound of the bucket holding quantile ``q`` of a Histogram."""
    target = q * histogram.count
    seen = 0
    for b in histogram.buckets:
        seen += b.count
        if seen >= target:
            return b.high
    return histogram.buckets[-1].high


def bpftrace_pids():
    out = subprocess.run(["pgrep", "-x", "bpftrace"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def counts(hist_agg, zone_id):
    """How many values a per-zone histogram aggregation holds for ``zone_id``."""
    row = hist_agg.rows.get((zone_id,))
    return row.count if row else 0


#: connects to 127.0.0.1:argv[2] argv[1] times, one byte each
TCP_CLIENT = ("import socket, sys\n"
              "for _ in range(int(sys.argv[1])):\n"
              "    s = socket.create_connection(('127.0.0.1', int(sys.argv[2])))\n"
              "    s.send(b'x'); s.close()\n")


def check_tcp_connects_per_zone(engine_for, script):
    """Connects from zones A and B at once under the tcp script ``script``
    (``engine_for(script)`` a context manager giving the running engine):
    each zone's connect latencies count its own connects and both have srtt
    samples.  Returns the snapshot and the two zones' cgroup ids."""
    m_a, m_b = 600, 300
    with loopback_acceptor() as port, scratch_cgroups("a", "b") as cg, \
            engine_for(script) as engine:
        a, b = cgroup_id(cg["a"]), cgroup_id(cg["b"])
        # both at once, so softirqs often run in the other zone's task
        clients = [start_in(cg[z], ["python3", "-c", TCP_CLIENT, str(m), str(port)])
                   for z, m in (("a", m_a), ("b", m_b))]
        try:
            assert [c.wait(timeout=120) for c in clients] == [0, 0]
            time.sleep(0.2)
            snap = engine.snapshot()
        finally:
            stop(*clients)
    connect = snap["connect_ns"]
    assert abs(counts(connect, a) - m_a) <= 0.02 * m_a, connect.rows.get((a,))
    assert abs(counts(connect, b) - m_b) <= 0.02 * m_b, connect.rows.get((b,))
    assert counts(snap["srtt_ns"], a) > 0 and counts(snap["srtt_ns"], b) > 0
    return snap, a, b


def check_direct_io_writes_per_zone(engine_for, script, tmp_path):
    """400 direct 64 KiB writes from zone A and 150 from zone B at once
    under the disk script ``script``: each zone's I/O latencies and bytes are
    its own writes.  Returns the snapshot and the two zones' cgroup ids."""
    n_a, n_b = 400, 150
    files = {z: tmp_path / f"{z}.img" for z in "ab"}
    for f in files.values():
        with open(f, "wb") as out:  # preallocated: the writes need no block allocation
            os.posix_fallocate(out.fileno(), 0, 64 * 1024 * 400)
    with scratch_cgroups("a", "b") as cg, engine_for(script) as engine:
        a, b = cgroup_id(cg["a"]), cgroup_id(cg["b"])
        writers = [start_in(cg[z], ["dd", "if=/dev/zero", f"of={files[z]}", "bs=64k",
                                    f"count={n}", "oflag=direct", "conv=notrunc", "status=none"])
                   for z, n in (("a", n_a), ("b", n_b))]
        try:
            assert [w.wait(timeout=60) for w in writers] == [0, 0]
            snap = engine.snapshot()
        finally:
            stop(*writers)
    io = snap["io_ns"]
    assert abs(counts(io, a) - n_a) <= 0.05 * n_a, io.rows.get((a,))
    assert abs(counts(io, b) - n_b) <= 0.05 * n_b, io.rows.get((b,))
    assert abs(snap["io_bytes"].rows[(a,)] - n_a * 65536) <= 0.05 * n_a * 65536
    assert abs(snap["io_bytes"].rows[(b,)] - n_b * 65536) <= 0.05 * n_b * 65536
    return snap, a, b


def total_ns(histogram):
    """A histogram's sum, each value taken at its bucket's middle."""
    return sum((b.low + b.high) / 2 * b.count for b in histogram.buckets)


def check_hogs_wait_longer_than_sleeper(snap, hog_id, sleeper_id):
    """``snap`` (a delta over seconds of 3 CPU hogs in ``hog_id`` and a
    1 ms sleeper in ``sleeper_id``) shows the hogs' run-queue waits far longer."""
    runq = snap["runq_ns"]
    assert runq.action == "llquantize"
    hog, slp = runq.rows[(hog_id,)], runq.rows[(sleeper_id,)]
    # 3 hogs on 2 CPUs: preempted hogs queue for a time slice (ms); the sleeper
    # is woken ~1000 times a second and runs almost at once (us)
    assert hog.count >= 100 and slp.count >= 500
    # A hog's wait is short when the sleeper preempts it briefly (about half
    # of its events) and a time slice otherwise: compare the tail and the total
    assert percentile(hog, 0.9) > 50 * percentile(slp, 0.9), (hog, slp)
    assert percentile(hog, 0.9) >= 1_000_000
    assert total_ns(hog) > 10 * total_ns(slp)
