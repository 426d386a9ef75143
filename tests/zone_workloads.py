"""What the meter tests run in their zones: zone A's CPU hogs, direct-I/O
writes and TCP connects (successful, refused, timed out), zone B's sleeper,
and the loopback endpoints they connect to.  Shared by the bpftrace, libbpf,
libdtrace and smartos-dtrace-top tests."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from linux_workloads import cgroup_id, python_in, scratch_cgroups, start_in, stop

from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import HOST, SnapshotReducer
from smartos_telemetry.scripts import contract, script_path

CONNECTS, REFUSED, TIMED_OUT, WRITES = 150, 5, 2, 200
#: the latency distributions every Linux engine reports
DISTRIBUTIONS = ("cpu.runqueue.latency", "disk.io.latency", "network.tcp.connect.latency",
                 "network.tcp.rtt")

WORKLOAD = """
import json, mmap, os, socket, sys, time
port, closed_port, full_port = (int(a) for a in sys.argv[1:4])
scratch = sys.argv[4]
# the file is written once before the count starts, so that the counted
# writes overwrite blocks in place: no allocation and no metadata to read
# (cold caches would otherwise add reads of the extent tree to the zone)
fd = os.open(scratch, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 65536)
for i in range({writes}):
    os.pwrite(fd, buf, i * 65536)
os.fsync(fd)
# warm up every code path once (name service libraries, lazily loaded
# modules): their first use reads files, which is zone A's disk I/O too
warm = socket.create_connection(("127.0.0.1", port))
warm.sendall(b"x")
warm.close()
try:
    socket.create_connection(("127.0.0.1", closed_port))
except ConnectionRefusedError:
    pass
json.dumps([1])
print("ready", flush=True)  # started -- wait for go
sys.stdin.readline()
durations = []
for _ in range({connects}):
    t0 = time.monotonic_ns()
    s = socket.create_connection(("127.0.0.1", port))
    durations.append(time.monotonic_ns() - t0)
    s.sendall(b"x" * 1000)  # the server's ACK drives tcp_probe (srtt)
    s.close()
for _ in range({refused}):
    try:
        socket.create_connection(("127.0.0.1", closed_port))
    except ConnectionRefusedError:
        pass
for _ in range({timed_out}):  # the listener's queue is full: SYN dropped, resent at 1 s
    try:
        socket.create_connection(("127.0.0.1", full_port), timeout=1.5)
    except (TimeoutError, socket.timeout):
        pass
for i in range({writes}):
    os.pwrite(fd, buf, i * 65536)
os.close(fd)
os.unlink(scratch)
print(json.dumps(durations))
"""


@contextlib.contextmanager
def tcp_endpoints():
    """Loopback ports: one accepting, one refusing, one whose queue is full.

    Yields the three port numbers; closes everything afterwards.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    fillers = []  # fill the accept queue so that further SYNs are dropped
    try:
        for _ in range(4):
            try:
                fillers.append(socket.create_connection(full.getsockname(), timeout=0.5))
            except TimeoutError:
                break
        yield tuple(s.getsockname()[1] for s in (server, closed, full))
    finally:
        for s in (server, full, closed, *fillers):
            s.close()


def scratch_file():
    """A path for the direct-I/O file on the root disk (the workload removes it)."""
    return os.path.join("/var/tmp", f"st-test-direct-io-{os.getpid()}-{time.monotonic_ns()}")


