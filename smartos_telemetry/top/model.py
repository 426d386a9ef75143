"""Interval rows per zone: what ``smartos-dtrace-top`` shows and prints.

Nothing here traces, names zones or does arithmetic on the meters: the
engines are an :class:`~smartos_telemetry.engines.engine_set.EngineSet`,
the zones come from the platform's zone layer, the attribution step says
which zone each row belongs to (:mod:`smartos_telemetry.attribution`), and
the values are the reducer's interval results
(:class:`~smartos_telemetry.meters.intervals.MeterIntervals`), read as they
are.  Per interval and zone (a :class:`Frame` of :class:`ZoneRow`):

* distribution meters: ``{"count", "p50", "p95", "p99", "max"}`` of the
  interval's events (ns; percentiles None when there were none), and the
  interval's histogram for the drill-down view (and, the last ``history``
  intervals of them, the heatmaps: :class:`~smartos_telemetry.top.heatmap.History`);
* counter meters: what the interval added (events, segments or ns);
* ``cpu.util`` (Linux): CPU time the zone's cgroup used over the interval,
  in percent of one CPU (the platform's reader,
  :class:`~smartos_telemetry.platform.linux.CgroupCpu`), like top's %CPU.

Percentiles are the meters' own, over every cgroup of the zone (the
attribution step rolls child cgroups up before the reducer reads them).

Zones are filtered in Python (``-z``, the screen's filter); no name ever
reaches a script.
"""

import dataclasses
import datetime
import time

from smartos_telemetry import platform as platforms
from smartos_telemetry.attribution import HOST_ROW, Attribution, ZoneKeys
from smartos_telemetry.meters.reduce import SnapshotReducer
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Bucket, Histogram
from smartos_telemetry.text_format import display_text
from smartos_telemetry.top import heatmap, names
from smartos_telemetry.zones import Zone

