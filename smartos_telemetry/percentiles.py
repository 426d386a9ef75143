"""Percentiles of a bucketed distribution.

The kernel keeps histograms, not events, so a percentile is located in the
bucket that holds the event of that rank and interpolated linearly inside
it.  The error is bounded by the bucket's width: at most 10% of the value for
the log-linear buckets every shipped script uses (``llquantize`` with 100
steps per decade in D; 16 sub-buckets per power of two, 6.25%, in bpftrace).

Open-ended buckets (an int64 limit as a bound) are clamped to their finite
bound: a percentile in the overflow bucket reads as that bucket's low bound.
"""

from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN


def _finite(bucket):
    low = bucket.high if bucket.low == INT64_MIN else bucket.low
    high = bucket.low if bucket.high == INT64_MAX else bucket.high
    return low, high


def percentile(histogram, q):
    """The value below which a fraction ``q`` (0 < q <= 1) of events fell.

    Uses the nearest-rank definition -- the event of rank ceil(q * n) -- and
    interpolates its position inside the bucket.  Returns None for an empty
    histogram.
    """
    if not 0 < q <= 1:
        raise ValueError(f"percentile fraction must be in (0, 1], not {q}")
    total = histogram.count
    if total <= 0:
        return None
    rank = max(1, -(-q * total // 1))  # ceil without float surprises for small n
    seen = 0
    for bucket in histogram.buckets:
        if seen + bucket.count >= rank:
            low, high = _finite(bucket)
            # position of the rank-th event among this bucket's events,
            # spread evenly over [low, high]
            within = (rank - seen - 0.5) / bucket.count
            return low + (high - low) * within
        seen += bucket.count
    low, high = _finite(histogram.buckets[-1])
    return high


def maximum(histogram):
    """Upper bound of the highest non-empty bucket (None when empty)."""
    if not histogram.buckets:
        return None
    return _finite(histogram.buckets[-1])[1]


def summary(histogram, fractions=(0.5, 0.95, 0.99)):
    """``{"p50": .., "p95": .., "p99": .., "max": .., "count": n}``."""
    out = {f"p{round(f * 100)}": percentile(histogram, f) for f in fractions}
    out["max"] = maximum(histogram)
    out["count"] = histogram.count
    return out
