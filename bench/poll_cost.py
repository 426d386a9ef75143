"""Benchmark: CPU time of one poll (snapshots -> meter samples) for 1, 100
and 1,000 zones, this checkout's reducer beside an older one, in one run.

Synthetic but realistic snapshots: per zone, the Linux bpftrace meters --
four latency histograms of 40 non-empty log-linear buckets each and two
counters -- cumulative, every zone changing every poll; in two scenarios,
every zone's buckets the same ones, and spread over a wider layout
(``SCENARIOS``).  Measures the
engine-neutral part of a poll only (accumulators, percentiles, samples); the
engines' own read cost is in the engine benchmarks.  Target: linear growth,
at most 20 ms for 1,000 zones.  Writes bench/results/poll_cost.txt.

``--old COMMIT`` (default: the last commit before the reducer returned
columns) is checked out in a temporary ``git worktree`` and imported by path
in its own process, so both reducers see the same snapshots on the same
machine in alternating rounds; the worktree is removed afterwards.  Both
reducers' samples of the same polls are compared (a digest of every sample,
volumes and their types included).

Timed, per poll: the old reducer's ``reduce`` (it returns the list of
samples); the new one's ``reduce`` (the columns) and, as "snapshots ->
samples", ``reduce`` plus every sample made (``list(intervals.samples())``),
which is what the Ceilometer output iterates.

The interpreter matters as much as the code: every interpreter given with
``--python`` (default: this one and /usr/bin/python3, when that is the same
Python version -- what python3-ceilometer runs on) is measured, using this
interpreter's installed packages.

Run:  $(tools/bootstrap --venv)/bin/python bench/poll_cost.py
"""

import argparse
import hashlib
import json
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "bench", "results", "poll_cost.txt")
#: the last commit whose reducer returned a list of MeterSample
OLD = "6ee2a30"
POLLS = 20
ZONES = (1, 100, 1000)


#: scenarios: how far apart (in log-linear buckets) the zones' histograms
#: start.  "same": every zone's 40 buckets are the same ones; "spread": each
#: zone's start somewhere in 200 buckets, so that a meter's zones use some
#: 320 buckets between them (the shared layout the new reducer works on)
SCENARIOS = {"same": 1, "spread": 200}


def snapshots(zones, poll, spread=1):
    from smartos_telemetry.engines.bpftrace import loglinear
    from smartos_telemetry.snapshot import Aggregation, Histogram, Snapshot

    base = loglinear.bucket_index(2000)

    def histogram(zone):
        start = base + (zone * 7) % spread
        return Histogram.from_counts(
            (*loglinear.bucket_bounds(start + i * 3), 1 + (zone + i) % 7 + poll * (i % 3))
            for i in range(40))

    def agg(name, action, make):
        return Aggregation(name, action, {(z,): make(z) for z in range(1, zones + 1)})

    runq = Snapshot("bpftrace", {"runq_ns": agg("runq_ns", "llquantize", histogram)})
    disk = Snapshot("bpftrace", {"io_ns": agg("io_ns", "llquantize",
                                              lambda z: histogram(z + 1))})
    tcp = Snapshot("bpftrace", {
        "connect_ns": agg("connect_ns", "llquantize", lambda z: histogram(z + 2)),
        "srtt_ns": agg("srtt_ns", "llquantize", lambda z: histogram(z + 3)),
        "retransmits": agg("retransmits", "count", lambda z: z * poll),
        "connect_failed": agg("connect_failed", "count", lambda z: poll),
    })
    return {"linux/runqueue.bt": runq, "linux/diskio.bt": disk, "linux/tcp.bt": tcp}


def digest(samples):
    """Every sample, volumes and their types, in one order, hashed."""
    rows = sorted(repr((*s, type(s[3]).__name__)) for s in samples)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def measure(zones, new, spread):
    """``{"reduce": [s], "samples": [s], "count": n, "digest": ...}`` over POLLS polls.

    Each poll's snapshots are made just before the timed part, as an
    engine's decoder would have just made them."""
    from smartos_telemetry.meters.reduce import SnapshotReducer

    reducer = SnapshotReducer("linux", "bpftrace")
    reducer.reduce(snapshots(zones, 0, spread))  # first sight of every zone
    reduce_times, sample_times, digests = [], [], []
    for poll in range(1, POLLS + 1):
        current = snapshots(zones, poll, spread)
        t0 = time.process_time()
        out = reducer.reduce(current)
        t1 = time.process_time()
        made = list(out.samples()) if new else out
        t2 = time.process_time()
        reduce_times.append(t1 - t0)
        sample_times.append(t2 - t0)
        if poll in (1, POLLS):
            digests.append(digest(made))
        count = len(made)
        del current, out, made
    return {"reduce": reduce_times, "samples": sample_times, "count": count,
            "digest": "/".join(digests)}


def child(code):
    """One round of one reducer on this interpreter: JSON ``{zones: measure}``."""
    sys.path.insert(0, code)
    import smartos_telemetry.meters.reduce as reduce

    assert reduce.__file__.startswith(code), reduce.__file__
    new = hasattr(reduce, "Intervals")
    json.dump({f"{name} {zones}": measure(zones, new, spread)
               for name, spread in SCENARIOS.items() for zones in ZONES}, sys.stdout)
    return 0