CPU_UTIL = "cpu.util"
STATS = ("count", "p50", "p95", "p99", "max")


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the table: where its value comes from and how it looks.

    ``key`` sorts by it on screen; ``stat`` picks a distribution's
    statistic; ``kind``: text, ns (a latency), pct, count (in the interval),
    rate (per second: a distribution's events or a counter's ns).  Narrow
    terminals show the columns of lowest ``priority`` first.
    """

    id: str
    title: str
    key: str
    width: int
    meter: str = None
    stat: str = None
    kind: str = "ns"
    priority: int = 50
    help: str = ""


COLUMNS = (
    Column("name", "ZONE", "n", 12, kind="text", priority=0,
           help="zone name (the instance's name or the cgroup's)"),
    Column("instance", "INSTANCE", "i", 8, kind="text", priority=9,
           help="instance UUID (cut in the middle when narrow)"),
    Column("cpu", "CPU%", "c", 6, CPU_UTIL, kind="pct", priority=1,
           help="CPU used in the interval, percent of one CPU"),
    Column("runq_p50", "RUNQ50", "R", 6, "cpu.runqueue.latency", "p50", priority=7,
           help="run-queue latency p50: waiting runnable for a CPU"),
    Column("runq_p99", "RUNQ99", "r", 6, "cpu.runqueue.latency", "p99", priority=2,
           help="run-queue latency p99"),
    Column("runq_max", "RUNQMX", "m", 6, "cpu.runqueue.latency", "max", priority=13,
           help="run-queue latency max"),
    Column("disk_p50", "DISK50", "D", 6, "disk.io.latency", "p50", priority=14,
           help="disk I/O latency p50"),
    Column("disk_p99", "DISK99", "d", 6, "disk.io.latency", "p99", priority=3,
           help="disk I/O latency p99"),
    Column("iops", "IO/s", "o", 6, "disk.io.latency", "count", kind="rate", priority=11,
           help="disk I/Os per second"),
    Column("throttle", "THROT/s", "t", 7, "disk.throttle.delay", kind="rate", priority=8,
           help="I/O throttle delay injected per second (SmartOS)"),
    Column("conn_p99", "CONN99", "k", 6, "network.tcp.connect.latency", "p99", priority=4,
           help="TCP connect latency p99"),
    Column("rtt_p99", "RTT99", "w", 6, "network.tcp.rtt", "p99", priority=5,
           help="TCP smoothed round-trip time p99"),
    Column("retx", "RETX", "x", 5, "network.tcp.retransmits", kind="count", priority=6,
           help="TCP segments retransmitted in the interval"),
    Column("cfail", "CFAIL", "f", 5, "network.tcp.connect.failures", kind="count",
           priority=12, help="TCP connects that failed in the interval"),
)
BY_ID = {c.id: c for c in COLUMNS}
BY_KEY = {c.key: c for c in COLUMNS}


@dataclasses.dataclass
class ZoneRow:
    """One zone in one interval."""

    zone: object  # a smartos_telemetry.zones.Zone
    meters: dict  # meter -> number, or {"count", "p50", "p95", "p99", "max"}
    histograms: dict = dataclasses.field(default_factory=dict)  # meter -> Histogram

    def as_json(self, buckets=False):
        """``buckets``: each distribution also with its interval histogram,
        ``"buckets": [[low, high, count], ...]`` (non-empty buckets, ns)."""
        meters = self.meters
        if buckets:
            meters = dict(meters)
            for meter, hist in self.histograms.items():
                meters[meter] = dict(meters[meter], buckets=[
                    [lo, hi, n] for lo, hi, n in zip(hist.lows, hist.highs, hist.counts,
                                                     strict=True) if n])
        return {"zone": self.zone.id, "name": self.zone.name,
                "instance_id": self.zone.instance_uuid, "meters": meters}


@dataclasses.dataclass
class Frame:
    """Every zone over one interval."""

    timestamp: float  # wall clock at the end of the interval
    engine: str
    platform: str
    interval: float   # seconds
    rows: list
    health: object    # EngineHealth, cumulative
    meters: tuple     # meter names available here

    def value(self, row, column):
        """The number (or text) ``column`` shows for ``row``; None: nothing to show."""
        if column.id == "name":
            return row.zone.name
        if column.id == "instance":
            return row.zone.instance_uuid
        value = row.meters.get(column.meter)
        if isinstance(value, dict):
            value = value.get(column.stat)
        if value is not None and column.kind == "rate":
            value = value / self.interval if self.interval else None
        return value

    def as_json(self):
        when = datetime.datetime.fromtimestamp(self.timestamp, datetime.timezone.utc)
        return {"timestamp": when.isoformat(timespec="milliseconds"),
                "engine": self.engine, "interval": round(self.interval, 3),
                "zones": [r.as_json() for r in self.rows],
                "health": {"drops": self.health.total_drops,
                           "errors": self.health.total_errors,
                           "restarts": self.health.restarts}}


def matches(zone, wanted):
    """True when ``zone`` is one of ``wanted`` (name, instance UUID, id or zonename)."""
    if not wanted:
        return True
    names = {zone.name, zone.instance_uuid, str(zone.id), zone.attribute("zonename"),
             zone.attribute("display_name")}
    return any(w in names for w in wanted)


def contains(zone, text):
    """The screen's filter: ``text`` in the zone's name, UUID or id (any case)."""
    text = text.lower()
    return any(text in str(v).lower() for v in (zone.name, zone.instance_uuid, zone.id,
                                                  zone.attribute("display_name"))
               if v is not None)


class TopModel:
    """Frames from a started EngineSet and a zone layer, interval after interval.

    Every key the scripts recorded is counted: a zone's own, its child
    cgroups' (Linux: rolled up to the zone, as the zone layer resolves
    them), and the rest -- the host and cgroups that are no zone -- in one
    host row (``global`` on SmartOS, as prstat -Z; ``(host)`` on Linux),
    shown unless zones were asked for by name.  The attribution step does
    that (:class:`~smartos_telemetry.attribution.Attribution`); the values are
    the reducer's, read as they are.
    """

    def __init__(self, engines, zone_layer, zone_filter=(), cpu=None, clock=time.monotonic,
                 wallclock=time.time, history=heatmap.DEFAULT_LENGTH, platform=None):
        """``history``: how many intervals the heatmaps keep (:attr:`history`);
        ``platform``: a :class:`~smartos_telemetry.platform.base.Platform`
        (default: the one ``engines`` run on)."""
        self.engines = engines
        self.zone_layer = zone_layer
        self.platform = platform or platforms.named(engines.platform)
        self.zone_filter = tuple(zone_filter or ())
        self.cpu = cpu
        self.clock = clock
        self.wallclock = wallclock
        self.reducer = SnapshotReducer(self.platform.name, engines.name)
        resolve = getattr(zone_layer, "resolve", None) \
            if self.platform.rolls_up_children else None
        self.attribution = Attribution(resolve, host_row=not self.zone_filter, by_zone_id=True)
        self.kinds = {m.name: m.kind for m in self.reducer.meters}
        if cpu is not None:
            self.kinds[CPU_UTIL] = "util"
        self.meters = tuple(self.kinds)
        self.history = heatmap.History(
            [m for m, kind in self.kinds.items() if kind == "distribution"], history)
        self.host = Zone(HOST_ROW, self.platform.host_row_name, "host")
        self._last = None

    def columns(self):
        """The columns this platform and engine have a source for."""
        return [c for c in COLUMNS if c.meter is None or c.meter in self.kinds]

    def sample(self):
        """Snapshot, reduce and return the Frame since the last call (None the first time)."""
        every = self.zone_layer.zones()
        zones = [z for z in every if matches(z, self.zone_filter)]
        now = self.clock()
        snapshots = self.attribution.attribute(self.engines.snapshot(), ZoneKeys(zones))
        health = snapshots.health  # the engine set's one figure
        intervals = self.reducer.reduce(snapshots)
        rows = {z.id: ZoneRow(z, self._empty_meters()) for z in zones}
        if not self.zone_filter:
            rows[HOST_ROW] = ZoneRow(self.host, self._empty_meters())
        for mi in intervals.meters.values():
            kind = self.kinds.get(mi.name)
            if kind == "counter":
                for zone_id, added in zip(mi.zones, mi.deltas, strict=True):
                    if zone_id in rows:
                        rows[zone_id].meters[mi.name] = added
            elif kind == "distribution":
                self._distribution(mi, rows)
        if self.cpu is not None:
            self._cpu(rows, every)
        last, self._last = self._last, now
        if last is None:
            return None
        frame = Frame(self.wallclock(), self.engines.name, self.platform.name, now - last,
                      sorted(rows.values(), key=lambda r: (r.zone.name, str(r.zone.id))),
                      health, self.meters)
        self.history.add(frame)
        return frame

    @staticmethod
    def _distribution(mi, rows):
        """Each zone's interval of one distribution meter: its events, the
        reducer's percentiles and max, and its interval histogram."""
        for i, zone_id in enumerate(mi.zones):
            row = rows.get(zone_id)
            if row is None or mi.max[i] is None:
                continue  # not shown, or no events in the interval
            row.meters[mi.name] = {"count": mi.deltas[i], "p50": round(mi.p50[i]),
                                   "p95": round(mi.p95[i]), "p99": round(mi.p99[i]),
                                   "max": mi.max[i]}
            row.histograms[mi.name] = mi.histogram(zone_id)

    def _cpu(self, rows, every):
        paths = {z.id: z.path for z in every if z.path}
        paths[None] = ""
        percent = self.cpu.read(paths)
        for zone_id, row in rows.items():
            if zone_id is None:
                if None in percent:  # the host: all less the zones
                    rest = percent[None] - sum(v for k, v in percent.items() if k is not None)
                    row.meters[CPU_UTIL] = round(max(0.0, rest), 1)
            elif zone_id in percent:
                row.meters[CPU_UTIL] = round(percent[zone_id], 1)

    def _empty_meters(self):
        out = {}
        for meter, kind in self.kinds.items():
            if kind == "distribution":
                out[meter] = dict.fromkeys(STATS)
                out[meter]["count"] = 0
            elif kind == "counter":
                out[meter] = 0
            else:
                out[meter] = None
        return out


