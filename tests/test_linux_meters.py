"""Every Linux meter, for real, on bpftrace: workloads in a test cgroup, the
shipped scripts, the catalogue and the reduction to samples.

Root, real kernel, real bpftrace (runs in CI, never skipped).  Zone A runs
CPU hogs, direct-I/O writes, TCP connects (successful, refused and timed
out after a SYN retransmit); neighbour zone B runs a little of the same.
The samples for A must cover every Linux meter with values that match what
the test did, and asking for A alone must give nothing of B.
"""

import time

import pytest
from linux_workloads import cgroup_id, scratch_cgroups, stop
from zone_workloads import (
    CONNECTS,
    REFUSED,
    TIMED_OUT,
    WRITES,
    by_name,
    scratch_file,
    start_zone_workloads,
    tcp_endpoints,
)

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import HOST, SnapshotReducer
from smartos_telemetry.scripts import contract, script_path

pytestmark = pytest.mark.root

def engines():
    out = {}
    for rel in catalogue.scripts_for("linux", "bpftrace"):
        with open(script_path(rel), encoding="utf-8") as f:
            out[rel] = BpftraceEngine(f.read(), rel)
    return out


def test_every_linux_meter_from_bpftrace():
    running = engines()
    procs = []
    try:
        for engine in running.values():
            engine.start()
        with tcp_endpoints() as ports, scratch_cgroups("a", "b") as cg:
            a = cgroup_id(cg["a"])
            reducer = SnapshotReducer("linux", "bpftrace")

            before = {}

            def baseline():
                before.update(by_name(reducer.reduce(
                    {rel: e.snapshot() for rel, e in running.items()}, zones={a}), a))

            procs, durations = start_zone_workloads(cg, ports, scratch_file(),
                                                    baseline)
            time.sleep(0.5)
            snapshots = {rel: e.snapshot() for rel, e in running.items()}
            samples = reducer.reduce(snapshots, zones={a})
            stop(*procs)
    finally:
        stop(*procs)
        for engine in running.values():
            engine.stop()

    # every script's output keeps the contract its header declares
    for rel, snap in snapshots.items():
        declared = contract(open(script_path(rel)).read())
        for name, c in declared.items():
            agg = snap.get(name)
            assert agg is not None, (rel, name)
            assert agg.action == c.action, (rel, name, agg.action)
            assert all(len(key) == len(c.keys) for key in agg.rows), (rel, name)
    assert {s.zone for s in samples} == {a, HOST}  # nothing of zone B
    mine = by_name(samples, a)
    expected = {name for m in catalogue.meters_for("linux", "bpftrace")
                for name, _, _ in m.samples()}
    assert expected <= set(mine), sorted(expected - set(mine))
    for meter in ("cpu.runqueue.latency", "disk.io.latency", "network.tcp.connect.latency",
                  "network.tcp.rtt"):
        p50, p95, p99, top = (mine[f"{meter}.{s}"] for s in ("p50", "p95", "p99", "max"))
        assert 0 < p50 <= p95 <= p99 <= top, meter
        assert mine[f"{meter}.sum"] > 0
    # counts match the workload
    # counts over the workload alone: cumulative now, less cumulative at the baseline
    def added(name):
        return mine[name] - before.get(name, 0)

    assert abs(added("network.tcp.connect.latency.count") - CONNECTS) <= 0.02 * CONNECTS
    assert added("network.tcp.connect.failures") >= REFUSED + TIMED_OUT
    assert added("network.tcp.retransmits") >= TIMED_OUT  # the dropped SYNs were resent
    assert abs(added("disk.io.latency.count") - WRITES) <= 0.05 * WRITES
    # SYN_SENT -> ESTABLISHED is part of what connect() took, as the workload
    # timed it: the kernel's median is no larger, within the bucket error
    assert mine["network.tcp.connect.latency.p50"] <= durations[len(durations) // 2] * 1.07
    # 3 hogs on 2 CPUs wait for time slices: milliseconds in the tail
    assert mine["cpu.runqueue.latency.p99"] >= 1_000_000
    health = by_name(samples, HOST)
    assert set(health) == {"telemetry.engine.drops", "telemetry.engine.errors",
                           "telemetry.engine.restarts"}
