"""Latency heatmaps: time across, log-latency bands up, events as shade.

The picture Joyent's Cloud Analytics made the reference for per-zone
latency: one column per interval, one row per latency band, each cell
shaded by how many of the interval's events fell in that band, with the
interval's p50 and p99 drawn over it -- a bimodal or drifting latency is
seen at a glance.

Nothing is reduced twice.  :class:`History` keeps, for the last ``length``
intervals, each zone's interval histogram per meter as the model made it
from the reducer's samples, and that interval's p50 and p99 as the meters
computed them (:func:`~smartos_telemetry.meters.percentiles.interval_stats`).
:func:`build` re-bins those histograms into the bands of one heatmap.

Bands are a 1-2-5 ladder (1, 2, 5, 10, 20, 50 ... ns up to 500 s): they
hold the D scripts' ``llquantize(..., 10, 3, 9, 100)`` buckets whole and
read as round numbers on an axis.  A bucket that straddles a band edge
(bpftrace's power-of-two sub-buckets) counts in the band of its midpoint;
the open-ended first and last buckets count at their finite bound, as the
percentiles clamp them.  Where the bands between the lowest and the
highest event do not fit the rows there are, rows become whole decades.
"""

import collections
import dataclasses
import math
from bisect import bisect_right

from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN

#: band edges in ns, 1-2-5 per decade: band i holds values in [EDGES[i], EDGES[i + 1])
EDGES = tuple(f * 10**e for e in range(12) for f in (1, 2, 5))
BANDS = len(EDGES) - 1
PER_DECADE = 3
#: intervals a History keeps by default (Cloud Analytics kept 600 one-second columns)
DEFAULT_LENGTH = 600
#: what the heatmaps are drawn for, and their names on screen
METER_LABELS = {
    "cpu.runqueue.latency": "run queue",
    "disk.io.latency": "disk I/O",
    "network.tcp.connect.latency": "TCP connect",
    "network.tcp.rtt": "TCP RTT",
}


def band_of(value):
    """The band that holds ``value`` ns (values below 1 ns in the first)."""
    return max(0, min(BANDS - 1, bisect_right(EDGES, value) - 1))


def bucket_value(low, high):
    """Where a bucket's events are placed: its midpoint; an open-ended bucket
    at its finite bound."""
    if low == INT64_MIN:
        return high
    if high == INT64_MAX:
        return low
    return (low + high) // 2


def banded(hist):
    """``{band: events}`` of one Histogram."""
    out = {}
    for low, high, count in zip(hist.lows, hist.highs, hist.counts, strict=True):
        if count:
            band = band_of(bucket_value(low, high))
            out[band] = out.get(band, 0) + count
    return out


class History:
    """The last ``length`` intervals of every zone's latency histograms.

    Bounded: ``length`` intervals, and per zone and meter only the
    intervals that had events; a zone not seen for ``length`` intervals is
    forgotten.
    """

    def __init__(self, meters, length=DEFAULT_LENGTH):
        self.meters = tuple(meters)
        self.length = length
        self.intervals = collections.deque(maxlen=length)  # (seq, end wallclock, seconds)
        self.series = {}  # (zone id, meter) -> deque of (seq, Histogram, p50, p99)
        self.zones = {}   # zone id -> (Zone, the last seq it was in a frame)
        self.seq = 0

    def add(self, frame):
        """Take one Frame's histograms (and their p50 and p99)."""
        self.seq += 1
        seq = self.seq
        self.intervals.append((seq, frame.timestamp, frame.interval))
        for row in frame.rows:
            self.zones[row.zone.id] = (row.zone, seq)
            for meter, hist in row.histograms.items():
                if meter not in self.meters:
                    continue
                ring = self.series.get((row.zone.id, meter))
                if ring is None:
                    ring = self.series[(row.zone.id, meter)] = collections.deque(
                        maxlen=self.length)
                stats = row.meters[meter]
                ring.append((seq, hist, stats["p50"], stats["p99"]))
        oldest = self.intervals[0][0]
        for zone_id in [z for z, (_, last) in self.zones.items() if last < oldest]:
            del self.zones[zone_id]
        for key in [k for k, ring in self.series.items() if ring[-1][0] < oldest]:
            del self.series[key]

    def columns(self, zone_id, meter, count=None):
        """The last ``count`` intervals (all kept: None) for one zone and meter,
        oldest first: ``[(end wallclock, seconds, Histogram or None, p50, p99)]``."""
        intervals = list(self.intervals)
        if count is not None:
            intervals = intervals[-count:] if count > 0 else []
        held = {seq: (hist, p50, p99) for seq, hist, p50, p99 in
                self.series.get((zone_id, meter), ())}
        return [(end, seconds, *held.get(seq, (None, None, None)))
                for seq, end, seconds in intervals]


