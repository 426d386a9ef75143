"""smartos-dtrace-top -b: the model on canned snapshots, and batch JSON and
tables for real (root, bpftrace, test cgroups) against known workloads.

The real test runs ``python -m smartos_telemetry.cli.top`` as a child, with
zone A running CPU hogs, loopback connects (successful, refused, timed out)
and direct-I/O writes and zone B a sleeper (the workloads of
test_linux_meters), and checks the JSON lines: their keys, every zone, and
per-interval counts that add up to what the workload did.
``tests/libdtrace_real/test_top_dtrace.py`` runs the same check on Oracle
DTrace.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET

import pytest
from linux_workloads import cgroup_id, pid_alive, python_in, scratch_cgroups, stop, wait_for
from test_linux_meters import (
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
)
from smartos_telemetry.top import batch
from smartos_telemetry.top import model as m
from smartos_telemetry.top import names as names_mod
from smartos_telemetry.zones import Zone

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


# -- the model, on canned snapshots ---------------------------------------------------

class FakeEngines:
    platform, name = "linux", "bpftrace"

    def __init__(self):
        self.snaps = []

    def snapshot(self):
        return self.snaps.pop(0)

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


def test_model_rows_per_interval_zone_children_roll_up_and_the_rest_is_the_host():
    a, b = Zone(10, "a", "cgroup", "uuid-a"), Zone(20, "b", "cgroup")
    engines, clock = FakeEngines(), iter([0.0, 2.0, 4.0])
    engines.snaps = [
        snapshots({10: hist((1000, 5)), 11: hist((3000, 1))}, {10: 1, 99: 7}),
        snapshots({10: hist((1000, 5), (2000, 10)), 11: hist((3000, 1), (9000, 1)),
                   99: hist((500, 4))}, {10: 4, 99: 9}),
        snapshots({10: hist((1000, 5), (2000, 10)), 11: hist((3000, 1), (9000, 1)),
                   99: hist((500, 4))}, {10: 4, 99: 9}),
    ]
    top = m.TopModel(engines, FakeZones([a, b], {11: a}), clock=lambda: next(clock),
                     wallclock=lambda: 1700000000.0)
    assert top.sample() is None  # the baseline
    frame = top.sample()
    assert frame.interval == 2.0
    rows = {r.zone.name: r for r in frame.rows}
    assert set(rows) == {"a", "b", "(host)"}
    runq = rows["a"].meters["cpu.runqueue.latency"]
    assert runq["count"] == 11  # 10 of its own, 1 of its child cgroup 11
    assert runq["p50"] == 2000 and runq["max"] == 9000
    assert rows["a"].meters["network.tcp.retransmits"] == 3
    assert rows["(host)"].meters["network.tcp.retransmits"] == 2
    assert rows["(host)"].meters["cpu.runqueue.latency"]["count"] == 4
    assert rows["b"].meters["cpu.runqueue.latency"] == {
        "count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    assert rows["a"].histograms["cpu.runqueue.latency"].count == 11
    record = json.loads(json.dumps(frame.as_json()))
    assert set(record) == {"timestamp", "engine", "interval", "zones", "health"}
    assert record["timestamp"] == "2023-11-14T22:13:20.000+00:00"
    assert record["health"] == {"drops": 2, "errors": 0, "restarts": 0}
    za = next(z for z in record["zones"] if z["name"] == "a")
    assert (za["zone"], za["instance_id"]) == (10, "uuid-a")
    assert set(za["meters"]) == {meter.name for meter in
                                 catalogue.meters_for("linux", "bpftrace")}
    idle = top.sample()  # nothing new: idle zones, zero counts
    assert all(r.meters["network.tcp.retransmits"] == 0 for r in idle.rows)
    assert all(r.meters["cpu.runqueue.latency"]["count"] == 0 for r in idle.rows)


def test_zone_filter_drops_the_host_row_and_other_zones():
    a, b = Zone(10, "a", "cgroup"), Zone(20, "b", "cgroup", "0f9e-uuid")
    engines = FakeEngines()
    engines.snaps = [snapshots({}, {20: 1, 99: 1}), snapshots({}, {20: 3, 99: 5})]
    top = m.TopModel(engines, FakeZones([a, b], {}), zone_filter=["0f9e-uuid"])
    top.sample()
    frame = top.sample()
    assert [r.zone.name for r in frame.rows] == ["b"]
    assert frame.rows[0].meters["network.tcp.retransmits"] == 2


def test_formatting_fits_80_columns_and_uses_a_wide_terminal():
    assert [m.fmt_ns(v) for v in (None, 850, 1234, 12_345, 123_456, 12_300_000, 1.5e9)] == \
        ["-", "850ns", "1.23us", "12.3us", "123us", "12.3ms", "1.50s"]
    assert [m.fmt_count(v) for v in (None, 0, 7, 2.5, 12_345)] == ["-", "0", "7", "2.5", "12.3k"]
    rows = [m.ZoneRow(Zone(1, "web-frontend-01", "libvirt",
                           "5f2b1c3e-0000-4000-8000-000000000001"), {})]
    narrow = m.fit(m.COLUMNS, 80, rows)
    assert len(m.header_line(narrow)) <= 80
    titles = [c.title for c, _ in narrow]
    for must in ("ZONE", "INSTANCE", "CPU%", "RUNQ50", "RUNQ99", "DISK99", "THROT/s", "CONN99",
                 "RTT99", "RETX"):
        assert must in titles, (must, titles)
    wide = m.fit(m.COLUMNS, 160, rows)
    assert len(wide) == len(m.COLUMNS)
    assert dict((c.id, w) for c, w in wide)["instance"] == 36
    assert len(m.header_line(wide)) <= 160


def nova_rows(count=10, start=0x90):
    """Nova-like zones whose names and UUIDs differ only at the end."""
    return [m.ZoneRow(Zone(i, f"instance-{i:08x}", "libvirt",
                           f"5f2b1c3e-0000-4000-8000-{i:012d}"), {})
            for i in range(start, start + count)] + [m.ZoneRow(Zone(None, "(host)", "host"), {})]


def table_frame(rows):
    return m.Frame(0.0, "bpftrace", "linux", 2.0, rows, EngineHealth(), ())


def name_cells(rows, width):
    """Each row's ZONE and INSTANCE cells as a table ``width`` wide shows them."""
    layout = m.fit(m.COLUMNS, width, rows)
    assert len(m.header_line(layout)) <= width
    frame = table_frame(rows)
    out = []
    for row in rows:
        line = m.row_line(frame, row, layout)
        assert len(line) <= width
        shown = dict((c.id, w) for c, w in layout)
        cut = line[:shown["name"]], line[shown["name"] + 1:][:shown.get("instance", 0)]
        out.append(cut)
    return out


