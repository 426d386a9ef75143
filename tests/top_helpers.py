"""What the smartos-dtrace-top tests share: the command, canned engines and
zones, and the checks of heatmaps and JSON records against the workloads."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET

from linux_workloads import cgroup_id, pid_alive, python_in, scratch_cgroups, stop, wait_for
from zone_workloads import (
    CONNECTS,
    REFUSED,
    TIMED_OUT,
    WRITES,
    scratch_file,
    start_zone_workloads,
    tcp_endpoints,
)

from smartos_telemetry.meters import catalogue
from smartos_telemetry.snapshot import (
    INT64_MAX,
    INT64_MIN,
    Aggregation,
    EngineHealth,
    Histogram,
    Snapshot,
    Snapshots,
)
from smartos_telemetry.top import model as m

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


STATS = {"count", "p50", "p95", "p99", "max"}


def top_command(*args):
    return [sys.executable, "-m", "smartos_telemetry.cli.top", *args]


def top_env():
    return dict(os.environ, PYTHONPATH=REPO)  # this checkout, whatever the venv points at


def plain_parent(cg):
    """The scratch cgroups' parent as --plain-parent wants it (under the unified root)."""
    return "/" + os.path.basename(cg[""])


def children(pid, name):
    """PIDs of ``pid``'s children called ``name`` (from /proc: no pgrep in the sandbox)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue  # gone meanwhile
        comm = head.partition("(")[2]
        if comm == name and int(rest.split()[1]) == pid:
            found.add(int(entry))
    return found


class FakeEngines:
    platform, name = "linux", "bpftrace"

    def __init__(self):
        self.snaps = []

    def snapshot(self):
        # as EngineSet.snapshot: the scripts' snapshots and the engines' health
        return Snapshots(self.snaps.pop(0), health=self.health())

    def health(self):
        return EngineHealth(drops={"lost_events": 2})


class FakeZones:
    def __init__(self, zones, children):
        self._zones, self._children = zones, children

    def zones(self):
        return list(self._zones)

    def resolve(self, key):
        return self._children.get(key)


def hist(*pairs):
    return Histogram.from_counts((v, v, c) for v, c in pairs)


def snapshots(runq, retransmits):
    aggs = {"runq_ns": Aggregation("runq_ns", "llquantize", {(k,): v for k, v in runq.items()})}
    tcp = {"retransmits": Aggregation("retransmits", "count",
                                      {(k,): v for k, v in retransmits.items()})}
    return {"linux/runqueue.bt": Snapshot("bpftrace", aggs), "linux/diskio.bt":
            Snapshot("bpftrace", {}), "linux/tcp.bt": Snapshot("bpftrace", tcp)}


SVG = "{http://www.w3.org/2000/svg}"


#: the heatmaps' bands as the README gives them: 1-2-5 per decade, in ns
BAND_EDGES = [f * 10**e for e in range(12) for f in (1, 2, 5)]


def band(low, high):
    """``(low, high)`` of the band that holds a bucket: the one of its midpoint,
    an open-ended bucket at its finite bound."""
    value = high if low == INT64_MIN else low if high == INT64_MAX else (low + high) // 2
    i = max([0] + [i for i, e in enumerate(BAND_EDGES[:-1]) if e <= value])
    return BAND_EDGES[i], BAND_EDGES[i + 1]


def rebinned(buckets):
    out = {}
    for low, high, count in buckets:
        out[band(low, high)] = out.get(band(low, high), 0) + count
    return out


def svg_heatmaps(text):
    """``{zone name: {meter: [column element]}}`` of an SVG from -o heatmap."""
    root = ET.fromstring(text)
    assert root.tag == SVG + "svg"
    out = {}
    for zone in root.iter(SVG + "g"):
        if zone.get("class") != "zone":
            continue
        name = zone.get("data-name")
        assert name not in out, f"two heatmap groups for {name}"
        out[name] = {}
        for heat in zone.iter(SVG + "g"):
            if heat.get("class") == "heatmap":
                columns = [c for c in heat if c.tag == SVG + "g" and c.get("class") == "column"]
                assert int(heat.get("data-columns")) == len(columns)
                out[name][heat.get("data-meter")] = columns
    return out


def check_heatmaps(text, records, meters):
    """The SVG holds one heatmap per zone and meter, a column per interval, and
    each column's cells are that interval's histogram (``--buckets`` in the
    JSON lines of the same run) re-binned, with its p50 and p99."""
    maps = svg_heatmaps(text)
    names = {z["name"] for r in records for z in r["zones"]}
    assert set(maps) == names
    for name, per_meter in maps.items():
        assert set(per_meter) == set(meters), (name, set(per_meter))
        for meter, columns in per_meter.items():
            by_end = {c.get("data-end"): c for c in columns}
            assert len(by_end) == len(columns)
            # a Ctrl-C may land between an interval's sample and its JSON line:
            # then the SVG has that one more interval, the last
            assert len(records) <= len(columns) <= len(records) + 1
            assert [c.get("data-end") for c in columns[:len(records)]] == \
                [r["timestamp"] for r in records]
            for record in records:
                zone = next(z for z in record["zones"] if z["name"] == name)
                value = zone["meters"][meter]
                column = by_end[record["timestamp"]]
                cells = {(int(c.get("data-low")), int(c.get("data-high"))):
                         int(c.get("data-count")) for c in column if c.get("class") == "cell"}
                assert cells == rebinned(value.get("buckets", [])), (name, meter, record)
                assert int(column.get("data-count")) == value["count"]
                for stat in ("p50", "p99"):
                    want = "" if value[stat] is None else str(value[stat])
                    assert column.get(f"data-{stat}") == want, (name, meter, stat)
    return maps


def json_against_workloads(engine):
    """Run ``-b -o json --buckets --heatmap FILE`` on ``engine`` while zone A
    does the test_linux_meters workload and zone B sleeps; check every line,
    and the heatmaps against them and the workload; return the parsed lines."""
    records, procs, top = [], [], None
    stderr_lines = []
    with tcp_endpoints() as ports, scratch_cgroups("a", "b") as cg, \
            tempfile.TemporaryDirectory() as tmp:
        svg_path = os.path.join(tmp, "heatmaps.svg")
        ids = {"a": cgroup_id(cg["a"]), "b": cgroup_id(cg["b"])}

        def reader():
            for line in top.stdout:
                records.append(json.loads(line))

        def start_top():
            nonlocal top
            top = subprocess.Popen(
                top_command("-b", "-o", "json", "--buckets", "--heatmap", svg_path, "-i", "1",
                            "-e", engine, "--plain-parent", plain_parent(cg)),
                cwd=REPO, env=top_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
            procs.append(top)
            threading.Thread(target=reader, daemon=True).start()
            for line in top.stderr:  # start-up says what it does; "tracing:" once counting
                stderr_lines.append(line)
                if "tracing:" in line:
                    break
            else:
                raise AssertionError("top did not start: " + "".join(stderr_lines))

        try:
            more, durations = start_zone_workloads(cg, ports, scratch_file(), start_top)
            procs.extend(more)
            seen = len(records)
            assert wait_for(lambda: len(records) >= seen + 2, 20)  # two whole intervals after
            engine_pids = children(top.pid, "bpftrace")
            assert len(engine_pids) == (3 if engine == "bpftrace" else 0)
            top.send_signal(signal.SIGINT)  # as Ctrl-C does
            # the exit waits for the engines to stop, and Oracle DTrace's
            # dtrace_close can take a long while on a busy host
            _, err = top.communicate(timeout=120)
            stderr_lines.append(err)
        finally:
            stop(*procs)
        assert top.returncode == 130, "".join(stderr_lines)
        with open(svg_path, encoding="utf-8") as f:  # written on Ctrl-C too
            svg = f.read()
    assert "stopped: probes detached" in err
    assert not [p for p in engine_pids if pid_alive(p)]
    check_records(records, engine, ids)
    distributions = [meter.name for meter in catalogue.meters_for("linux", engine)
                     if meter.kind == "distribution"]
    maps = check_heatmaps(svg, records, distributions)
    check_connects_heatmap(maps["a"]["network.tcp.connect.latency"], durations)
    assert not [c for c in maps["b"]["network.tcp.connect.latency"] if len(c) > 1]
    return records


def check_connects_heatmap(columns, durations):
    """Zone A's connect-latency heatmap holds its connects: as many as it made,
    none slower than the workload timed it from user space (the kernel's
    measure lies inside that), allowing a bucket's width for the re-binning."""
    events = []  # (band low, count)
    for column in columns:
        events += [(int(c.get("data-low")), int(c.get("data-count"))) for c in column
                   if c.get("class") == "cell"]
    total = sum(n for _, n in events)
    assert abs(total - CONNECTS) <= 0.02 * CONNECTS, total
    for low, _ in events:
        at_or_above = sum(n for lo, n in events if lo >= low)
        assert at_or_above <= sum(1 for d in durations if d >= 0.9 * low) + 0.02 * CONNECTS, \
            (low, events, durations)