# -- presentation ---------------------------------------------------------------------

def fmt_ns(ns):
    """A latency in at most 6 characters: 850ns, 1.23us, 12.3ms, 1.23s."""
    if ns is None:
        return "-"
    unit, value = "s", ns / 1e9
    for name, scale in (("ns", 1), ("us", 1e3), ("ms", 1e6)):
        if ns < 999.5 * scale:
            unit, value = name, ns / scale
            break
    if unit == "ns" or value >= 99.95:
        return f"{value:.0f}{unit}"
    return f"{value:.1f}{unit}" if value >= 9.995 else f"{value:.2f}{unit}"


def fmt_count(n):
    if n is None:
        return "-"
    if n < 9999.5:
        return f"{n:.0f}" if n >= 10 or n == int(n) else f"{n:.1f}"
    for unit, scale in (("k", 1e3), ("M", 1e6)):
        if n < 999.5 * scale:
            return f"{n / scale:.1f}{unit}" if n < 99.95 * scale else f"{n / scale:.0f}{unit}"
    return f"{n / 1e9:.0f}G"


def cell(column, value, width, tail=None):
    """``value`` formatted for ``column``, padded or cut to ``width``; text is
    escaped for display and cut in the middle, keeping ``tail`` characters of
    its end (:func:`~smartos_telemetry.top.names.middle_cut`)."""
    if column.kind == "text":
        text = "-" if value is None else display_text(value)
        return names.middle_cut(text, width, tail).ljust(width)
    if column.kind == "pct":
        text = "-" if value is None else f"{value:.1f}"
    elif column.kind == "count" or (column.kind == "rate" and column.stat == "count"):
        text = fmt_count(value)
    else:  # ns, or ns per second
        text = fmt_ns(value)
    return text.rjust(width)