def start_zone_workloads(cg, ports, scratch, baseline):
    """CPU hogs and WORKLOAD in zone "a", a sleeper in "b".

    ``baseline()`` runs once everything has started and before WORKLOAD
    does its work, so the interval after it holds exactly that work.
    Returns ``(processes, durations)``: every process started (to stop), and
    the workload's own timings of its successful connects, sorted.
    """
    # the hogs say when they are up: their start-up reads from disk are
    # zone A's I/O too, and must happen before the baseline
    procs = [python_in(cg["a"], "print('ready', flush=True)\nwhile True: pass",
                       stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for hog in procs:
        assert hog.stdout.readline().strip() == "ready"
    procs.append(python_in(cg["b"], "import time\nwhile True: time.sleep(0.001)"))
    code = WORKLOAD.format(connects=CONNECTS, refused=REFUSED, timed_out=TIMED_OUT,
                           writes=WRITES)
    work = start_in(cg["a"], [sys.executable, "-c", code, *map(str, ports), str(scratch)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(work)
    assert work.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    baseline()
    out, _ = work.communicate("go\n", timeout=120)
    assert work.returncode == 0
    return procs, sorted(json.loads(out))


def by_name(samples, zone):
    return {s.name: s.volume for s in samples if s.zone == zone}


def check_zone_a_samples(samples, zone, before, durations, platform, engine, p50_slack):
    """The samples after start_zone_workloads, asked for ``zone`` (zone A)
    alone: nothing of zone B, every meter of ``platform``/``engine``, ordered
    percentiles, and counts over the workload (now less ``before``, the
    baseline) matching what it did.  ``p50_slack`` is how far above the
    workload's own median connect time the engine's p50 may be (its bucket).
    Returns zone A's samples by name."""
    assert {s.zone for s in samples} == {zone, HOST}  # nothing of zone B
    mine = by_name(samples, zone)
    expected = {name for m in catalogue.meters_for(platform, engine)
                for name, _, _ in m.samples()}
    assert expected <= set(mine), sorted(expected - set(mine))
    for meter in DISTRIBUTIONS:
        p50, p95, p99, top = (mine[f"{meter}.{s}"] for s in ("p50", "p95", "p99", "max"))
        assert 0 < p50 <= p95 <= p99 <= top, meter

    def added(name):
        return mine[name] - before.get(name, 0)

    assert abs(added("network.tcp.connect.latency.count") - CONNECTS) <= 0.02 * CONNECTS
    assert added("network.tcp.connect.failures") >= REFUSED + TIMED_OUT
    assert added("network.tcp.retransmits") >= TIMED_OUT  # the dropped SYNs were resent
    assert abs(added("disk.io.latency.count") - WRITES) <= 0.05 * WRITES
    # SYN_SENT -> ESTABLISHED is part of what connect() took, as the workload
    # timed it: the kernel's median is no larger, within the bucket error
    assert mine["network.tcp.connect.latency.p50"] <= \
        durations[len(durations) // 2] * p50_slack
    # 3 hogs on 2 CPUs wait for time slices: milliseconds in the tail
    assert mine["cpu.runqueue.latency.p99"] >= 1_000_000
    return mine


def run_per_script_engines(running, platform, engine):
    """Starts ``running`` (script path -> engine, one per script), runs
    start_zone_workloads and reduces for zone A alone; stops everything.
    Checks each script's snapshot keeps the contract its header declares.
    Returns ``(zone A's id, samples, baseline by name, connect durations)``."""
    procs = []
    try:
        for one in running.values():
            one.start()
        with tcp_endpoints() as ports, scratch_cgroups("a", "b") as cg:
            a = cgroup_id(cg["a"])
            reducer = SnapshotReducer(platform, engine)
            before = {}

            def baseline():
                before.update(by_name(reducer.reduce(
                    {rel: e.snapshot() for rel, e in running.items()}, zones={a}), a))

            try:
                procs, durations = start_zone_workloads(cg, ports, scratch_file(), baseline)
                time.sleep(0.5)
                snapshots = {rel: e.snapshot() for rel, e in running.items()}
                samples = reducer.reduce(snapshots, zones={a})
            finally:
                stop(*procs)  # before the zones' cgroups are removed
    finally:
        for one in running.values():
            one.stop()
    for rel, snap in snapshots.items():
        with open(script_path(rel), encoding="utf-8") as f:
            declared = contract(f.read())
        for name, c in declared.items():
            agg = snap.get(name)
            assert agg is not None, (rel, name)
            assert agg.action == c.action, (rel, name, agg.action)
            assert all(len(key) == len(c.keys) for key in agg.rows), (rel, name)
    return a, samples, before, durations
