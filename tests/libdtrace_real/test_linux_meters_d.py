"""Every Linux meter, for real, on Oracle DTrace: the platform's D scripts
combined into one program (one consumer per process), workloads in a test
cgroup, the catalogue and the reduction to samples."""

import time

from linux_workloads import cgroup_id, scratch_cgroups, stop
from own_process import in_own_process
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

from smartos_telemetry.engines.dtrace.combine import combine
from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import HOST, SnapshotReducer


@in_own_process
def test_every_linux_meter_from_dtrace():
    relatives = catalogue.scripts_for("linux", "dtrace")
    source, merged = combine(relatives)
    procs = []
    try:
        with DTraceConsumer(source, "linux meters") as consumer, tcp_endpoints() as ports, \
                scratch_cgroups("a", "b") as cg:
            a = cgroup_id(cg["a"])
            reducer = SnapshotReducer("linux", "dtrace")

            before = {}

            def baseline():
                time.sleep(0.7)  # what happened so far reaches libdtrace first
                first = consumer.snapshot()
                before.update(by_name(reducer.reduce({rel: first for rel in relatives},
                                                     zones={a}), a))

            procs, durations = start_zone_workloads(cg, ports, scratch_file(),
                                                    baseline)
            time.sleep(1.2)
            snap = consumer.snapshot()
            stop(*procs)
            samples = reducer.reduce({rel: snap for rel in relatives}, zones={a})
    finally:
        stop(*procs)

    # every aggregation keeps the contract its script declares
    for name, agg in snap.aggregations.items():
        assert agg.action == merged[name].action, name
        assert all(len(key) == len(merged[name].keys) for key in agg.rows), name
    assert {s.zone for s in samples} == {a, HOST}
    mine = by_name(samples, a)
    expected = {name for m in catalogue.meters_for("linux", "dtrace")
                for name, _, _ in m.samples()}
    assert expected <= set(mine), sorted(expected - set(mine))
    for meter in ("cpu.runqueue.latency", "disk.io.latency", "network.tcp.connect.latency",
                  "network.tcp.rtt"):
        p50, p95, p99, top = (mine[f"{meter}.{s}"] for s in ("p50", "p95", "p99", "max"))
        assert 0 < p50 <= p95 <= p99 <= top, meter
    # counts over the workload alone: cumulative now, less cumulative at the baseline
    def added(name):
        return mine[name] - before.get(name, 0)

    assert abs(added("network.tcp.connect.latency.count") - CONNECTS) <= 0.02 * CONNECTS
    assert added("network.tcp.connect.failures") >= REFUSED + TIMED_OUT
    assert added("network.tcp.retransmits") >= TIMED_OUT
    assert abs(added("disk.io.latency.count") - WRITES) <= 0.05 * WRITES
    assert mine["network.tcp.connect.latency.p50"] <= durations[len(durations) // 2] * 1.1
    assert mine["cpu.runqueue.latency.p99"] >= 1_000_000
