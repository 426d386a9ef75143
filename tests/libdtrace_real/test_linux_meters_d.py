"""Every Linux meter, for real, on Oracle DTrace: the platform's D scripts
combined into one program (one consumer per process), workloads in a test
cgroup, the catalogue and the reduction to samples."""

import time

from linux_workloads import cgroup_id, scratch_cgroups, stop
from own_process import in_own_process
from zone_workloads import (
    by_name,
    check_zone_a_samples,
    scratch_file,
    start_zone_workloads,
    tcp_endpoints,
)

from smartos_telemetry.engines.dtrace.combine import combine
from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import SnapshotReducer


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
    check_zone_a_samples(samples, a, before, durations, "linux", "dtrace", 1.1)
