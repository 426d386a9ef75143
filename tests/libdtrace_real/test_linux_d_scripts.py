"""Each shipped Linux D script, for real: known work in two test cgroups, per-zone truth.

Oracle DTrace 2.0.7 in tools/dtrace-sandbox, this host's kernel.  Each test
puts known work in zone A and different work in neighbour zone B, asserts
that each zone's numbers are its own, and that every aggregation keeps the
contract the script's header declares.  Where the work can be timed from
user space (a connect(), an O_DIRECT pwrite()), the kernel's interval lies
inside the timed call, so each recorded percentile is at most the timed one
plus the bucket error (10% for llquantize(ns, 10, 3, 9, 100)).

The D twins of tests/test_linux_attribution.py (bpftrace).
"""

import json
import os
import subprocess
import sys
import time

from linux_workloads import (
    cgroup_id,
    counts,
    loopback_acceptor,
    percentile,
    python_in,
    scratch_cgroups,
    start_in,
    stop,
)
from own_process import in_own_process

from smartos_telemetry import scripts
from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.meters import percentiles

BUCKET_ERROR = 1.10  # llquantize(ns, 10, 3, 9, 100): buckets at most 10% wide
SETTLE = 1.2  # seconds for the last events to reach libdtrace's snapshot


def run(relative):
    """A consumer for shipped script ``linux/<relative>`` and its contract."""
    with open(scripts.script_path(f"linux/{relative}"), encoding="utf-8") as f:
        source = f.read()
    return DTraceConsumer(source, relative), scripts.contract(source)


def assert_keeps_contract(snap, contract):
    assert snap.aggregations, "no aggregation at all"
    for name, agg in snap.aggregations.items():
        assert name in contract, f"@{name} is not in the script's contract"
        assert agg.action == contract[name].action, (name, agg.action)
        for key in agg.rows:
            assert len(key) == len(contract[name].keys), (name, key)
            assert all(isinstance(k, int) for k in key), (name, key)


def total_ns(histogram):
    return sum((b.low + b.high) / 2 * b.count for b in histogram.buckets)


def meters_percentile(histogram, pct):
    """The meters' own percentile ``pct`` (1..100) of one histogram."""
    stats = percentiles.interval_stats(histogram.lows, histogram.highs, [histogram.counts],
                                       (pct,))
    return stats.percentiles[0][0]


