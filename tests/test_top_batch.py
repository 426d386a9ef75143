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

import json
import subprocess
import sys

import pytest
from top_helpers import (
    REPO,
    FakeEngines,
    FakeZones,
    hist,
    hot_and_cool,
    json_against_workloads,
    one_line_error,
    plain_parent,
    snapshots,
    top_command,
    top_env,
)

from smartos_telemetry.meters import catalogue
from smartos_telemetry.snapshot import (
    EngineHealth,
    Histogram,
)
from smartos_telemetry.top import batch
from smartos_telemetry.top import model as m
from smartos_telemetry.top import names as names_mod
from smartos_telemetry.zones import Zone

# -- the model, on canned snapshots ---------------------------------------------------









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











# -- for real: bpftrace, test cgroups, known workloads -----------------------------------







@pytest.mark.root
def test_batch_json_on_bpftrace_matches_the_workloads():
    json_against_workloads("bpftrace")




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
