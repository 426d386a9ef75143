"""Every Linux meter, for real, on bpftrace: workloads in a test cgroup, the
shipped scripts, the catalogue and the reduction to samples.

Root, real kernel, real bpftrace (runs in CI, never skipped).  Zone A runs
CPU hogs, direct-I/O writes, TCP connects (successful, refused and timed
out after a SYN retransmit); neighbour zone B runs a little of the same.
The samples for A must cover every Linux meter with values that match what
the test did, and asking for A alone must give nothing of B.
"""

import pytest
from zone_workloads import DISTRIBUTIONS, by_name, check_zone_a_samples, run_per_script_engines

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import HOST
from smartos_telemetry.scripts import script_path

pytestmark = pytest.mark.root

def engines():
    out = {}
    for rel in catalogue.scripts_for("linux", "bpftrace"):
        with open(script_path(rel), encoding="utf-8") as f:
            out[rel] = BpftraceEngine(f.read(), rel)
    return out


def test_every_linux_meter_from_bpftrace():
    a, samples, before, durations = run_per_script_engines(engines(), "linux", "bpftrace")
    mine = check_zone_a_samples(samples, a, before, durations, "linux", "bpftrace", 1.07)
    assert all(mine[f"{meter}.sum"] > 0 for meter in DISTRIBUTIONS)
    health = by_name(samples, HOST)
    assert set(health) == {"telemetry.engine.drops", "telemetry.engine.errors",
                           "telemetry.engine.restarts"}