def check_records(records, engine, ids):
    assert len(records) >= 3
    want_meters = {meter.name for meter in catalogue.meters_for("linux", engine)} | {m.CPU_UTIL}
    for r in records:
        assert set(r) == {"timestamp", "engine", "interval", "zones", "health"}
        assert r["engine"] == engine
        assert 0.5 <= r["interval"] <= 5, r["interval"]
        names = {z["name"]: z for z in r["zones"]}
        assert set(names) == {"a", "b", "(host)"}
        assert names["a"]["zone"] == ids["a"] and names["b"]["zone"] == ids["b"]
        assert names["(host)"]["zone"] is None
        for z in r["zones"]:
            assert set(z) == {"zone", "name", "instance_id", "meters"}
            assert set(z["meters"]) == want_meters
            for name, value in z["meters"].items():
                kind = catalogue.BY_NAME[name].kind if name in catalogue.BY_NAME else "util"
                if kind == "distribution":
                    assert set(value) - {"buckets"} == STATS
                    assert sum(b[2] for b in value.get("buckets", [])) == value["count"]
                    if value["count"]:
                        assert 0 < value["p50"] <= value["p95"] <= value["p99"] <= value["max"]
                    else:
                        assert value["p50"] is None and value["max"] is None
                elif kind == "counter":
                    assert isinstance(value, int) and value >= 0

    def total(zone, meter):
        values = [next(z for z in r["zones"] if z["name"] == zone)["meters"][meter]
                  for r in records]
        return sum(v["count"] if isinstance(v, dict) else v for v in values)

    connects = total("a", "network.tcp.connect.latency")
    assert abs(connects - CONNECTS) <= 0.02 * CONNECTS, connects
    assert total("a", "network.tcp.connect.failures") >= REFUSED + TIMED_OUT
    assert total("a", "network.tcp.retransmits") >= TIMED_OUT
    writes = total("a", "disk.io.latency")
    assert abs(writes - WRITES) <= 0.05 * WRITES, writes
    for meter in ("network.tcp.connect.latency", "network.tcp.connect.failures",
                  "network.tcp.retransmits"):
        assert total("b", meter) == 0, meter

    def zone_values(zone, meter, stat=None):
        out = []
        for r in records:
            v = next(z for z in r["zones"] if z["name"] == zone)["meters"][meter]
            out.append(v[stat] if stat else v)
        return [v for v in out if v is not None]

    assert max(zone_values("a", m.CPU_UTIL)) >= 50  # three hogs (two CPUs, shared)
    assert max(zone_values("b", m.CPU_UTIL)) < 30    # a sleeper
    assert max(zone_values("a", "cpu.runqueue.latency", "p99")) >= 1_000_000


@contextlib.contextmanager
def hot_and_cool():
    """Zones ``hot`` (a CPU hog) and ``cool`` (a sleeper); yields the cgroup paths."""
    procs = []
    with scratch_cgroups("hot", "cool") as cg:
        try:
            procs.append(python_in(cg["hot"], "while True: pass"))
            procs.append(python_in(cg["cool"], "import time\ntime.sleep(600)"))
            yield cg
        finally:
            stop(*procs)


def one_line_error(run):
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("smartos-dtrace-top: error: ")
    return lines[0]
