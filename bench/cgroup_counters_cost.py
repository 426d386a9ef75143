"""Benchmark: what one poll of the Linux cgroup counters costs for 1,000
zones (smartos_telemetry/meters/cgroup_counters.py).

Two trees of 1,000 zones, each polled ROUNDS times after one warm-up poll
(steady state: every zone known, every counter folded):

* ``real``: 1,000 scratch cgroups under this host's unified hierarchy (root
  needed), read through cgroupfs as the agent reads them.  On a host whose
  controllers are bound to v1 only the core files exist (``cpu.stat`` and
  the pressure files); the others are one failed ``open`` each.
* ``full``: 1,000 zone directories on tmpfs (/dev/shm) holding every file
  the counters read, with the kernel's formats (tests/fixtures/cgroup/):
  the cost of a host with every controller enabled, without the kernel's
  own work of producing the files.

Reported per poll: wall and CPU time (median and max), opens per zone, and
the samples made; and what the cgroup totals add to each save of the state
file (the agent saves after every poll; a temporary file on /var/tmp's
disk, as state_file_cost.py does).  Every cgroup and directory made is removed.  Writes
bench/results/cgroup_counters_cost.txt.

Run (as root):  $(tools/bootstrap --venv)/bin/python bench/cgroup_counters_cost.py
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smartos_telemetry.meters import cgroup_counters
from smartos_telemetry.meters.cgroup_counters import FILES, CgroupCounters
from smartos_telemetry.meters.saved_totals import SavedTotals, StateFile
from smartos_telemetry.zones import Zone
from smartos_telemetry.zones.linux_cgroups import unified_root

ZONES = 1000
ROUNDS = 15
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = [os.path.join(REPO, "tests", "fixtures", "cgroup", d)
            for d in ("real-6.18", "kernel-doc")]
OUT = os.path.join(REPO, "bench", "results", "cgroup_counters_cost.txt")


def counting_reader():
    """read_file, counting the opens it makes."""
    calls = [0]

    def reader(path):
        calls[0] += 1
        return cgroup_counters.read_file(path)

    return reader, calls


def measure(root, zones):
    reader, calls = counting_reader()
    counters = CgroupCounters(root, reader=reader)
    counters.poll(zones)  # warm-up: every zone first seen
    walls, cpus = [], []
    calls[0] = 0
    for _ in range(ROUNDS):
        w0, c0 = time.perf_counter(), time.process_time()
        reading = counters.poll(zones)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return counters, (walls, cpus, calls[0] / ROUNDS / len(zones), len(reading.samples))


def save_cost(counters):
    """A save of the state file holding only ``counters``' totals."""
    directory = tempfile.mkdtemp(prefix="st-bench-state-", dir="/var/tmp")
    path = os.path.join(directory, "state.json")
    state = StateFile(path)
    walls, cpus = [], []
    try:
        for _ in range(ROUNDS):
            w0, c0 = time.perf_counter(), time.process_time()
            assert state.save(SavedTotals(cgroup=counters.export()))
            cpus.append(time.process_time() - c0)
            walls.append(time.perf_counter() - w0)
        size = os.path.getsize(path)
    finally:
        state.close()
        shutil.rmtree(directory)
    return (f"save   {ZONES} zones' cgroup totals: cpu median "
            f"{statistics.median(cpus) * 1000:5.1f} ms, wall median "
            f"{statistics.median(walls) * 1000:5.1f} ms, {size / 1024:.0f} KiB")


def real_tree():
    top = os.path.join(unified_root(), f"st-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(top)
    zones = []
    for i in range(ZONES):
        path = os.path.join(top, f"zone-{i:04d}")
        os.mkdir(path)
        zones.append(Zone(os.stat(path).st_ino, f"zone-{i:04d}", "cgroup",
                          path=path[len(unified_root()):]))
    return top, unified_root(), zones


def full_tree():
    top = tempfile.mkdtemp(prefix="st-bench-cgroup-", dir="/dev/shm")
    zones = []
    for i in range(ZONES):
        path = os.path.join(top, f"zone-{i:04d}")
        os.mkdir(path)
        for directory in FIXTURES:
            for name in os.listdir(directory):
                if name in FILES:
                    shutil.copy(os.path.join(directory, name), path)
        zones.append(Zone(os.stat(path).st_ino, f"zone-{i:04d}", "cgroup",
                          path=f"/zone-{i:04d}"))
    return top, top, zones


def line(label, walls, cpus, opens, samples):
    ms = [w * 1000 for w in walls]
    cs = [c * 1000 for c in cpus]
    return (f"{label:5s}  {ZONES} zones  wall median {statistics.median(ms):7.1f} ms "
            f"max {max(ms):7.1f} ms  cpu median {statistics.median(cs):7.1f} ms "
            f"max {max(cs):7.1f} ms  {opens:4.1f} opens/zone  {samples} samples")


def main():
    out = []
    top, root, zones = real_tree()
    try:
        out.append(line("real", *measure(root, zones)[1]))
    finally:
        for zone in zones:
            os.rmdir(root + zone.path)
        os.rmdir(top)
    top, root, zones = full_tree()
    try:
        counters, figures = measure(root, zones)
        out.append(line("full", *figures))
        out.append(save_cost(counters))
    finally:
        shutil.rmtree(top)
    here = " ".join(cgroup_counters.controllers(unified_root())) or "-"
    header = [f"cgroup counter poll cost, {time.strftime('%Y-%m-%d')}, Linux "
              f"{os.uname().release}, {os.cpu_count()} CPUs, Python "
              f"{sys.version.split()[0]}; median/max of {ROUNDS} polls after a warm-up",
              f"files per zone: {len(FILES)} ({', '.join(FILES)})",
              f"v2 controllers here: {here}"]
    text = "\n".join(header + out) + "\n"
    sys.stdout.write(text)
    with open(OUT, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
