"""Percentiles from buckets stay within 10% of the exact percentiles."""

import bisect
import math
import random

import pytest

from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.engines.dtrace import buckets
from smartos_telemetry.meters.percentiles import (
    interval_stats,
    maximum,
    percentile,
    quantiles,
    summary,
)
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Bucket, Histogram


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
    for q in (0.5, 0.95, 0.99):
        truth = exact(values, q)
        got = percentile(hist, q)
        assert abs(got - truth) / truth <= 0.10, (q, truth, got)


def test_small_and_edge_cases():
    h = Histogram((Bucket(10, 19, 1), Bucket(100, 199, 1), Bucket(1000, INT64_MAX, 2)))
    assert percentile(h, 0.25) == pytest.approx(14.5)
    assert percentile(h, 0.5) == pytest.approx(149.5)
    assert percentile(h, 1.0) == 1000  # overflow bucket clamps to its finite bound
    assert maximum(h) == 1000
    assert percentile(Histogram(()), 0.5) is None and maximum(Histogram(())) is None
    s = summary(h)
    assert set(s) == {"p50", "p95", "p99", "max", "count"} and s["count"] == 4
    with pytest.raises(ValueError):
        percentile(h, 0)


def test_power_of_two_buckets_would_not_meet_the_bound():
    # the negative control: bare quantize() buckets are up to 100% wide
    rng = random.Random("pow2")
    values = [max(1000, DISTRIBUTIONS["uniform-ms"](rng)) for _ in range(20000)]
    hist = bucketed(values, buckets.quantize_bounds())
    worst = max(abs(percentile(hist, q) - exact(values, q)) / exact(values, q)
                for q in (0.5, 0.95, 0.99))
    assert worst > 0.10


def test_interval_stats_agree_with_the_separate_functions():
    rng = random.Random("stats")
    values = [DISTRIBUTIONS["lognormal-us"](rng) for _ in range(5000)]
    hist = loglinear_hist([max(1, v) for v in values])
    p50, p95, p99, top, mid = interval_stats(hist)
    assert [p50, p95, p99] == quantiles(hist, (0.5, 0.95, 0.99))
    assert top == maximum(hist)
    assert mid == pytest.approx(sum(b.count * (b.low + b.high) / 2 for b in hist.buckets),
                                rel=1e-12)
    assert interval_stats(Histogram(())) is None


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
    assert interval_stats(delta) == pytest.approx(interval_stats(filled))
    p50, p95, p99, top, mid = interval_stats(delta)
    assert top == 80 == maximum(delta)  # the overflow bucket clamps to 80
    assert mid == pytest.approx(3 * 9 + 7 * 29.5 + 2 * 80)
    assert [p50, p95, p99] == quantiles(filled, (0.5, 0.95, 0.99))
    assert interval_stats(after.minus(after)) is None
