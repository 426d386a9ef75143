"""Percentiles of a bucketed distribution.

The kernel keeps histograms, not events, so a percentile is located in the
bucket that holds the event of that rank and interpolated linearly inside
it.  The error is bounded by the bucket's width: at most 10% of the value for
the log-linear buckets every shipped script uses (``llquantize`` with 100
steps per decade in D; 16 sub-buckets per power of two, 6.25%, in bpftrace).

Open-ended buckets (an int64 limit as a bound) are clamped to their finite
bound: a percentile in the overflow bucket reads as that bucket's low bound.
"""

import math
from bisect import bisect_left
from itertools import accumulate
from operator import add, mul

from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN


def _finite_bounds(histogram):
    """``(lows, highs)`` with an open-ended first or last bucket clamped to
    its finite bound (only the ends can be open)."""
    lows, highs = histogram.lows, histogram.highs
    if not lows or (lows[0] != INT64_MIN and highs[-1] != INT64_MAX):
        return lows, highs
    lows, highs = list(lows), list(highs)
    if lows[0] == INT64_MIN:
        lows[0] = highs[0]
    if highs[-1] == INT64_MAX:
        highs[-1] = lows[-1]
    return tuple(lows), tuple(highs)


def quantiles(histogram, fractions):
    """Percentiles for several fractions (ascending or not) in one pass.

    Each uses the nearest-rank definition -- the event of rank ceil(q * n) --
    and interpolates that event's position inside its bucket.  Returns a
    list of None for an empty histogram.
    """
    for q in fractions:
        if not 0 < q <= 1:
            raise ValueError(f"percentile fraction must be in (0, 1], not {q}")
    counts = histogram.counts
    total = sum(counts)
    if total <= 0:
        return [None] * len(fractions)
    lows, highs = _finite_bounds(histogram)
    wanted = sorted((max(1, math.ceil(q * total)), i) for i, q in enumerate(fractions))
    out = [None] * len(fractions)
    seen, k = 0, 0
    for b, count in enumerate(counts):
        upto = seen + count
        while k < len(wanted) and wanted[k][0] <= upto:
            rank, i = wanted[k]
            # the rank-th event's place among this bucket's events, spread
            # evenly over [low, high]
            out[i] = lows[b] + (highs[b] - lows[b]) * (rank - seen - 0.5) / count
            k += 1
        seen = upto
    for _, i in wanted[k:]:  # only if counts were inconsistent
        out[i] = highs[-1]
    return out


def percentile(histogram, q):
    """The value below which a fraction ``q`` (0 < q <= 1) of events fell."""
    return quantiles(histogram, (q,))[0]


def maximum(histogram):
    """Upper bound of the highest non-empty bucket (None when empty)."""
    filled = [b for b, count in enumerate(histogram.counts) if count]
    if not filled:
        return None
    return _finite_bounds(histogram)[1][filled[-1]]


def summary(histogram, fractions=(0.5, 0.95, 0.99)):
    """``{"p50": .., "p95": .., "p99": .., "max": .., "count": n}``."""
    values = quantiles(histogram, fractions)
    out = {f"p{round(f * 100)}": v for f, v in zip(fractions, values, strict=True)}
    out["max"] = maximum(histogram)
    out["count"] = histogram.count
    return out


def interval_stats(histogram):
    """``(p50, p95, p99, max, midpoint_sum)`` of one interval.

    The meters read these from every busy zone's interval histogram on every
    poll, so the walk over buckets happens in C: running totals by
    ``accumulate``, each rank's bucket (and the highest non-empty one, the
    max) by ``bisect``, the midpoint sum as one dot product with the
    layout's cached ``low + high`` sums.  Same definitions as
    :func:`quantiles` and :func:`maximum` (ranks in exact integer
    arithmetic); empty buckets are allowed.  Returns None for an interval
    without events.
    """
    counts = histogram.counts
    if not counts:
        return None
    running = list(accumulate(counts))
    total = running[-1]
    if total <= 0:
        return None
    lows, highs = _finite_bounds(histogram)
    # the rank-th event's place among its bucket's events, spread evenly;
    # ranks ceil(0.5 n), ceil(0.95 n), ceil(0.99 n), each at or above the
    # last.  Written out three times, not looped: this runs for every busy
    # zone and meter of every poll, and a loop took about 15% longer.
    rank = (total + 1) // 2
    i = bisect_left(running, rank)
    p50 = lows[i] + (highs[i] - lows[i]) * (rank - running[i] + counts[i] - 0.5) / counts[i]
    rank = -(-total * 95 // 100)
    i = bisect_left(running, rank, i)
    p95 = lows[i] + (highs[i] - lows[i]) * (rank - running[i] + counts[i] - 0.5) / counts[i]
    rank = -(-total * 99 // 100)
    i = bisect_left(running, rank, i)
    p99 = lows[i] + (highs[i] - lows[i]) * (rank - running[i] + counts[i] - 0.5) / counts[i]
    top = highs[bisect_left(running, total, i)]
    return p50, p95, p99, top, sum(map(mul, counts, _bound_sums(lows, highs))) / 2


#: bucket layout (lows) -> (highs, low + high of each bucket): a zone's
#: layout rarely changes between polls, and many zones share one
_BOUND_SUMS = {}
_BOUND_SUMS_MAX = 4096


def _bound_sums(lows, highs):
    """Each bucket's ``low + high`` (twice its midpoint, exact; finite bounds)."""
    cached = _BOUND_SUMS.get(lows)
    if cached is not None and cached[0] == highs:
        return cached[1]
    sums = list(map(add, lows, highs))
    if len(_BOUND_SUMS) >= _BOUND_SUMS_MAX:
        _BOUND_SUMS.clear()
    _BOUND_SUMS[lows] = (highs, sums)
    return sums
