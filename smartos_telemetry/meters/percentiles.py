"""Percentiles of bucketed distributions, every zone of a meter at once.

The kernel keeps histograms, not events, so a percentile is located in the
bucket that holds the event of that rank and interpolated linearly inside
it.  The error is bounded by the bucket's width: at most 10% of the value for
the log-linear buckets every shipped script uses (``llquantize`` with 100
steps per decade in D; 16 sub-buckets per power of two, 6.25%, in bpftrace).

Definitions (exact: ranks in integer arithmetic, then one formula in
floating point, the same for every zone):

* percentile ``P`` of ``n`` events: the event of rank ``ceil(P n / 100)``
  (nearest rank), placed among its bucket's ``c`` events spread evenly over
  ``[low, high]``: ``low + (high - low) * (rank - below - 0.5) / c``, where
  ``below`` is the number of events in lower buckets;
* max: the high bound of the highest bucket with events;
* midpoint sum: the sum of each bucket's events times ``(low + high) / 2``,
  which estimates a ``.sum`` where the script keeps no exact one.

Open-ended buckets (an int64 limit as a bound) are clamped to their finite
bound: a percentile in the overflow bucket reads as that bucket's low bound.
Empty buckets change nothing, so every zone of a meter shares one layout.
"""

import numpy as np

from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN

#: the percentiles every distribution meter reports
PERCENTS = (50, 95, 99)

#: below this, an int64 dot product of counts and bound sums cannot overflow
_SAFE = 2**62


class Stats:
    """Statistics of several histograms over one layout, one row each.

    ``percentiles``: one list per requested percent, ``float`` per row;
    ``max``: ``int`` per row; ``midpoints``: the midpoint sum, ``float`` per
    row.  A row without events has None for its percentiles and max, and a
    midpoint sum of 0.0.
    """

    __slots__ = ("percentiles", "max", "midpoints")

    def __init__(self, percentiles, top, midpoints):
        self.percentiles, self.max, self.midpoints = percentiles, top, midpoints


class _Bounds:
    """A layout's clamped bounds in the forms the arithmetic needs."""

    __slots__ = ("highs", "low_f", "width_f", "sums", "sums_int", "sums_reach")

    def __init__(self, lows, highs):
        lows, highs = list(lows), list(highs)
        for b, low in enumerate(lows):
            if low == INT64_MIN:
                lows[b] = highs[b]
            if highs[b] == INT64_MAX:
                highs[b] = lows[b]
        self.highs = highs
        # Python's int -> float is correctly rounded, as numpy's int64 ->
        # float64 is: each product below is the one a scalar computation
        # would make
        self.low_f = np.array([float(lo) for lo in lows])
        self.width_f = np.array([float(hi - lo) for lo, hi in zip(lows, highs, strict=True)])
        # twice each midpoint: as Python ints; as int64 (0 where one does not
        # fit); and how far each reaches, to tell which rows' dot products fit
        self.sums = [lo + hi for lo, hi in zip(lows, highs, strict=True)]
        self.sums_int = np.array([s if abs(s) < _SAFE else 0 for s in self.sums],
                                 dtype=np.int64)
        self.sums_reach = np.array([float(abs(s)) if abs(s) < _SAFE else np.inf
                                    for s in self.sums])


_CACHE = {}
_CACHE_MAX = 64


def _bounds(lows, highs):
    """The layout's :class:`_Bounds` (cached: a meter keeps its layout poll after poll)."""
    key = (lows, highs)
    cached = _CACHE.get(key)
    if cached is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        cached = _CACHE[key] = _Bounds(lows, highs)
    return cached


def interval_stats(lows, highs, counts, percents=PERCENTS):
    """:class:`Stats` of each row of ``counts``.

    ``lows``, ``highs``: the layout, tuples of ``int`` (ascending, bounds
    inclusive); ``counts``: a 2-D ``int64`` array, one histogram per row
    over that layout, every count >= 0 (an interval's events).  ``percents``:
    integers in 1..100.

    Only the buckets with events are read: every row's, one row after the
    other, with running totals over all of them, so that a rank's bucket is
    one binary search however wide the layout.
    """
    for pct in percents:
        if not (isinstance(pct, int) and 0 < pct <= 100):
            raise ValueError(f"a percentile must be an integer in 1..100, not {pct!r}")
    counts = np.asarray(counts, dtype=np.int64)
    n_rows = counts.shape[0]
    percentiles = [[None] * n_rows for _ in percents]
    top = [None] * n_rows
    midpoints = [0.0] * n_rows
    if not n_rows or not len(lows):
        return Stats(percentiles, top, midpoints)
    rows, columns = np.nonzero(counts)  # row by row, each row's buckets ascending
    if not len(rows):
        return Stats(percentiles, top, midpoints)
    bounds = _bounds(tuple(lows), tuple(highs))
    events = counts[rows, columns]
    running = np.cumsum(events)
    busy, starts = np.unique(rows, return_index=True)
    ends = np.append(starts[1:], len(rows))
    before = np.where(starts > 0, running[starts - 1], 0)  # events of the rows above
    totals = running[ends - 1] - before
    values = []
    for pct in percents:
        rank = -(-totals * pct // 100)
        at = np.searchsorted(running, before + rank)  # the entry holding the rank-th event
        b, in_bucket = columns[at], events[at]
        below = running[at] - in_bucket - before
        values.append((bounds.low_f[b] + bounds.width_f[b] * ((rank - below) - 0.5)
                       / in_bucket).tolist())
    highest = columns[ends - 1].tolist()
    mids = _midpoint_sums(events, columns, starts, totals, bounds)
    if len(busy) == n_rows:
        return Stats(values, [bounds.highs[b] for b in highest], mids)
    for i, row in enumerate(busy.tolist()):
        for column, value in zip(percentiles, values, strict=True):
            column[row] = value[i]
        top[row] = bounds.highs[highest[i]]
        midpoints[row] = mids[i]
    return Stats(percentiles, top, midpoints)


def _midpoint_sums(events, columns, starts, totals, bounds):
    """``sum(count * (low + high)) / 2`` per busy row, the sum exact as in
    Python ints: in int64 for the rows whose products cannot leave it,
    Python ints for the others."""
    reach = np.maximum.reduceat(bounds.sums_reach[columns], starts)
    safe = totals * reach < _SAFE
    out = (np.add.reduceat(events * bounds.sums_int[columns], starts) / 2).tolist()
    if not safe.all():
        ends = np.append(starts[1:], len(events)).tolist()
        for i in np.flatnonzero(~safe).tolist():
            part = slice(starts[i], ends[i])
            out[i] = sum(c * bounds.sums[b] for c, b in
                         zip(events[part].tolist(), columns[part].tolist(), strict=True)) / 2
    return out