class Layout(list):
    """``[(column, width)]`` in table order; ``tails``: for each text column,
    how much of a value's end a cut keeps."""

    def __init__(self, pairs, tails):
        super().__init__(pairs)
        self.tails = tails


#: widest the instance column gets: a whole UUID
UUID_WIDTH = 36


def fit(columns, width, rows=()):
    """The :class:`Layout` of ``columns`` in ``width`` characters, for ``rows``.

    Columns are taken by priority.  The zone column is then made wide enough
    that middle cuts keep every name of ``rows`` apart, giving up columns of
    lowest priority for it where it must; the instance column the same, at
    the cost of columns below it only.  Spare room shows whole instance
    UUIDs, then whole names.  ``width`` None fits everything, uncut.
    """
    texts = {"name": names.shown_texts(r.zone.name for r in rows),
             "instance": names.shown_texts(r.zone.instance_uuid for r in rows)}
    longest = {cid: max((len(t) for t in ts), default=0) for cid, ts in texts.items()}
    picked, used = [], 0
    for column in sorted(columns, key=lambda c: c.priority):
        need = column.width + (1 if picked else 0)
        if width is None or used + need <= width:
            picked.append(column)
            used += need
    widths = {c.id: c.width for c in picked}
    if width is None:
        if "instance" in widths and longest["instance"]:
            widths["instance"] = max(widths["instance"], longest["instance"])
        widths["name"] = max(widths["name"], longest["name"])
        return Layout([(c, widths[c.id]) for c in columns if c.id in widths], {})
    spare = width - used

    def grow(cid, target):
        nonlocal spare
        add = max(0, min(target - widths[cid], spare))
        widths[cid] += add
        spare -= add

    def make_room(column, target):
        nonlocal spare
        while widths[column.id] + spare < target:
            below = [c for c in picked if c.priority > column.priority]
            if not below:
                break
            victim = max(below, key=lambda c: c.priority)
            picked.remove(victim)
            spare += widths.pop(victim.id) + 1
        grow(column.id, target)

    for column in [c for c in picked if c.id in texts]:
        if column.id in widths:
            make_room(column, names.distinct_width(texts[column.id], column.width,
                                                   width if column.id == "name" else UUID_WIDTH))
    if "instance" in widths and spare >= UUID_WIDTH - widths["instance"] and \
            longest["instance"]:
        grow("instance", UUID_WIDTH)
    grow("name", longest["name"])
    tails = {cid: names.distinct_tail(texts[cid], widths[cid]) for cid in texts if cid in widths}
    return Layout([(c, widths[c.id]) for c in columns if c.id in widths],
                  {cid: widths[cid] // 2 if t is None else t for cid, t in tails.items()})


def header_line(layout):
    return " ".join(c.title.ljust(w) if c.kind == "text" else c.title.rjust(w)
                    for c, w in layout)


def row_line(frame, row, layout):
    tails = getattr(layout, "tails", {})
    return " ".join(cell(c, frame.value(row, c) if frame else None, w, tails.get(c.id))
                    for c, w in layout)


def sorted_rows(frame, rows, column, reverse=False):
    """Text ascending, numbers descending (``reverse`` flips); no value goes last."""
    present, absent = [], []
    for row in rows:
        value = frame.value(row, column) if frame else None
        (absent if value is None else present).append((value, row))
    if column.kind == "text":
        present.sort(key=lambda vr: str(vr[0]).lower(), reverse=reverse)
    else:
        present.sort(key=lambda vr: vr[0], reverse=not reverse)
    return [r for _, r in present] + [r for _, r in absent]


def power_of_two(hist):
    """``hist`` re-binned to quantize()'s power-of-two buckets, the empty ones
    between the lowest and the highest included (as dtrace prints them)."""
    counts = {}
    for low, high, count in hist.buckets:
        if low == INT64_MIN or high == INT64_MAX:
            counts[(low, high)] = counts.get((low, high), 0) + count
            continue
        mid = (low + high) // 2
        if mid <= 0:
            bounds = (mid, mid)
        else:
            bottom = 1 << (mid.bit_length() - 1)
            bounds = (bottom, 2 * bottom - 1)
        counts[bounds] = counts.get(bounds, 0) + count
    finite = sorted(b for b in counts if b[0] > 0 and b[1] != INT64_MAX)
    if finite:
        bottom = finite[0][0]
        while bottom < finite[-1][0]:
            counts.setdefault((bottom, 2 * bottom - 1), 0)
            bottom *= 2
    return Histogram(tuple(Bucket(lo, hi, n) for (lo, hi), n in sorted(counts.items())))

