"""The meter catalogue and the reduction of snapshots to samples."""

import re

from smartos_telemetry import scripts
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import HOST, SnapshotReducer
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Histogram, Snapshot


def test_every_source_names_an_aggregation_its_script_declares():
    for meter in catalogue.CATALOGUE:
        for pe, src in meter.sources.items():
            declared = scripts.contract(open(scripts.script_path(src.script)).read())
            assert src.aggregation in declared, (meter.name, pe, src)
            c = declared[src.aggregation]
            assert c.keys == (src.zone_key,), (meter.name, pe, c)
            want = "llquantize" if meter.kind == "distribution" else ("count", "sum")
            assert c.action in want, (meter.name, pe, c.action)
            if src.sum_aggregation:
                assert declared[src.sum_aggregation].action == "sum"


def test_linux_emits_the_same_meters_on_both_engines_and_says_why_not():
    dtrace = {m.name for m in catalogue.meters_for("linux", "dtrace")}
    bpftrace = {m.name for m in catalogue.meters_for("linux", "bpftrace")}
    assert dtrace == bpftrace
    for meter in catalogue.CATALOGUE:
        for pe in catalogue.PLATFORM_ENGINES:
            if meter.kind != "health" and pe not in meter.sources:
                assert meter.missing.get(pe), (meter.name, pe)


def test_readme_meter_table_matches_the_catalogue():
    readme = open("README.rst").read()
    assert catalogue.readme_table() in readme, \
        "regenerate: python -m smartos_telemetry.meters.catalogue"


def snap(rows, health=None):
    return Snapshot("bpftrace", {
        "runq_ns": Aggregation("runq_ns", "llquantize", rows.get("runq_ns", {})),
        "retransmits": Aggregation("retransmits", "count", rows.get("retransmits", {})),
    }, health or EngineHealth())


def by_name(samples, zone):
    return {s.name: s for s in samples if s.zone == zone}


def hist(*triples):
    return Histogram.from_counts(triples)


def test_distribution_samples_per_interval_and_cumulative():
    r = SnapshotReducer("linux", "bpftrace")
    first = r.reduce({"linux/runqueue.bt": snap({"runq_ns": {
        (44,): hist((1000, 1099, 90), (10000, 10999, 10))}})})
    s = by_name(first, 44)
    assert s["cpu.runqueue.latency.count"].volume == 100
    assert s["cpu.runqueue.latency.count"].type == "cumulative"
    assert 1000 <= s["cpu.runqueue.latency.p50"].volume <= 1099
    assert 10000 <= s["cpu.runqueue.latency.p99"].volume <= 10999
    assert s["cpu.runqueue.latency.max"].volume == 10999
    est = 90 * 1049.5 + 10 * 10499.5
    assert s["cpu.runqueue.latency.sum"].volume == est
    # the next interval: 50 more events, all slow
    second = by_name(r.reduce({"linux/runqueue.bt": snap({"runq_ns": {
        (44,): hist((1000, 1099, 90), (10000, 10999, 60))}})}), 44)
    assert second["cpu.runqueue.latency.count"].volume == 150
    assert 10000 <= second["cpu.runqueue.latency.p50"].volume <= 10999  # interval only
    assert second["cpu.runqueue.latency.sum"].volume == est + 50 * 10499.5
    # an idle interval: cumulative samples only, no gauges
    idle = by_name(r.reduce({"linux/runqueue.bt": snap({"runq_ns": {
        (44,): hist((1000, 1099, 90), (10000, 10999, 60))}})}), 44)
    assert "cpu.runqueue.latency.p50" not in idle
    assert idle["cpu.runqueue.latency.count"].volume == 150