@dataclasses.dataclass
class Column:
    end: float       # wall clock at the end of the interval
    seconds: float   # its length
    cells: list      # events per row, lowest row first
    count: int       # events in the interval
    p50: object      # ns, None without events
    p99: object


@dataclasses.dataclass
class Heatmap:
    """One zone's heatmap of one meter: ``rows`` as ``(low, high)`` ns, lowest
    first (``high`` exclusive), and a :class:`Column` per interval."""

    zone: object
    meter: str
    rows: list
    columns: list
    peak: int        # the most events in one cell

    def position(self, value):
        """Where ``value`` ns lies on the latency axis, in rows from the bottom
        (0.0 the lowest row's low edge; log scale inside a row)."""
        for i, (low, high) in enumerate(self.rows):
            if value < high or i == len(self.rows) - 1:
                if value <= low:
                    return float(i)
                return i + min(1.0, math.log(value / low) / math.log(high / low))
        return 0.0

    def row_of(self, value):
        """The row that holds ``value``, or None for None."""
        if value is None:
            return None
        return min(len(self.rows) - 1, int(self.position(value)))


def level(count, peak, levels):
    """A cell's shade, 0 (no events) to ``levels``, on a log scale of ``count``
    up to ``peak``: a few events stay visible next to a busy band."""
    if count <= 0:
        return 0
    if peak <= 1:
        return levels
    return 1 + min(levels - 1, int((levels - 1) * math.log(count) / math.log(peak) + 1e-9))


def build(history, zone, meter, count=None, max_rows=None):
    """The heatmap of ``meter`` for ``zone`` over the last ``count`` intervals,
    in at most ``max_rows`` rows (None: as many as its bands)."""
    raw = history.columns(zone.id, meter, count)
    binned = [banded(hist) if hist is not None else {} for _, _, hist, _, _ in raw]
    used = [b for per in binned for b in per]
    for _, _, _, p50, p99 in raw:
        used.extend(band_of(v) for v in (p50, p99) if v is not None)
    if used:
        lowest, highest = min(used), max(used)
    else:  # no events: an axis from 1 us to 1 s
        lowest, highest = band_of(1000), band_of(10**9 - 1)
    rows = [(b, b) for b in range(lowest, highest + 1)]
    if max_rows is not None and len(rows) > max_rows:
        first, last = lowest // PER_DECADE, highest // PER_DECADE
        rows = [(max(lowest, d * PER_DECADE), min(highest, d * PER_DECADE + PER_DECADE - 1))
                for d in range(first, last + 1)]
        if len(rows) > max_rows:  # more decades than rows: the lowest share one row
            rows = [(rows[0][0], rows[-max_rows][1])] + rows[len(rows) - max_rows + 1:]
    row_of_band = {}
    for i, (lo, hi) in enumerate(rows):
        for band in range(lo, hi + 1):
            row_of_band[band] = i
    columns, peak = [], 0
    for (end, seconds, _, p50, p99), per in zip(raw, binned, strict=True):
        cells = [0] * len(rows)
        for band, n in per.items():
            cells[row_of_band[band]] += n
        peak = max(peak, max(cells, default=0))
        columns.append(Column(end, seconds, cells, sum(per.values()), p50, p99))
    return Heatmap(zone, meter, [(EDGES[lo], EDGES[hi + 1]) for lo, hi in rows], columns, peak)


def short_ns(ns):
    """An axis label: 500ns, 1us, 20ms, 5s (the band edges are round)."""
    for unit, scale in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.3g}{unit}"
    return f"{ns:.0f}ns"


def short_seconds(seconds):
    """A time-axis label: 0, -30s, -600s, -25m, -3h."""
    seconds = round(seconds)
    if seconds == 0:
        return "0"
    if seconds < 1000:
        return f"-{seconds}s"
    if seconds < 6000:
        return f"-{seconds / 60:.0f}m"
    return f"-{seconds / 3600:.0f}h"