def interpreters(given):
    if given:
        return given
    found = [sys.executable]
    system = "/usr/bin/python3"
    if os.path.exists(system) and os.path.realpath(system) != os.path.realpath(sys.executable):
        version = subprocess.run([system, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, check=False).stdout.strip()
        if version == str(tuple(sys.version_info[:2])):
            found.append(system)
    return found


def describe(python):
    """Version and build of an interpreter (which matters here as much as the code)."""
    return subprocess.run(
        [python, "-c", "import os, platform, sys; print(platform.python_version(), "
         "os.path.realpath(sys.executable), platform.python_compiler())"],
        capture_output=True, text=True, check=True).stdout.strip()


def ms(seconds):
    return f"{seconds * 1000:7.2f}"


def report(label, times, count, zones):
    median = statistics.median(times)
    return (f"    {label:26s} {zones:5d} zones: {ms(median)} ms per poll "
            f"(fastest {ms(min(times)).strip()}), {count} samples, "
            f"{median / zones * 1e6:6.1f} us per zone")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", default=[],
                        help="an interpreter to measure (repeatable; default: this one and "
                             "/usr/bin/python3 when it is another build of this version)")
    parser.add_argument("--old", default=OLD, help=f"the commit to compare with ({OLD})")
    parser.add_argument("--rounds", type=int, default=3,
                        help=f"alternating rounds of {POLLS} polls per interpreter and reducer")
    parser.add_argument("--child", metavar="CODE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    pythons = interpreters(args.python)
    old_rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", args.old],
                             capture_output=True, text=True, check=True).stdout.strip()
    new_rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
    worktree = tempfile.mkdtemp(prefix="poll-cost-old-")
    os.rmdir(worktree)
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "--quiet", worktree,
                    old_rev], check=True)
    # the other interpreters use this one's packages (oslo.log, numpy), never
    # the checkout installed in them: each child puts its code first
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    codes = {"old": worktree, "new": REPO}
    runs = {(py, which): {(name, zones): {"reduce": [], "samples": []}
                          for name in SCENARIOS for zones in ZONES}
            for py in pythons for which in codes}
    facts = {}
    loads = []
    try:
        for _ in range(args.rounds):
            for py in pythons:
                for which, code in codes.items():
                    loads.append(os.getloadavg()[0])
                    out = subprocess.run([py, os.path.abspath(__file__), "--child", code],
                                         env=env, cwd="/", capture_output=True, text=True,
                                         check=True).stdout
                    for key, got in json.loads(out).items():
                        name, zones = key.split()
                        run = runs[(py, which)][(name, int(zones))]
                        run["reduce"] += got["reduce"]
                        run["samples"] += got["samples"]
                        facts[(which, name, int(zones))] = (got["count"], got["digest"])
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", worktree],
                       check=False)
        shutil.rmtree(worktree, ignore_errors=True)
    lines = [f"poll cost (snapshots -> samples), {time.strftime('%Y-%m-%d %H:%M')}: old "
             f"reducer {old_rev} beside this checkout's ({new_rev}), CPU time per poll, "
             f"{args.rounds} alternating rounds of {POLLS} polls per interpreter and "
             "reducer: median (fastest)",
             f"machine: {os.cpu_count()} CPUs, shared; load average during the run "
             f"{min(loads):.1f}-{max(loads):.1f}"]
    same = all(facts[("old", name, z)] == facts[("new", name, z)]
               for name in SCENARIOS for z in ZONES)
    lines.append("samples of both reducers identical (every name, zone, volume and its "
                 f"type, polls 1 and {POLLS}, both scenarios): {'yes' if same else 'NO'}")
    for py in pythons:
        lines.append(f"{py}: Python {describe(py)}")
        for name, spread in SCENARIOS.items():
            lines.append(f"  scenario {name!r} (zones' histograms {spread} buckets apart at "
                         "most)")
            for label, which, key in (("old: reduce = samples", "old", "reduce"),
                                      ("new: reduce (columns)", "new", "reduce"),
                                      ("new: snapshots -> samples", "new", "samples")):
                for zones in ZONES:
                    lines.append(report(label, runs[(py, which)][(name, zones)][key],
                                        facts[(which, name, zones)][0], zones))
            old = statistics.median(runs[(py, "old")][(name, 1000)]["reduce"])
            new = {z: statistics.median(runs[(py, "new")][(name, z)]["samples"])
                   for z in ZONES}
            lines.append(f"    growth 100 -> 1000 zones (new, snapshots -> samples): "
                         f"x{new[1000] / new[100]:.1f}, no worse than linear: each zone "
                         f"beyond 100 adds {(new[1000] - new[100]) / 900 * 1e6:.1f} us (from "
                         f"1 to 100 zones {(new[100] - new[1]) / 99 * 1e6:.1f} us each, over "
                         f"a one-zone poll's {new[1] * 1000:.2f} ms)")
            lines.append(f"    1000 zones: old {old * 1000:.1f} ms, new {new[1000] * 1000:.1f} "
                         f"ms (x{old / new[1000]:.1f}); target <= 20 ms: "
                         f"{'met' if new[1000] <= 0.020 else 'NOT met'}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
