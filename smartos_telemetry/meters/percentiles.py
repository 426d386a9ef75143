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

    __slots__ = ("highs", "low_f", "width_f", "sums", "sums_array")

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
        # twice each midpoint: Python ints, and int64 where every one fits
        self.sums = [lo + hi for lo, hi in zip(lows, highs, strict=True)]
        fits = max((abs(s) for s in self.sums), default=0) < _SAFE
        self.sums_array = np.array(self.sums, dtype=np.int64) if fits else None


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
    totals = counts.sum(axis=1)
    busy = np.flatnonzero(totals > 0)
    if not len(busy):
        return Stats(percentiles, top, midpoints)
    bounds = _bounds(tuple(lows), tuple(highs))
    if len(busy) < n_rows:
        counts, totals = counts[busy], totals[busy]
    used = np.flatnonzero(counts.any(axis=0))  # the buckets any row has events in
    counts = counts[:, used]
    running = np.cumsum(counts, axis=1)
    rows = np.arange(len(busy))
    low_f, width_f = bounds.low_f[used], bounds.width_f[used]

    def bucket_of(rank):
        """Each row's bucket holding its event of ``rank`` (running counts
        rise only at buckets with events, so this one has some)."""
        return (running < rank[:, None]).sum(axis=1)

    values = []
    for pct in percents:
        rank = -(-totals * pct // 100)
        b = bucket_of(rank)
        in_bucket = counts[rows, b]
        below = running[rows, b] - in_bucket
        values.append((low_f[b] + width_f[b] * ((rank - below) - 0.5) / in_bucket).tolist())
    highest = used[bucket_of(totals)].tolist()
    mids = _midpoint_sums(counts, totals, used, bounds)
    if len(busy) == n_rows:
        return Stats(values, [bounds.highs[b] for b in highest], mids)
    for i, row in enumerate(busy.tolist()):
        for column, value in zip(percentiles, values, strict=True):
            column[row] = value[i]
        top[row] = bounds.highs[highest[i]]
        midpoints[row] = mids[i]
    return Stats(percentiles, top, midpoints)


def _midpoint_sums(counts, totals, used, bounds):
    """``sum(count * (low + high)) / 2`` per row, the sum exact as in Python ints."""
    if bounds.sums_array is not None:
        sums = bounds.sums_array[used]
        if int(totals.max()) * int(np.abs(sums).max()) < _SAFE:
            return ((counts @ sums) / 2).tolist()
    sums = [bounds.sums[b] for b in used.tolist()]
    return [sum(c * s for c, s in zip(row, sums, strict=True)) / 2 for row in counts.tolist()]