def test_a_forgotten_zone_that_returns_starts_its_sum_estimate_afresh():
    # ttl=0: a zone missing from one poll is forgotten at once
    r = SnapshotReducer("linux", "bpftrace", ttl=0.0)
    h44, h45 = hist((1000, 1099, 90), (10000, 10999, 10)), hist((2000, 2199, 4))
    r.reduce({"linux/runqueue.bt": snap({"runq_ns": {(44,): h44, (45,): h45}})})
    h45 = hist((2000, 2199, 6))
    r.reduce({"linux/runqueue.bt": snap({"runq_ns": {(45,): h45}})})  # 44 gone
    back = r.reduce({"linux/runqueue.bt": snap({"runq_ns": {(44,): h44, (45,): h45}})})
    s44, s45 = by_name(back, 44), by_name(back, 45)
    # 44 is new again: its count and sum start from what the engine holds
    assert s44["cpu.runqueue.latency.count"].volume == 100
    assert s44["cpu.runqueue.latency.sum"].volume == 90 * 1049.5 + 10 * 10499.5
    # 45 never left: its estimate went on adding up
    assert s45["cpu.runqueue.latency.count"].volume == 6
    assert s45["cpu.runqueue.latency.sum"].volume == 6 * 2099.5


def test_counters_never_go_backwards_when_a_new_engine_takes_over():
    r = SnapshotReducer("linux", "bpftrace")
    r.reduce({"linux/tcp.bt": snap({"retransmits": {(44,): 5}})}, generation=1)
    s = by_name(r.reduce({"linux/tcp.bt": snap({"retransmits": {(44,): 2}})}, generation=2), 44)
    assert s["network.tcp.retransmits"].volume == 7


def test_a_zone_outside_the_known_tenants_gets_no_samples():
    r = SnapshotReducer("linux", "bpftrace")
    samples = r.reduce({"linux/tcp.bt": snap({"retransmits": {(44,): 5, (63,): 9}})},
                       zones={44})
    assert {s.zone for s in samples} == {44, HOST}


def test_engine_health_is_per_host_and_cumulative():
    r = SnapshotReducer("linux", "bpftrace")
    health = EngineHealth(drops={"lost_events": 3, "map_full": 1}, errors={"x": 2}, restarts=1)
    s = by_name(r.reduce({"linux/tcp.bt": snap({}, health)}), HOST)
    assert s["telemetry.engine.drops"].volume == 4
    assert s["telemetry.engine.errors"].volume == 2
    assert s["telemetry.engine.restarts"].volume == 1


def test_sample_names_follow_the_catalogue():
    names = {n for m in catalogue.CATALOGUE for n, _, _ in m.samples()}
    assert "cpu.runqueue.latency.p99" in names and "network.tcp.retransmits" in names
    assert all(re.fullmatch(r"[a-z][a-z0-9_.]+", n) for n in names)


def test_smartos_fixture_snapshots_shaped_by_the_contracts_give_every_smartos_meter():
    # SmartOS cannot run here: build the snapshot each script's contract
    # promises (zonename or zoneid keys) and reduce it as the agent would
    uuid = "6b8f0000-0000-4000-8000-000000000001"
    relatives = catalogue.scripts_for("smartos", "dtrace")
    snapshots = {}
    for rel in relatives:
        aggs = {}
        for name, c in scripts.contract(open(scripts.script_path(rel)).read()).items():
            key = (uuid,) if c.keys == ("zonename",) else (7,)
            value = hist((10_000, 10_999, 4), (2_000_000, 2_099_999, 1)) \
                if c.action == "llquantize" else 5
            aggs[name] = Aggregation(name, c.action, {key: value})
        snapshots[rel] = Snapshot("dtrace", aggs)
    samples = SnapshotReducer("smartos", "dtrace").reduce(snapshots)
    names = {s.name for s in samples}
    for meter in catalogue.meters_for("smartos", "dtrace"):
        for name, _, _ in meter.samples():
            assert name in names, name
    zones = {s.zone for s in samples if s.name == "cpu.runqueue.latency.count"}
    assert zones == {uuid}  # zonename-keyed
    assert {s.zone for s in samples if s.name == "disk.throttle.delay"} == {7}  # zoneid-keyed


def test_one_engine_feeding_several_scripts_counts_its_health_once():
    r = SnapshotReducer("linux", "dtrace")
    combined = snap({}, EngineHealth(drops={"principal": 3}))
    s = by_name(r.reduce({rel: combined for rel in catalogue.scripts_for("linux", "dtrace")}),
                HOST)
    assert s["telemetry.engine.drops"].volume == 3
