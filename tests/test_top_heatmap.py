"""smartos-dtrace-top's latency heatmaps on canned snapshots: the model's
history of interval histograms, the text map of the live view, the SVG of
batch mode.  The real runs (bpftrace, Oracle DTrace) are in
test_top_batch.py, tests/libdtrace_real/test_top_dtrace.py and
test_top_interactive.py."""

import io
import json
import subprocess
import xml.etree.ElementTree as ET

import pytest
from top_helpers import (
    REPO,
    FakeEngines,
    FakeZones,
    check_heatmaps,
    one_line_error,
    svg_heatmaps,
    top_command,
    top_env,
)

from smartos_telemetry.meters.percentiles import interval_stats
from smartos_telemetry.snapshot import (
    INT64_MAX,
    INT64_MIN,
    Aggregation,
    EngineHealth,
    Histogram,
    Snapshot,
)
from smartos_telemetry.text_format import display_text
from smartos_telemetry.top import batch, heatmap_text
from smartos_telemetry.top import heatmap as hm
from smartos_telemetry.top import model as m
from smartos_telemetry.zones import Zone

RUNQ = "cpu.runqueue.latency"
DISTRIBUTIONS = ("cpu.runqueue.latency", "disk.io.latency", "network.tcp.connect.latency",
                 "network.tcp.rtt")

#: cumulative run-queue histograms, poll by poll: D's llquantize(10, 3, 9, 100)
#: buckets (below 1 us and from 1 s open-ended), bpftrace's 16 sub-buckets per
#: power of two (some straddle a band edge: 992..1023, 4864..5119)
D_LAYOUT = [(INT64_MIN, 999), (1000, 1099), (1900, 1999), (2000, 2099), (48000, 48999),
            (500_000, 509_999), (1_000_000_000, INT64_MAX)]
BT_LAYOUT = [(992, 1023), (1024, 1087), (4864, 5119), (5120, 5375), (65536, 69631)]


def cumulative(layout, polls):
    """``polls`` cumulative Histograms over ``layout``, each poll adding a
    different number of events to each bucket (some none)."""
    totals = [0] * len(layout)
    out = []
    for p in range(polls):
        totals = [t + (p * 7 + i * 3) % 11 for i, t in enumerate(totals)]
        out.append(Histogram.from_counts((lo, hi, c) for (lo, hi), c in zip(layout, totals,
                                                                             strict=True)))
    return out


def model_over(polls, **kwargs):
    """A TopModel on canned snapshots: zone ``a`` (cgroup 10) has the D layout,
    the rest of the host (cgroup 99) the bpftrace one."""
    a, b = Zone(10, "a", "cgroup"), Zone(20, "b", "cgroup")
    engines = FakeEngines()
    for da, bt in zip(cumulative(D_LAYOUT, polls + 1), cumulative(BT_LAYOUT, polls + 1),
                      strict=True):
        aggs = {"runq_ns": Aggregation("runq_ns", "llquantize", {(10,): da, (99,): bt})}
        engines.snaps.append({"linux/runqueue.bt": Snapshot("bpftrace", aggs),
                              "linux/diskio.bt": Snapshot("bpftrace", {}),
                              "linux/tcp.bt": Snapshot("bpftrace", {})})
    clock = iter(range(0, 1000, 2))
    wall = iter(range(1_700_000_000, 1_700_001_000, 2))
    top = m.TopModel(engines, FakeZones([a, b], {}), clock=lambda: float(next(clock)),
                     wallclock=lambda: float(next(wall)), **kwargs)
    top.sample()
    return top


def test_the_svg_cells_are_the_interval_histograms_with_their_p50_and_p99(tmp_path):
    top = model_over(6)
    out = io.StringIO()
    path = tmp_path / "run.svg"
    batch.run(top, 0.001, 6, "json", out, m.BY_ID["name"], heatmap=str(path), buckets=True)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 6
    maps = check_heatmaps(path.read_text(), records, DISTRIBUTIONS)
    assert {len(c) for per in maps.values() for c in per.values()} == {6}
    # the canned events are there: every poll of zone a added some
    a = next(z for z in records[-1]["zones"] if z["name"] == "a")["meters"][RUNQ]
    assert a["count"] > 0 and {tuple(b[:2]) for b in a["buckets"]} <= set(D_LAYOUT)
    cells = [c for c in maps["a"][RUNQ][-1] if c.get("class") == "cell"]
    # the open-ended buckets at their finite bound: 500ns..1us and 1s..2s
    assert {(c.get("data-low"), c.get("data-high")) for c in cells} >= {
        ("500", "1000"), ("1000000000", "2000000000")}


def test_the_heatmap_columns_are_the_last_intervals_and_p50_p99_the_meters_own():
    top = model_over(8)
    frames = [top.sample() for _ in range(8)]
    zone = next(r.zone for r in frames[0].rows if r.zone.name == "a")
    heat = hm.build(top.history, zone, RUNQ, count=5)
    assert len(heat.columns) == 5
    for column, frame in zip(heat.columns, frames[-5:], strict=True):
        hist = next(r for r in frame.rows if r.zone.name == "a").histograms[RUNQ]
        # the reducer's percentile code
        p50, _, p99 = interval_stats(hist.lows, hist.highs, [hist.counts]).percentiles
        assert (column.p50, column.p99) == (round(p50[0]), round(p99[0]))
        assert column.count == hist.count == sum(column.cells)
        assert column.end == frame.timestamp
    assert heat.row_of(heat.columns[-1].p50) == next(
        i for i, (low, high) in enumerate(heat.rows) if low <= heat.columns[-1].p50 < high)


