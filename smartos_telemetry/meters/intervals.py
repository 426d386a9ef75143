"""What one poll's reduction gives: every meter's interval, zone by zone, as columns.

:meth:`SnapshotReducer.reduce <smartos_telemetry.meters.reduce.SnapshotReducer.reduce>`
returns an :class:`Intervals`: one :class:`MeterIntervals` per meter that had
a snapshot this poll, in catalogue order.  The reducer computes everything
here once; the outputs only format it:

* Ceilometer (``polling/``): :meth:`MeterIntervals.samples` yields each
  sample as a plain ``(name, type, unit, volume, zone)`` tuple, in
  :class:`MeterSample`'s field order, with the volumes the meters always
  had (see ``catalogue``);
* ``smartos-dtrace-top`` (``top/``): reads the columns -- what the interval
  added, its percentiles and its histogram -- by row.

A :class:`MeterIntervals` is columnar: row ``i`` of every column is zone
``zones[i]``, so that one poll of a thousand zones is a handful of arrays per
meter, not tens of thousands of objects.  Zone keys are the snapshots' own
(cgroup id, zoneid, zonename, after attribution); host-level meters have the
one zone :data:`HOST`.

Columns of every meter (lists of Python numbers, exact):

``totals``
    The cumulative value that never goes backwards: a counter's running
    total; a distribution's events since the zone was first seen (its
    ``.count`` sample).
``deltas``
    What this interval added to ``totals`` (0 for an idle zone).

Columns of a distribution meter (None for the other kinds):

``sums``
    The cumulative ``.sum``: an ``int`` where the script keeps an exact
    ``sum()`` beside the histogram, else a ``float`` estimated from bucket
    midpoints.
``p50``, ``p95``, ``p99``
    Percentiles (``float``, ns) of this interval's events; None for a zone
    without events in the interval (then it has no gauge samples).
``max``
    High bound (``int``) of the highest bucket with events this interval;
    None as above.
``histograms``
    A 2-D ``numpy`` ``int64`` array, one row per zone, one column per
    bucket of the shared layout ``lows``/``highs``: this interval's events
    per bucket (a row of zeros: idle).
``lows``, ``highs``
    The layout: tuples of ``int``, ascending, both bounds inclusive, open
    ends as the int64 limits (``snapshot.INT64_MIN``/``INT64_MAX``).  Every
    bucket any zone of this meter has used; most are empty for any one zone.
"""

import typing
from itertools import chain, repeat

from smartos_telemetry.meters.catalogue import DISTRIBUTION_SUFFIXES
from smartos_telemetry.snapshot import Histogram

#: the statistics of a distribution that are gauges, read from the interval's histogram
GAUGE_STATISTICS = ("p50", "p95", "p99", "max")

HOST = None  # the zone of host-level samples


class MeterSample(typing.NamedTuple):
    """One sample, before it becomes a Ceilometer Sample."""

    name: str
    type: str  # gauge | cumulative
    unit: str
    volume: float
    zone: object  # a zone key, or HOST


class MeterIntervals:
    """One meter over one polling interval, every zone it has, as columns
    (see the module docstring for each column)."""

    __slots__ = ("meter", "zones", "totals", "deltas", "sums", "p50", "p95", "p99", "max",
                 "histograms", "lows", "highs", "_rows")

    def __init__(self, meter, zones, totals, deltas, sums=None, p50=None, p95=None, p99=None,
                 max=None, histograms=None, lows=(), highs=()):
        self.meter = meter
        self.zones = tuple(zones)
        self.totals, self.deltas = totals, deltas
        self.sums, self.p50, self.p95, self.p99, self.max = sums, p50, p95, p99, max
        self.histograms, self.lows, self.highs = histograms, tuple(lows), tuple(highs)
        self._rows = None

    @property
    def name(self):
        return self.meter.name

    @property
    def kind(self):
        """``distribution``, ``counter`` or ``health`` (the catalogue's)."""
        return self.meter.kind

    def __len__(self):
        return len(self.zones)

    def row(self, zone):
        """The row of ``zone``, or None if the meter has none for it."""
        if self._rows is None:
            self._rows = {zone: i for i, zone in enumerate(self.zones)}
        return self._rows.get(zone)

    def histogram(self, zone):
        """``zone``'s interval as a :class:`Histogram` of its non-empty buckets
        (empty: no events, or not a distribution)."""
        i = self.row(zone)
        if i is None or self.histograms is None:
            return Histogram(())
        counts = self.histograms[i]
        filled = counts.nonzero()[0].tolist()
        return Histogram((self.lows[b], self.highs[b], int(counts[b])) for b in filled)

    def samples(self, statistics=DISTRIBUTION_SUFFIXES):
        """Every sample of this meter: ``(name, type, unit, volume, zone)`` tuples.

        A distribution ``NAME`` gives ``NAME.p50 .p95 .p99 .max`` (gauges) for
        the zones with events in the interval, and ``NAME.count``, ``NAME.sum``
        (cumulative) for every zone -- of those, only the ``statistics``
        named (``[smartos] distribution_statistics``); a counter or health
        meter its running total."""
        meter, zones = self.meter, self.zones
        if meter.kind != "distribution":
            return zip(repeat(meter.name), repeat("cumulative"), repeat(meter.unit),
                       self.totals, zones)
        return _distribution_samples(self, statistics)

    def __repr__(self):
        return f"<MeterIntervals {self.name}: {len(self.zones)} zones>"


def _distribution_samples(mi, statistics):
    name, unit, zones = mi.meter.name, mi.meter.unit, mi.zones
    chosen = [stat for stat in GAUGE_STATISTICS if stat in statistics]
    columns = [getattr(mi, stat) for stat in chosen]
    busy = [i for i, top in enumerate(mi.max) if top is not None]
    if len(busy) == len(zones):
        busy_zones = zones
    else:
        busy_zones = [zones[i] for i in busy]
        columns = [[column[i] for i in busy] for column in columns]
    out = [zip(repeat(f"{name}.{stat}"), repeat("gauge"), repeat(unit), values, busy_zones)
           for stat, values in zip(chosen, columns, strict=True)]
    if "count" in statistics:
        out.append(zip(repeat(f"{name}.count"), repeat("cumulative"), repeat("event"),
                       mi.totals, zones))
    if "sum" in statistics:
        out.append(zip(repeat(f"{name}.sum"), repeat("cumulative"), repeat(unit), mi.sums,
                       zones))
    return chain(*out)


class Intervals:
    """One poll's reduction: ``{meter name: MeterIntervals}`` in catalogue
    order, host-level (health) meters last.

    Iterating gives every sample as a :class:`MeterSample` (what
    ``reduce`` returned before it returned columns); :meth:`samples` gives
    the same as plain tuples, which is cheaper."""

    __slots__ = ("meters",)

    def __init__(self, meters=()):
        self.meters = {mi.name: mi for mi in meters}

    def __getitem__(self, name):
        return self.meters[name]

    def get(self, name):
        return self.meters.get(name)

    def __contains__(self, name):
        return name in self.meters

    def samples(self, statistics=DISTRIBUTION_SUFFIXES):
        """Every meter's :meth:`MeterIntervals.samples`, one after the other."""
        return chain.from_iterable(mi.samples(statistics) for mi in self.meters.values())

    def __iter__(self):
        return map(MeterSample._make, self.samples())

    def __len__(self):
        """The number of samples."""
        count = 0
        for mi in self.meters.values():
            if mi.kind == "distribution":
                count += 2 * len(mi.zones) + 4 * sum(top is not None for top in mi.max)
            else:
                count += len(mi.zones)
        return count
