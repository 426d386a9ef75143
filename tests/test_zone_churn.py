"""Zone churn for real (root, real bpftrace; runs in CI, never skipped).

1,200 zone cgroups are created, run a little, and are deleted, 100 at a
time, while the agent's service polls (each batch lives through one cycle
and departs in the next).  With maps sized for a few hundred zones, the
maps, the reducer and the poll must follow the live zones: every new zone
is still measured after 1,000 have come and gone, nothing is dropped, and a
departed zone's last counts are delivered once, then never again.
"""

import os
import time

import pytest
from linux_workloads import cgroup_id, scratch_cgroups, start_in
from real_service import cycle, engine_of, real_service

from smartos_telemetry.engines.bpftrace import maps
from smartos_telemetry.meters.reduce import HOST
from smartos_telemetry.zones.linux_cgroups import unified_root

pytestmark = pytest.mark.root

BATCHES, PER_BATCH = 12, 100
#: a few hundred zones' worth of run-queue buckets: 1,200 zones would need
#: several times as many
MAP_KEYS = 3000
COUNT = "cpu.runqueue.latency.count"


def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def runq_keys(service):
    """(keys, distinct cgroup ids) in the run-queue engine's @runq_ns."""
    pid = engine_of(service, "linux/runqueue.bt").pid
    for map_id in maps.map_ids(pid):
        with maps.Map(map_id) as m:
            if m.name == maps.bpftrace_map_name("runq_ns"):
                keys = m.keys()
                return len(keys), len({k[:8] for k in keys})
    raise AssertionError("no @runq_ns map")


def run_batch(paths):
    """One short sleeper per cgroup: it sleeps, is woken and runs (a
    run-queue wait in its zone), then exits."""
    procs = [start_in(p, ["/bin/sleep", "0.05"]) for p in paths]
    for proc in procs:
        assert proc.wait(timeout=30) == 0


def remove(paths):
    for path in paths:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.02)


def test_a_thousand_zones_come_and_go_and_everything_follows_the_live_ones():
    with scratch_cgroups() as cg:
        parent_path = cg[""]
        parent = "/" + os.path.relpath(parent_path, unified_root())
        with real_service(parent, engine_options={"map_keys_max": str(MAP_KEYS)}) as service:
            cycle(service)
            departing, history = {}, []
            for batch in range(BATCHES):
                paths = [os.path.join(parent_path, f"z{batch}-{i}") for i in range(PER_BATCH)]
                for path in paths:
                    os.mkdir(path)
                ids = {cgroup_id(p) for p in paths}
                run_batch(paths)
                t0 = time.monotonic()
                zones, samples = cycle(service)
                took = time.monotonic() - t0
                counts = {s.zone: s.volume for s in samples if s.name == COUNT}
                # the new zones are measured, however many came before
                measured = sum(1 for i in ids if counts.get(i, 0) > 0)
                assert measured >= 0.95 * PER_BATCH, (batch, measured)
                # the previous batch, deleted since: delivered once more, its
                # counts never lower; the one before it: gone for good
                for zone, last in departing.items():
                    assert counts.get(zone, 0) >= last, zone
                assert not set(counts) & {z for h in history[:-1] for z in h["ids"]}
                assert {z.id for z in zones} >= ids
                departing = {i: counts[i] for i in ids if i in counts}
                remove(paths)
                keys, cgroups = runq_keys(service)
                history.append({"ids": ids, "keys": keys, "cgroups": cgroups, "took": took,
                                "rss": rss_kb()})
            for _ in range(2):  # the last batch departs, then is forgotten
                _, samples = cycle(service)
            keys, cgroups = runq_keys(service)
            drops = next(s.volume for s in samples
                         if s.zone is HOST and s.name == "telemetry.engine.drops")
            reducer = service._reducer
            remembered = max(len(acc) for acc in reducer._accumulators.values())
            owners = len(service.attribution().owners)
            live = sum(len(dirs) for _, dirs, _ in os.walk(unified_root())) + 1
    assert drops == 0
    # map rows: the live cgroups' (host services) and, at most, one batch's
    assert cgroups <= live + PER_BATCH, (cgroups, live)
    assert keys < MAP_KEYS / 2, history
    assert max(h["keys"] for h in history[6:]) < 2 * max(h["keys"] for h in history[:3]) + 500
    # the reducer and the roll-up remember live zones only
    assert remembered <= PER_BATCH + 10 and owners <= PER_BATCH + 10
    # poll time and memory do not grow with the zones seen
    early = sorted(h["took"] for h in history[1:4])[1]
    late = sorted(h["took"] for h in history[-3:])[1]
    assert late < 2 * early + 0.5, history
    assert history[-1]["rss"] - history[2]["rss"] < 20_000, history