def test_history_is_bounded_and_forgets_zones_gone():
    history = hm.History([RUNQ], length=3)
    busy = Zone(1, "busy", "cgroup")
    gone = Zone(2, "gone", "cgroup")
    hist = Histogram.from_counts([(1000, 1099, 4)])
    stats = {RUNQ: {"count": 4, "p50": 1050, "p99": 1098}}
    for i in range(6):
        rows = [m.ZoneRow(busy, dict(stats), {RUNQ: hist})]
        if i == 0:
            rows.append(m.ZoneRow(gone, dict(stats), {RUNQ: hist}))
        history.add(m.Frame(float(i), "bpftrace", "linux", 1.0, rows, EngineHealth(), ()))
    assert len(history.intervals) == 3
    assert len(history.series[(1, RUNQ)]) == 3
    assert (2, RUNQ) not in history.series and 2 not in history.zones
    assert [c[0] for c in history.columns(1, RUNQ)] == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("width,height", [(80, 24), (160, 40)])
def test_the_text_map_fits_the_terminal_and_marks_p50_and_p99(width, height):
    top = model_over(100)
    for _ in range(100):
        top.sample()
    zone = Zone(10, "a", "cgroup")
    max_rows = height - 8
    heat = hm.build(top.history, zone, RUNQ, heatmap_text.map_width(width), max_rows)
    lines = ["".join(text for text, _ in runs) for runs in heatmap_text.lines(heat, width)]
    assert len(heat.rows) <= max_rows
    assert all(len(line) <= width for line in lines)
    grid = lines[:len(heat.rows)]
    shown = min(100, heatmap_text.map_width(width))
    assert {len(line) for line in grid} == {heatmap_text.LABEL + 1 + shown}
    for i, column in enumerate(heat.columns[-shown:]):
        x = heatmap_text.LABEL + 1 + i
        top_down = [line[x] for line in grid]
        p99_row = len(heat.rows) - 1 - heat.row_of(column.p99)
        assert top_down[p99_row] == "9"
        if heat.row_of(column.p50) != heat.row_of(column.p99):
            assert top_down[len(heat.rows) - 1 - heat.row_of(column.p50)] == "5"
    assert lines[len(heat.rows)].strip().startswith("+-")
    assert lines[len(heat.rows) + 1].rstrip().endswith(" 0")  # the newest interval
    assert lines[-1].startswith("events/cell (log): .>=1 ")
    labels = [line[:heatmap_text.LABEL - 1].strip() for line in grid]
    assert labels[-1] == hm.short_ns(heat.rows[0][0]) and labels[0].endswith("s")


def test_rows_become_decades_when_the_bands_do_not_fit():
    top = model_over(3)
    for _ in range(3):
        top.sample()
    zone = Zone(10, "a", "cgroup")
    full = hm.build(top.history, zone, RUNQ)
    assert [r[0] for r in full.rows[:3]] == [500, 1000, 2000]  # 1-2-5 bands
    small = hm.build(top.history, zone, RUNQ, max_rows=6)
    assert len(small.rows) <= 6
    assert all(sum(a.cells) == sum(b.cells) for a, b in zip(full.columns, small.columns,
                                                               strict=True))


def test_names_in_the_svg_are_escaped_for_display_and_xml():
    evil = Zone(7, 'db<01> & "x"\x1b[31m\u202e', "docker", "uuid-\x07")
    history = hm.History([RUNQ], 10)
    hist = Histogram.from_counts([(1000, 1099, 4), (20000, 20999, 1)])
    row = m.ZoneRow(evil, {RUNQ: {"count": 5, "p50": 1050, "p99": 20900}}, {RUNQ: hist})
    history.add(m.Frame(1.0, "dtrace", "linux", 1.0, [row], EngineHealth(), ()))
    text = batch.heatmap_svg.document(history, "linux", "dtrace", "host\x1b")
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    maps = svg_heatmaps(text)
    assert list(maps) == [display_text(evil.name)]
    root = ET.fromstring(text)
    heading = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")
               if (t.text or "").startswith("zone ")]
    assert heading == [f"zone {display_text(evil.name)}  id 7  kind docker  instance uuid-\\x07"]


def test_an_interrupted_batch_run_still_writes_the_svg(tmp_path):
    top = model_over(5)
    path = tmp_path / "cut.svg"
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        batch.run(top, 0.001, 0, "heatmap", out, m.BY_ID["name"], sleep=sleep,
                  heatmap=str(path))
    for text in (path.read_text(), out.getvalue()):
        maps = svg_heatmaps(text)
        assert {len(columns) for columns in maps["a"].values()} == {2}


def test_heatmap_options_fail_early_with_the_fix():
    run = subprocess.run(top_command("-b", "--heatmap", "/nonexistent-dir/x.svg"), cwd=REPO,
                         env=top_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    line = one_line_error(run)
    assert "--heatmap /nonexistent-dir/x.svg" in line and "fix:" in line
    run = subprocess.run(top_command("-o", "heatmap"), cwd=REPO, env=top_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "fix: add -b" in one_line_error(run)
