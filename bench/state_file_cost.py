"""Benchmark: what saving the running totals after every poll costs (the
state file, smartos_telemetry/meters/saved_totals.py), for 1, 100 and 1,000 zones.

Linux: the agent's own save path (``TelemetryService._save_state``) after a
poll of every bpftrace meter for every zone, the engine replaced by synthetic
snapshots.  SmartOS: the same with the kstat counters of 1,000 zones (every
kstat meter, one vnic each) folded in.  Reported: wall time of one save
(export + JSON + write + fsync + rename + directory fsync) in CPU and wall
time, and the file's size; the file lives in a temporary directory on the disk
/var/lib is on.  Writes bench/results/state_file_cost.txt.

Run:  $(tools/bootstrap --venv)/bin/python bench/state_file_cost.py
"""

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oslo_config import cfg

from smartos_telemetry.meters import catalogue
from smartos_telemetry.platform.linux import Linux
from smartos_telemetry.polling import opts, telemetry_service
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Histogram, Snapshot
from smartos_telemetry.zones import Zone

ROUNDS = 15
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "state_file_cost.txt")


class Engines:
    """Synthetic snapshots: every Linux bpftrace aggregation, every zone busy."""

    rows = {}

    def __init__(self, name, scripts, options=None, **settings):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def snapshot(self):
        by_script = {}
        for meter in catalogue.meters_for("linux", "bpftrace"):
            src = meter.sources[("linux", "bpftrace")]
            aggs = by_script.setdefault(src.script, {})
            for name in filter(None, (src.aggregation, src.sum_aggregation)):
                if meter.kind == "distribution" and name == src.aggregation:
                    rows = {(z,): Histogram.from_counts([(1000 * b, 1000 * b + 999, n + b)
                                                         for b in range(1, 41)])
                            for z, n in Engines.rows.items()}
                    aggs[name] = Aggregation(name, "llquantize", rows)
                else:
                    aggs[name] = Aggregation(name, "count",
                                             {(z,): n for z, n in Engines.rows.items()})
        return {script: Snapshot("bpftrace", aggs, EngineHealth())
                for script, aggs in by_script.items()}


class BpftraceLinux(Linux):
    """Linux, where ``auto`` is bpftrace whatever this host has."""

    def choose_engine(self, requested="auto"):
        return "bpftrace", "bench"


class Layer:
    def __init__(self, zones):
        self.live = zones

    def zones(self):
        return list(self.live)

    def resolve(self, cgroup_id):
        return None


def service_for(zones, state_file, platform="linux"):
    telemetry_service.EngineSet = Engines
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    conf.register_opt(cfg.StrOpt("host", default="cn1"))
    opts.register(conf)
    conf.set_override("platform", "linux", group="smartos")
    conf.set_override("state_file", state_file, group="smartos")
    service = telemetry_service.TelemetryService(conf)
    service.platform = BpftraceLinux()
    service._zones = Layer(zones)
    return service


def kstat_text(n):
    lines = []
    for i in range(n):
        uuid = f"{i:08x}-0000-4000-8000-000000000000"
        for module, name, stats in (
                ("zones", uuid[:30], ("nsec_user", "nsec_sys", "nsec_waitrq")),
                ("zone_vfs", uuid[:30], ("reads", "writes", "nread", "nwritten", "rlentime",
                                         "wlentime", "10ms_ops", "100ms_ops", "1s_ops",
                                         "10s_ops", "delay_cnt", "delay_time")),
                ("zone_zfs", uuid[:30], ("reads", "writes", "nread", "nwritten", "rlentime",
                                         "waittime")),
                ("memory_cap", uuid[:30], ("anonpgin", "pagedout", "nover",
                                           "anon_alloc_fail", "rss", "swap", "physcap")),
                ("caps", f"cpucaps_zone_{i + 1}", ("above_sec", "below_sec", "usage",
                                                   "value", "nwait")),
                ("link", f"z{i + 1}_net0", ("rbytes64", "obytes64", "ipackets64",
                                            "opackets64", "ierrors", "oerrors", "norcvbuf",
                                            "noxmtbuf"))):
            instance = 0 if module != "zones" else i + 1
            lines.append(f"{module}:{instance}:{name}:zonename\t{uuid}")
            lines.append(f"{module}:{instance}:{name}:crtime\t{100 + i}.5")
            lines += [f"{module}:{instance}:{name}:{s}\t{1000 * (i + 1)}" for s in stats]
    return "\n".join(lines) + "\n", {f"{i:08x}-0000-4000-8000-000000000000":
                                     f"{i:08x}-0000-4000-8000-000000000000" for i in range(n)}


def measure(service, rounds=ROUNDS):
    """Median CPU and wall milliseconds of one save, and the file's size."""
    cpu, wall = [], []
    for _ in range(rounds):
        with service._lock:
            c0, w0 = time.process_time(), time.perf_counter()
            service._save_state()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    return (statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3,
            os.path.getsize(service._state.path))


def main():
    lines = [f"state file cost: median of {ROUNDS} saves; python {sys.version.split()[0]}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"{'case':<34} {'cpu ms':>8} {'wall ms':>8} {'file KiB':>9}"]
    directory = tempfile.mkdtemp(prefix="st-state-", dir="/var/tmp")
    for n in (1, 100, 1000):
        zones = [Zone(1000 + i, f"zone{i}", "cgroup", path=f"/t/zone{i}") for i in range(n)]
        service = service_for(zones, os.path.join(directory, f"linux{n}.json"))
        Engines.rows = {}
        service.samples_for_cycle({})
        Engines.rows = {z.id: 5 for z in zones}
        service.samples_for_cycle({})
        cpu, wall, size = measure(service)
        lines.append(f"{f'linux bpftrace meters, {n} zones':<34} {cpu:8.1f} {wall:8.1f} "
                     f"{size / 1024:9.1f}")
        service.stop()
    from smartos_telemetry.meters.kstat_counters import KstatCounters

    text, uuids = kstat_text(1000)
    service = service_for([], os.path.join(directory, "smartos1000.json"))
    service._kstats = KstatCounters()
    service._kstats.fold(text, uuids)
    cpu, wall, size = measure(service)
    lines.append(f"{'smartos kstat counters, 1000 zones':<34} {cpu:8.1f} {wall:8.1f} "
                 f"{size / 1024:9.1f}")
    service.stop()
    lines.append("one save = export, JSON, temp file, fsync, rename, directory fsync (the "
                 "agent's path, once per poll); wall includes waiting for the disk")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(OUT, "w") as f:
        f.write(text)
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


if __name__ == "__main__":
    main()