@pytest.mark.parametrize("width", [80, 100])
def test_names_that_differ_only_at_the_end_stay_apart_cut_in_the_middle(width):
    rows = nova_rows()
    cells = name_cells(rows, width)
    names = [n.strip() for n, _ in cells]
    assert len(set(names)) == len(rows), names  # no two zones look alike
    for (name, uuid), row in zip(cells, rows, strict=True):
        full = row.zone.name
        if name.strip() != full:  # cut: both ends kept
            head, _, tail = name.strip().partition(names_mod.ELLIPSIS)
            assert full.startswith(head) and full.endswith(tail) and head and tail, name
        if row.zone.instance_uuid:
            assert row.zone.instance_uuid.endswith(uuid.strip().rpartition(
                names_mod.ELLIPSIS)[2])
    uuids = [u.strip() for _, u in cells[:-1]]
    assert len(set(uuids)) == len(uuids), uuids
    assert "instance-0000009" not in names  # the old right-hand cut


def test_a_long_name_takes_room_from_the_columns_of_lowest_priority():
    rows = [m.ZoneRow(Zone(i, f"kubepods-burstable-pod{i:02d}", "docker"), {})
            for i in range(4)] + [m.ZoneRow(Zone(9, "kubepods-burstable-pod00a", "docker"), {})]
    cells = [n.strip() for n, _ in name_cells(rows, 80)]
    assert len(set(cells)) == len(rows), cells
    assert names_mod.middle_cut("instance-00000095", 12) == f"insta{names_mod.ELLIPSIS}000095"
    assert names_mod.middle_cut("short", 12) == "short"


def test_control_characters_in_names_are_shown_escaped_never_raw():
    evil = Zone(5, "web\x1b[2J\x1b]0;pwned\x07\u202eevil\n", "docker", "uuid\r")
    rows = [m.ZoneRow(evil, {})]
    for width in (80, 160, None):
        layout = m.fit(m.COLUMNS, width, rows)
        line = m.row_line(table_frame(rows), rows[0], layout)
        assert line.isprintable(), repr(line)
    line = m.row_line(table_frame(rows), rows[0], m.fit(m.COLUMNS, None, rows))
    assert line.startswith("web\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil\\n ")
    assert "uuid\\r" in line


