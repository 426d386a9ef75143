"""Benchmark: CPU time of one poll (snapshots -> meter samples) for 1, 100
and 1,000 zones.

Synthetic but realistic snapshots: per zone, the Linux bpftrace meters --
four latency histograms of 40 non-empty log-linear buckets each and two
counters -- cumulative, every zone changing every poll.  Measures the
reduction only (accumulators, percentiles, samples), the engine-neutral part
of a poll; the engines' own read cost is in the engine benchmarks.  Target:
linear growth, under 50 ms for 1,000 zones.  Writes bench/results/poll_cost.txt.

The interpreter matters as much as the code: the same code runs about 1.3-1.6x
faster on Debian's packaged python3 (a static interpreter; what
python3-ceilometer runs on) than on this sandbox's default python3, a pyenv
build with a shared libpython configured without --enable-optimizations.
So every interpreter given with ``--python`` (default: this one and
/usr/bin/python3, when that is the same Python version) is measured, in
alternating rounds of one run, using this interpreter's installed packages.

Run:  $(tools/bootstrap --venv)/bin/python bench/poll_cost.py
"""

import argparse
import json
import os
import site
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.meters.reduce import SnapshotReducer
from smartos_telemetry.snapshot import Aggregation, Histogram, Snapshot

POLLS = 20
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "poll_cost.txt")
BASE = loglinear.bucket_index(2000)


def histogram(zone, poll):
    return Histogram.from_counts(
        (*loglinear.bucket_bounds(BASE + i * 3), 1 + (zone + i) % 7 + poll * (i % 3))
        for i in range(40))


def snapshots(zones, poll):
    def agg(name, action, make):
        return Aggregation(name, action, {(z,): make(z) for z in range(1, zones + 1)})

    runq = Snapshot("bpftrace", {"runq_ns": agg("runq_ns", "llquantize",
                                                lambda z: histogram(z, poll))})
    disk = Snapshot("bpftrace", {"io_ns": agg("io_ns", "llquantize",
                                              lambda z: histogram(z + 1, poll))})
    tcp = Snapshot("bpftrace", {
        "connect_ns": agg("connect_ns", "llquantize", lambda z: histogram(z + 2, poll)),
        "srtt_ns": agg("srtt_ns", "llquantize", lambda z: histogram(z + 3, poll)),
        "retransmits": agg("retransmits", "count", lambda z: z * poll),
        "connect_failed": agg("connect_failed", "count", lambda z: poll),
    })
    return {"linux/runqueue.bt": runq, "linux/diskio.bt": disk, "linux/tcp.bt": tcp}


def measure(zones):
    """CPU seconds of each of POLLS polls, and the samples a poll makes.

    Each poll's snapshots are made just before the timed reduction, as an
    engine's decoder would have just made them."""
    reducer = SnapshotReducer("linux", "bpftrace")
    reducer.reduce(snapshots(zones, 0))  # first sight of every zone
    times, samples = [], 0
    for poll in range(1, POLLS + 1):
        current = snapshots(zones, poll)
        t0 = time.process_time()
        out = reducer.reduce(current)
        times.append(time.process_time() - t0)
        samples = len(out)
        del current, out
    return times, samples


ZONES = (1, 100, 1000)


def child():
    """One round on this interpreter: JSON ``{zones: [times, samples]}``."""
    json.dump({zones: measure(zones) for zones in ZONES}, sys.stdout)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", default=[],
                        help="an interpreter to measure (repeatable; default: this one and "
                             "/usr/bin/python3 when it is another build of this version)")
    parser.add_argument("--rounds", type=int, default=3,
                        help=f"alternating rounds of {POLLS} polls per interpreter")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child()
    pythons = interpreters(args.python)
    # the other interpreters use this one's packages (oslo.log) and this checkout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    times = {py: {zones: [] for zones in ZONES} for py in pythons}
    samples = {}
    for _ in range(args.rounds):
        for py in pythons:
            out = subprocess.run([py, os.path.abspath(__file__), "--child"], env=env,
                                 capture_output=True, text=True, check=True).stdout
            for zones, (polls, count) in json.loads(out).items():
                times[py][int(zones)] += polls
                samples[int(zones)] = count
    lines = [f"poll cost (snapshots -> samples), {time.strftime('%Y-%m-%d %H:%M')}, "
             f"CPU time per poll over {args.rounds} alternating rounds of {POLLS} polls per "
             "interpreter: median (fastest); the machine is shared, so the fastest is the "
             "least disturbed"]
    for py in pythons:
        lines.append(f"{py}: Python {describe(py)}")
        medians = {}
        for zones in ZONES:
            cost = medians[zones] = statistics.median(times[py][zones])
            lines.append(f"  {zones:5d} zones: {cost * 1000:8.2f} ms per poll "
                         f"({min(times[py][zones]) * 1000:.2f}), {samples[zones]} samples, "
                         f"{cost / zones * 1e6:7.1f} us per zone")
        lines.append(f"  growth 100 -> 1000 zones: x{medians[1000] / medians[100]:.1f} "
                     "(linear would be x10.0)")
        lines.append(f"  target < 50 ms for 1000 zones (median): "
                     f"{'met' if medians[1000] < 0.05 else 'NOT met'}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
