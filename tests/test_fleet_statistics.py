"""``[smartos] distribution_statistics``: which samples a latency
distribution emits per zone (each one is a Gnocchi metric per zone).

The reduction is the real one (SnapshotReducer); the option is read and
checked as the agent reads it (opts.validate on a config file); and, as
root on the real kernel, the run-queue pollster of a real service emits
exactly the chosen statistics for a zone running CPU hogs.
"""

import os
import sys

import pytest
from linux_workloads import python_in, scratch_cgroups, stop, wait_for
from oslo_config import cfg

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.reduce import SnapshotReducer
from smartos_telemetry.polling import opts, pollsters, telemetry_service
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Histogram, Snapshot
from smartos_telemetry.zones.linux_cgroups import unified_root

RUNQ = "cpu.runqueue.latency"


def reduce_once(statistics=None):
    r = SnapshotReducer("linux", "bpftrace")
    snap = Snapshot("bpftrace", {
        "runq_ns": Aggregation("runq_ns", "llquantize", {
            (44,): Histogram.from_counts([(1000, 1099, 90), (10000, 10999, 10)])}),
        "retransmits": Aggregation("retransmits", "count", {(44,): 5}),
    }, EngineHealth())
    intervals = r.reduce({"linux/runqueue.bt": snap, "linux/tcp.bt": snap})
    if statistics is None:
        return {s[0]: s for s in intervals.samples()}
    return {s[0]: s for s in intervals.samples(statistics)}


def test_default_emits_every_statistic_and_a_subset_only_those():
    every = reduce_once()
    assert {n for n in every if n.startswith(RUNQ)} == \
        {f"{RUNQ}.{s}" for s in catalogue.DISTRIBUTION_SUFFIXES}
    cheap = reduce_once(("p99", "count", "sum"))
    assert {n for n in cheap if n.startswith(RUNQ)} == {f"{RUNQ}.p99", f"{RUNQ}.count",
                                                        f"{RUNQ}.sum"}
    # the same values as with every statistic, and counters are untouched
    for name in (f"{RUNQ}.p99", f"{RUNQ}.count", f"{RUNQ}.sum", "network.tcp.retransmits"):
        assert cheap[name] == every[name]
    assert catalogue.BY_NAME[RUNQ].samples(("p99", "count")) == [
        (f"{RUNQ}.p99", "gauge", "ns"), (f"{RUNQ}.count", "cumulative", "event")]


def validated(tmp_path, line):
    path = tmp_path / "ceilometer.conf"
    path.write_text(f"[smartos]\nstate_file =\n{line}\n")
    conf = cfg.ConfigOpts()
    conf(["--config-file", str(path)])
    return path, opts.validate(conf)


def test_the_option_is_checked_at_start_naming_the_bad_value_and_the_file(tmp_path):
    _, group = validated(tmp_path, "distribution_statistics = p50, p99,count,sum")
    assert group.distribution_statistics == ["p50", "p99", "count", "sum"]
    path, group = validated(tmp_path, "")
    # the default: what the shipped Aodh alarms (p99) and CloudKitty rates read
    assert group.distribution_statistics == ["p99", "count", "sum"]
    with pytest.raises(ConfigError) as err:
        validated(tmp_path, "distribution_statistics = p99,p999,count")
    text = str(err.value)
    assert "distribution_statistics" in text and "p999 is not a statistic" in text
    assert str(path) in text and "p50, p95, p99, max, count, sum" in text
    assert "p99," not in text.split(":", 1)[1].split("(")[0]  # names the bad value only
    with pytest.raises(ConfigError, match="empty"):
        validated(tmp_path, "distribution_statistics =")


@pytest.mark.root
def test_the_real_pollster_emits_only_the_chosen_statistics():
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    conf.register_opt(cfg.StrOpt("host", default="cn-test"))
    opts.register(conf)
    with scratch_cgroups("busy") as cg:
        parent = "/" + os.path.relpath(cg[""], unified_root())
        for name, value in {"platform": "linux", "engine": "bpftrace", "state_file": "",
                            "plain_parents": [parent],
                            "distribution_statistics": ["p99", "count"]}.items():
            conf.set_override(name, value, group="smartos")
        hogs = [python_in(cg["busy"], "while True: pass", stdout=sys.stderr)
                for _ in range(3)]
        service = telemetry_service.get_service(conf)
        try:
            service.ensure_started()
            pollster = pollsters.RunQueueLatency(conf)
            seen = {}

            def poll():
                zones = service.zones()
                samples = list(pollster.get_samples(None, {}, zones))
                seen.update({s.name: s for s in samples})
                return f"{RUNQ}.p99" in seen

            assert wait_for(poll, 30, interval=1.0), seen
            assert set(seen) == {f"{RUNQ}.p99", f"{RUNQ}.count"}
            assert seen[f"{RUNQ}.count"].volume > 0 and seen[f"{RUNQ}.p99"].volume > 0
        finally:
            service.stop()
            telemetry_service._SERVICES.pop(id(conf), None)
            stop(*hogs)