def test_power_of_two_rebinning_keeps_every_event_and_shows_the_gaps():
    h = Histogram.from_counts([(1000, 1099, 3), (3800, 3899, 2), (70000, 70999, 1)])
    p2 = m.power_of_two(h)
    assert p2.count == 6
    assert [(b.low, b.high) for b in p2.buckets][:3] == [(1024, 2047), (2048, 4095),
                                                       (4096, 8191)]
    assert p2.buckets[0].count == 3 and p2.buckets[1].count == 2
    assert p2.buckets[-1] == (65536, 131071, 1)
    assert len(p2.buckets) == 7 and all(b.count == 0 for b in p2.buckets[2:-1])


def test_batch_table_and_json_lines_from_the_model():
    a = Zone(10, "a", "cgroup")
    engines = FakeEngines()
    engines.snaps = [snapshots({10: hist((1000, 1))}, {10: 1}),
                     snapshots({10: hist((1000, 3))}, {10: 2}),
                     snapshots({10: hist((1000, 4))}, {10: 2})]
    top = m.TopModel(engines, FakeZones([a], {}), zone_filter=["a"])
    top.sample()

    class Out(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            pass

    out = Out()
    batch.run(top, 0.01, 2, "json", out, m.BY_ID["runq_p99"])
    records = [json.loads(line) for line in "".join(out).splitlines()]
    assert [r["zones"][0]["meters"]["cpu.runqueue.latency"]["count"] for r in records] == [2, 1]
    assert [r["zones"][0]["meters"]["network.tcp.retransmits"] for r in records] == [1, 0]
    engines.snaps = [snapshots({10: hist((1000, 6))}, {10: 5})]
    out = Out()
    batch.run(top, 0.01, 1, "table", out, m.BY_ID["name"])
    lines = "".join(out).splitlines()
    assert lines[0].startswith("smartos-dtrace-top ") and "linux/bpftrace" in lines[0]
    assert lines[1].split()[:2] == ["ZONE", "INSTANCE"]
    assert lines[2].split()[0] == "a" and "1.00us" in lines[2] and lines[2].split()[-2] == "3"


# -- heatmaps against the interval histograms ----------------------------------------------

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


# -- for real: bpftrace, test cgroups, known workloads -----------------------------------

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


@pytest.mark.root
def test_batch_json_on_bpftrace_matches_the_workloads():
    json_against_workloads("bpftrace")


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


@pytest.mark.root
def test_batch_table_names_every_zone_and_the_columns():
    with hot_and_cool() as cg:
        run = subprocess.run(
            top_command("-b", "-n", "2", "-i", "0.5", "-e", "bpftrace", "--plain-parent",
                        plain_parent(cg)),
            cwd=REPO, env=top_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    tables = [t.splitlines() for t in run.stdout.strip().split("\n\n")]
    assert len(tables) == 2
    for table in tables:
        assert table[0].startswith("smartos-dtrace-top ") and "linux/bpftrace" in table[0]
        assert table[1].split() == [c.title for c in m.COLUMNS
                                    if c.meter in (None, m.CPU_UTIL) or
                                    ("linux", "bpftrace") in catalogue.BY_NAME[c.meter].sources]
        names = [line.split()[0] for line in table[2:]]
        assert names.index("hot") < names.index("cool")  # sorted by CPU
        assert sorted(names) == ["(host)", "cool", "hot"]
    # start-up: what it does and how long it took
    assert "bpftrace engine on linux" in run.stderr
    for script in catalogue.scripts_for("linux", "bpftrace"):
        assert f"compiling and attaching {script} ... " in run.stderr
    assert "tracing: 3 program(s) attached in" in run.stderr


def one_line_error(run):
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("smartos-dtrace-top: error: ")
    return lines[0]


def test_a_missing_engine_is_one_line_with_the_fix_and_status_1():
    run = subprocess.run(top_command("-b", "-e", "dtrace"), cwd=REPO, env=top_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    line = one_line_error(run)
    assert "dtrace not available" in line and "fix: use -e bpftrace" in line
    assert run.stdout == ""


@pytest.mark.root
def test_no_root_is_one_line_with_the_fix_and_status_1():
    run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          *top_command("-b", "-n", "1")], cwd=REPO, env=top_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "needs root" in one_line_error(run) and "sudo smartos-dtrace-top" in run.stderr


def test_the_live_view_without_a_terminal_says_use_batch():
    run = subprocess.run(top_command(), cwd=REPO, env=top_env(), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "use -b" in one_line_error(run)


def test_subcommand_of_smartos_telemetry():
    run = subprocess.run([sys.executable, "-m", "smartos_telemetry.cli.main", "top", "--help"],
                         cwd=REPO, env=top_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "--batch" in run.stdout and "[r] RUNQ99" in run.stdout
