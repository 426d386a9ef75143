"""Benchmark: CPU time of one poll (snapshots -> meter samples) for 1, 100
and 1,000 zones.

Synthetic but realistic snapshots: per zone, the Linux bpftrace meters --
three latency histograms of 40 non-empty log-linear buckets each and two
counters -- cumulative, every zone changing every poll.  Measures the
reduction only (accumulators, percentiles, samples), the engine-neutral part
of a poll; the engines' own read cost is in the engine benchmarks.  Target:
linear growth, under 50 ms for 1,000 zones.  Writes bench/results/poll_cost.txt.

Run:  $(tools/bootstrap --venv)/bin/python bench/poll_cost.py
"""

import os
import platform
import statistics
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
    """Each poll's snapshots are made just before the timed reduction, as an
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
    return statistics.median(times), min(times), samples


def main():
    lines = [f"poll cost (snapshots -> samples), {time.strftime('%Y-%m-%d %H:%M')}, "
             f"python {platform.python_version()}, CPU time of {POLLS} polls: median "
             "(fastest); the machine is shared, so the fastest is the least disturbed"]
    results = {}
    for zones in (1, 100, 1000):
        cost, fastest, samples = measure(zones)
        results[zones] = cost
        lines.append(f"{zones:5d} zones: {cost * 1000:8.2f} ms per poll ({fastest * 1000:.2f}), "
                     f"{samples} samples, {cost / zones * 1e6:7.1f} us per zone")
    lines.append(f"growth 100 -> 1000 zones: x{results[1000] / results[100]:.1f} "
                 "(linear would be x10.0)")
    lines.append(f"target < 50 ms for 1000 zones (median): "
                 f"{'met' if results[1000] < 0.05 else 'NOT met'}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
