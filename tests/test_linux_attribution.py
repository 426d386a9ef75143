"""Per-zone attribution for real: workloads in two cgroups, the shipped scripts, counts.

Root, real kernel, real bpftrace (runs in CI, never skipped).  Each test puts
known work in zone A and different work in neighbour zone B, and asserts
that each zone's numbers are its own.
"""

import os
import time

import pytest
from linux_workloads import (
    cgroup_id,
    check_direct_io_writes_per_zone,
    check_hogs_wait_longer_than_sleeper,
    check_tcp_connects_per_zone,
    python_in,
    scratch_cgroups,
    stop,
)

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine

pytestmark = pytest.mark.root

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "d_scripts", "linux")


def engine_for(script):
    with open(os.path.join(SCRIPTS, script), encoding="utf-8") as f:
        return BpftraceEngine(f.read(), script)


def test_cpu_hogs_wait_far_longer_in_the_run_queue_than_a_sleeper():
    with scratch_cgroups("hogs", "sleeper") as cg, engine_for("runqueue.bt") as engine:
        hog_id, sleeper_id = cgroup_id(cg["hogs"]), cgroup_id(cg["sleeper"])
        hogs = [python_in(cg["hogs"], "while True: pass") for _ in range(3)]
        sleeper = python_in(cg["sleeper"], "import time\nwhile True: time.sleep(0.001)")
        try:
            time.sleep(1)  # past the workloads' start-up
            settled = engine.snapshot()
            time.sleep(3)
            snap = engine.snapshot().delta(settled)
        finally:
            stop(*hogs, sleeper)
    check_hogs_wait_longer_than_sleeper(snap, hog_id, sleeper_id)


def test_direct_io_writes_are_counted_per_zone(tmp_path):
    check_direct_io_writes_per_zone(engine_for, "diskio.bt", tmp_path)


def test_tcp_connects_are_attributed_by_the_socket_cgroup():
    check_tcp_connects_per_zone(engine_for, "tcp.bt")
