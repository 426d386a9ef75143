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

from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN


def _finite(bucket):
    low = bucket.high if bucket.low == INT64_MIN else bucket.low
    high = bucket.low if bucket.high == INT64_MAX else bucket.high
    return low, high


def quantiles(histogram, fractions):
    """Percentiles for several fractions (ascending or not) in one pass.

    Each uses the nearest-rank definition -- the event of rank ceil(q * n) --
    and interpolates that event's position inside its bucket.  Returns a
    list of None for an empty histogram.
    """
    for q in fractions:
        if not 0 < q <= 1:
            raise ValueError(f"percentile fraction must be in (0, 1], not {q}")
    buckets = histogram.buckets
    total = sum(b.count for b in buckets)
    if total <= 0:
        return [None] * len(fractions)
    wanted = sorted((max(1, math.ceil(q * total)), i) for i, q in enumerate(fractions))
    out = [None] * len(fractions)
    seen, k = 0, 0
    for bucket in buckets:
        upto = seen + bucket.count
        while k < len(wanted) and wanted[k][0] <= upto:
            rank, i = wanted[k]
            low, high = _finite(bucket)
            # the rank-th event's place among this bucket's events, spread
            # evenly over [low, high]
            out[i] = low + (high - low) * (rank - seen - 0.5) / bucket.count
            k += 1
        seen = upto
    for _, i in wanted[k:]:  # only if counts were inconsistent
        out[i] = _finite(buckets[-1])[1]
    return out


def percentile(histogram, q):
    """The value below which a fraction ``q`` (0 < q <= 1) of events fell."""
    return quantiles(histogram, (q,))[0]


def maximum(histogram):
    """Upper bound of the highest non-empty bucket (None when empty)."""
    if not histogram.buckets:
        return None
    return _finite(histogram.buckets[-1])[1]


def summary(histogram, fractions=(0.5, 0.95, 0.99)):
    """``{"p50": .., "p95": .., "p99": .., "max": .., "count": n}``."""
    values = quantiles(histogram, fractions)
    out = {f"p{round(f * 100)}": v for f, v in zip(fractions, values, strict=True)}
    out["max"] = maximum(histogram)
    out["count"] = histogram.count
    return out


def interval_stats(histogram):
    """``(p50, p95, p99, max, midpoint_sum)`` of one interval, in one pass.

    The meters read these from every busy zone's interval histogram on every
    poll; this does what :func:`quantiles`, :func:`maximum` and a sum of
    bucket midpoints would, without walking the buckets three times.
    Returns None for an empty histogram.
    """
    buckets = histogram.buckets
    counts = [b[2] for b in buckets]
    total = sum(counts)
    if total <= 0:
        return None
    ranks = [max(1, math.ceil(q * total)) for q in (0.50, 0.95, 0.99)]
    values = [None, None, None]
    k, seen, mid = 0, 0, 0.0
    for (low, high, count) in buckets:
        if low == INT64_MIN:
            low = high
        if high == INT64_MAX:
            high = low
        mid += count * (low + high) / 2
        upto = seen + count
        while k < 3 and ranks[k] <= upto:
            values[k] = low + (high - low) * (ranks[k] - seen - 0.5) / count
            k += 1
        seen = upto
    return values[0], values[1], values[2], high, mid
