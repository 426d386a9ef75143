"""Percentiles from buckets stay within 10% of the exact percentiles."""

import bisect
import math
import random

import numpy as np
import pytest

from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.engines.dtrace import buckets
from smartos_telemetry.meters.percentiles import PERCENTS, interval_stats
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Bucket, Histogram


def histogram_stats(histogram, percents=PERCENTS):
    """``(p..., max, midpoint_sum)`` of one histogram by the production
    :func:`interval_stats` (one row); None without events."""
    if not histogram.counts:
        return None
    stats = interval_stats(histogram.lows, histogram.highs, [histogram.counts], percents)
    if stats.max[0] is None:
        return None
    return (*(column[0] for column in stats.percentiles), stats.max[0], stats.midpoints[0])


def percentile(histogram, pct):
    """The production percentile of one histogram (None when empty)."""
    stats = histogram_stats(histogram, (pct,))
    return None if stats is None else stats[0]


def maximum(histogram):
    stats = histogram_stats(histogram, (100,))
    return None if stats is None else stats[1]


def reference(histogram, pct):
    """Nearest rank, interpolated, walked bucket by bucket in Python ints
    (the definitions in percentiles.py, written out independently)."""
    lows, highs = list(histogram.lows), list(histogram.highs)
    if lows and lows[0] == INT64_MIN:
        lows[0] = highs[0]
    if highs and highs[-1] == INT64_MAX:
        highs[-1] = lows[-1]
    total = sum(histogram.counts)
    rank = -(-total * pct // 100)
    seen = 0
    for low, high, count in zip(lows, highs, histogram.counts, strict=True):
        if count and seen + count >= rank:
            return low + (high - low) * (rank - seen - 0.5) / count
        seen += count
    raise AssertionError("no bucket holds the rank")


def exact(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def bucketed(values, bounds):
    lows = [lo for lo, hi in bounds]
    counts = {}
    for v in values:
        i = bisect.bisect_right(lows, v) - 1
        while bounds[i][0] > bounds[i][1]:  # an empty (fractional-width) bucket
            i -= 1
        assert bounds[i][0] <= v <= bounds[i][1]
        counts[i] = counts.get(i, 0) + 1
    return Histogram.from_counts((*bounds[i], c) for i, c in counts.items())


def loglinear_hist(values):
    counts = {}
    for v in values:
        i = loglinear.bucket_index(v)
        counts[i] = counts.get(i, 0) + 1
    return Histogram.from_counts((*loglinear.bucket_bounds(i), c) for i, c in counts.items())


DISTRIBUTIONS = {
    "lognormal-us": lambda r: int(r.lognormvariate(math.log(20_000), 1.5)),
    "bimodal": lambda r: int(r.choice([r.gauss(5_000, 500), r.gauss(3_000_000, 200_000)])),
    "uniform-ms": lambda r: r.randint(1_000_000, 50_000_000),
}


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("scheme", ["dtrace-llquantize", "bpftrace-loglinear"])
def test_relative_error_at_most_ten_percent(dist, scheme):
    rng = random.Random(f"{dist}-{scheme}")
    values = [max(1000, DISTRIBUTIONS[dist](rng)) for _ in range(20000)]
    if scheme == "dtrace-llquantize":
        hist = bucketed(values, buckets.llquantize_bounds_oracle(10, 2, 9, 100))
    else:
        hist = loglinear_hist(values)
    assert hist.count == len(values)
    for pct, got in zip(PERCENTS, histogram_stats(hist)[:3], strict=True):
        truth = exact(values, pct / 100)
        assert abs(got - truth) / truth <= 0.10, (pct, truth, got)


def test_small_and_edge_cases():
    h = Histogram((Bucket(10, 19, 1), Bucket(100, 199, 1), Bucket(1000, INT64_MAX, 2)))
    assert percentile(h, 25) == pytest.approx(14.5)
    assert percentile(h, 50) == pytest.approx(149.5)
    assert percentile(h, 100) == 1000  # overflow bucket clamps to its finite bound
    assert maximum(h) == 1000
    assert percentile(Histogram(()), 50) is None and maximum(Histogram(())) is None
    # every zone of a meter at once: a row without events has no statistics
    rows = np.array([h.counts, (0, 0, 0)], dtype=np.int64)
    stats = interval_stats(h.lows, h.highs, rows)
    assert [column[1] for column in stats.percentiles] == [None, None, None]
    assert stats.max == [1000, None] and stats.midpoints[1] == 0.0
    assert [column[0] for column in stats.percentiles] == [percentile(h, p) for p in PERCENTS]
    for bad in (0, 101, 0.5):
        with pytest.raises(ValueError, match="integer in 1..100"):
            percentile(h, bad)


def test_power_of_two_buckets_would_not_meet_the_bound():
    # the negative control: bare quantize() buckets are up to 100% wide
    rng = random.Random("pow2")
    values = [max(1000, DISTRIBUTIONS["uniform-ms"](rng)) for _ in range(20000)]
    hist = bucketed(values, buckets.quantize_bounds())
    worst = max(abs(percentile(hist, pct) - exact(values, pct / 100)) / exact(values, pct / 100)
                for pct in PERCENTS)
    assert worst > 0.10


def test_interval_stats_agree_with_the_definitions_exactly():
    rng = random.Random("stats")
    values = [DISTRIBUTIONS["lognormal-us"](rng) for _ in range(5000)]
    hist = loglinear_hist([max(1, v) for v in values])
    p50, p95, p99, top, mid = histogram_stats(hist)
    assert [p50, p95, p99] == [reference(hist, pct) for pct in PERCENTS]
    assert top == hist.highs[-1]
    assert mid == sum(b.count * (b.low + b.high) for b in hist.buckets) / 2
    assert histogram_stats(Histogram(())) is None


def test_interval_stats_of_many_rows_are_each_rows_own():
    # a meter's zones share one layout; each row reads as its own histogram
    rng = random.Random("rows")
    layout = [loglinear.bucket_bounds(i) for i in range(40, 200)]
    lows, highs = tuple(lo for lo, _ in layout), tuple(hi for _, hi in layout)
    counts = np.zeros((300, len(layout)), dtype=np.int64)
    for row in range(300):
        for _ in range(rng.choice([0, 1, 3, 50])):
            counts[row, rng.randrange(len(layout))] += rng.randint(1, 10**6)
    stats = interval_stats(lows, highs, counts, (1, 50, 95, 99, 100))
    for row in range(300):
        hist = Histogram(zip(lows, highs, counts[row].tolist(), strict=True))
        if not hist.count:
            assert stats.max[row] is None and stats.midpoints[row] == 0.0
            assert all(column[row] is None for column in stats.percentiles)
            continue
        assert [column[row] for column in stats.percentiles] == [
            reference(hist, pct) for pct in (1, 50, 95, 99, 100)]
        assert stats.max[row] == max(hi for hi, c in zip(highs, hist.counts, strict=True) if c)
        assert stats.midpoints[row] == sum(
            c * (lo + hi) for lo, hi, c in zip(lows, highs, hist.counts, strict=True)) / 2


def test_bounds_beyond_int64_stay_exact():
    # bpftrace's last log-linear bucket ends at 2**64 - 1: max and the
    # midpoint sum are exact integers there too, not int64 or float
    top = loglinear.bucket_bounds(loglinear.MAX_INDEX)
    hist = Histogram([(*loglinear.bucket_bounds(100), 3), (*top, 2**40)])
    p50, _, p99, high, mid = histogram_stats(hist)
    assert high == 2**64 - 1
    assert mid == (3 * sum(loglinear.bucket_bounds(100)) + 2**40 * sum(top)) / 2
    assert (p50, p99) == (reference(hist, 50), reference(hist, 99))


def test_interval_stats_of_a_difference_with_empty_buckets_and_open_ends():
    # minus() keeps the layout of two polls of the same buckets, empty ones
    # included; the stats must read as if they were not there
    layout = [(INT64_MIN, 9), (10, 19), (20, 39), (40, 79), (80, INT64_MAX)]
    def hist(counts):
        return Histogram.from_counts((*bounds, c) for bounds, c in zip(layout, counts, strict=True))

    before, after = hist([1, 5, 2, 7, 3]), hist([4, 5, 9, 7, 5])
    delta = after.minus(before)
    assert delta.counts == (3, 0, 7, 0, 2)
    filled = Histogram.from_counts(b for b in delta.buckets)
    assert len(filled.buckets) == 3
    assert histogram_stats(delta) == histogram_stats(filled)
    p50, p95, p99, top, mid = histogram_stats(delta)
    assert top == 80 == maximum(delta)  # the overflow bucket clamps to 80
    assert mid == pytest.approx(3 * 9 + 7 * 29.5 + 2 * 80)
    assert [p50, p95, p99] == [reference(filled, pct) for pct in PERCENTS]
    assert histogram_stats(after.minus(after)) is None


def test_a_midpoint_sum_too_big_for_int64_is_summed_exactly():
    # 10**12 events of about 2**41 ns: the products leave int64, the sum must not wrap
    bounds = [loglinear.bucket_bounds(i) for i in (600, 601)]
    hist = Histogram([(*bounds[0], 10**12), (*bounds[1], 3)])
    mid = histogram_stats(hist)[4]
    assert type(mid) is float
    assert mid == (10**12 * sum(bounds[0]) + 3 * sum(bounds[1])) / 2