def exact(durations, q):
    """Nearest-rank percentile of measured durations (as percentiles.py ranks)."""
    ordered = sorted(durations)
    return ordered[max(1, -(-int(q * 1000) * len(ordered) // 1000)) - 1]


def assert_within_timed(histogram, durations, floor=None):
    """Recorded percentiles <= the timed ones + bucket error; the median >= floor x timed.

    The timed call adds the syscall and Python around the kernel's interval;
    ``floor`` bounds that where it is small beside the interval.
    """
    for pct in (50, 90, 99):
        got, timed = meters_percentile(histogram, pct), exact(durations, pct / 100)
        assert got <= timed * BUCKET_ERROR, (pct, got, timed)
    assert total_ns(histogram) <= sum(durations) * BUCKET_ERROR
    if floor is not None:
        got, timed = meters_percentile(histogram, 50), exact(durations, 0.5)
        assert got >= floor * timed, (got, timed)


# -- run queue ------------------------------------------------------------------

HOG = "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"
MEEK = "import os\nos.sched_setaffinity(0, {0})\nos.nice(19)\nwhile True: pass"
SLEEPER = "import os, time\nos.sched_setaffinity(0, {1})\nwhile True: time.sleep(0.001)"


@in_own_process
def test_runqueue_d_cpu_hogs_wait_far_longer_than_a_sleeper():
    """3 hogs and a nice-19 hog ("meek") share CPU 0; a sleeper has CPU 1.

    The meek hog runs rarely and briefly: it waits nearly all the time, and
    each of its waits is the others' long run.  Keyed by the task switched
    out instead of in (a classic mistake), the hogs' zone would get the meek
    hog's long waits and the meek zone the hogs' short ones.
    """
    consumer, contract = run("runqueue.d")
    with scratch_cgroups("hogs", "meek", "sleeper") as cg, consumer:
        hog_id, meek_id, sleeper_id = (cgroup_id(cg[z]) for z in ("hogs", "meek", "sleeper"))
        procs = []
        try:
            procs += [python_in(cg["hogs"], HOG) for _ in range(3)]
            procs.append(python_in(cg["meek"], MEEK))
            procs.append(python_in(cg["sleeper"], SLEEPER))
            time.sleep(1)  # past the workloads' start-up
            settled = consumer.snapshot()
            time.sleep(3)
            snap = consumer.snapshot()
        finally:
            stop(*procs)
    assert_keeps_contract(snap, contract)
    runq = snap.delta(settled)["runq_ns"]
    hog, meek, slp = (runq.rows[(z,)] for z in (hog_id, meek_id, sleeper_id))
    # the hogs queue for time slices (ms); the sleeper, woken about 1000 times
    # a second, runs almost at once (us)
    assert hog.count >= 100 and slp.count >= 1000, (hog.count, slp.count)
    assert percentile(hog, 0.9) > 50 * percentile(slp, 0.9), (hog, slp)
    assert percentile(hog, 0.9) >= 1_000_000
    # 3 always-runnable hogs on one CPU: 2 always wait, 6 s of waits in 3 s
    # (more when the machine has other work; some slack for the edges)
    assert total_ns(hog) >= 5.0e9, total_ns(hog)
    assert total_ns(slp) < 0.1 * total_ns(hog), (total_ns(slp), total_ns(hog))
    # the meek hog (about 0.5% of CPU 0) waits most of the time, in waits of
    # hundreds of ms; keyed by the task switched out, it gets the hogs' ms
    assert percentile(meek, 0.5) >= 100_000_000, meek
    assert total_ns(meek) >= 1.0e9, (meek.count, total_ns(meek))


# -- block I/O ------------------------------------------------------------------

WRITER = """\
import json, mmap, os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
buf = mmap.mmap(-1, 65536)  # page-aligned, as O_DIRECT needs
buf.write(b"\\x5a" * 65536)
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
print("ready", flush=True)
sys.stdin.readline()  # go: start-up I/O (imports) is over
took = []
for i in range(n):
    t0 = time.perf_counter_ns()
    assert os.pwrite(fd, buf, i * 65536) == 65536
    took.append(time.perf_counter_ns() - t0)
os.close(fd)
print(json.dumps(took))
"""


@in_own_process
def test_diskio_d_direct_writes_are_counted_and_timed_per_zone(tmp_path):
    n_a, n_b = 400, 150
    files = {z: tmp_path / f"{z}.img" for z in "ab"}
    for f in files.values():
        with open(f, "wb") as out:  # preallocated: no block allocation during the writes
            os.posix_fallocate(out.fileno(), 0, 65536 * n_a)
            os.fsync(out.fileno())
    consumer, contract = run("diskio.d")
    with scratch_cgroups("a", "b") as cg, consumer:
        a, b = cgroup_id(cg["a"]), cgroup_id(cg["b"])
        writers = []
        try:
            for z, n in (("a", n_a), ("b", n_b)):
                writers.append(start_in(cg[z], [sys.executable, "-c", WRITER, str(files[z]),
                                                str(n)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True))
            assert [w.stdout.readline() for w in writers] == ["ready\n"] * 2
            before = consumer.snapshot()
            timed = {}
            for w in writers:
                w.stdin.write("go\n")
                w.stdin.flush()
            for z, w in zip("ab", writers, strict=True):
                timed[z] = json.loads(w.stdout.readline())
                assert w.wait(timeout=60) == 0
            time.sleep(SETTLE)
            after = consumer.snapshot()
        finally:
            stop(*writers)
    assert_keeps_contract(after, contract)
    snap = after.delta(before)
    io = snap["io_ns"]
    assert abs(counts(io, a) - n_a) <= 0.05 * n_a, io.rows.get((a,))
    assert abs(counts(io, b) - n_b) <= 0.05 * n_b, io.rows.get((b,))
    assert abs(snap["io_bytes"].rows[(a,)] - n_a * 65536) <= 0.05 * n_a * 65536
    assert abs(snap["io_bytes"].rows[(b,)] - n_b * 65536) <= 0.05 * n_b * 65536
    # a 64 KiB direct write takes tens to hundreds of microseconds, nearly
    # all of it between queueing and completion
    assert_within_timed(io.rows[(a,)], timed["a"], floor=0.5)
    assert_within_timed(io.rows[(b,)], timed["b"], floor=0.5)


# -- TCP --------------------------------------------------------------------------

CLIENT = """\
import json, os, socket, sys, time
port, n, move_to = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = [socket.socket() for _ in range(n)]  # their cgroup: the one we started in
with open(os.path.join(move_to, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))  # connect from another cgroup
took = []
for s in socks:
    t0 = time.perf_counter_ns()
    s.connect(("127.0.0.1", port))
    took.append(time.perf_counter_ns() - t0)
    s.send(b"x")
    s.close()
print(json.dumps(took))
"""


@in_own_process
def test_tcp_d_connects_are_attributed_by_the_socket_cgroup():
    """Each client makes its sockets in zone A (B), then moves to A-run (B-run)
    and connects from there: every event belongs to A (B), none to the
    cgroup of the task that happens to run (the mover's, or whichever task a
    softirq interrupted)."""
    m_a, m_b = 600, 300
    consumer, contract = run("tcp.d")
    clients = []
    with loopback_acceptor() as port, \
            scratch_cgroups("a", "b", "a-run", "b-run") as cg, consumer:
        zone = {name: cgroup_id(cg[name]) for name in ("a", "b", "a-run", "b-run")}
        a, b = zone["a"], zone["b"]
        try:
            # both at once, so softirqs often run in the other zone's task
            clients = [start_in(cg[z], [sys.executable, "-c", CLIENT, str(port), str(m),
                                        cg[f"{z}-run"]],
                                stdout=subprocess.PIPE, text=True)
                       for z, m in (("a", m_a), ("b", m_b))]
            timed = {}
            for z, c in zip("ab", clients, strict=True):
                out, _ = c.communicate(timeout=120)
                assert c.returncode == 0
                timed[z] = json.loads(out)
            time.sleep(SETTLE)
            snap = consumer.snapshot()
        finally:
            stop(*clients)
    assert_keeps_contract(snap, contract)
    connect, srtt = snap["connect_ns"], snap["srtt_ns"]
    assert abs(counts(connect, a) - m_a) <= 0.02 * m_a, connect.rows.get((a,))
    assert abs(counts(connect, b) - m_b) <= 0.02 * m_b, connect.rows.get((b,))
    # a loopback connect is a few microseconds in the kernel, less than the
    # syscall and Python around it: no lower bound from the timing
    assert_within_timed(connect.rows[(a,)], timed["a"])
    assert_within_timed(connect.rows[(b,)], timed["b"])
    # srtt samples for both zones' sockets; loopback RTTs are below a millisecond
    for z in (a, b):
        assert counts(srtt, z) > 0, z
        assert meters_percentile(srtt.rows[(z,)], 50) < 1_000_000
    # nothing for the cgroups the connects ran in
    for name in ("a-run", "b-run"):
        assert counts(connect, zone[name]) == counts(srtt, zone[name]) == 0, name
    # every connect succeeded: no failure is charged to either zone
    failed = snap.get("connect_failed")
    assert failed is None or (counts(failed, a), counts(failed, b)) == (0, 0), failed
