"""Snapshot arithmetic: cumulative values and per-interval deltas."""

from smartos_telemetry.snapshot import Aggregation, Average, Bucket, Histogram, Snapshot, StdDev


def snap(rows_by_name):
    return Snapshot("test", {name: Aggregation(name, action, rows)
                             for name, (action, rows) in rows_by_name.items()})


def test_delta_subtracts_counters_histograms_and_averages_but_not_extremes():
    h1 = Histogram((Bucket(1, 1, 2), Bucket(2, 3, 1)))
    h2 = Histogram((Bucket(1, 1, 2), Bucket(2, 3, 4), Bucket(4, 7, 1)))
    first = snap({"n": ("count", {("a",): 5, ("b",): 1}), "h": ("quantize", {(): h1}),
                  "m": ("max", {(): 9}), "a": ("avg", {(): Average(2, 10)}),
                  "s": ("stddev", {(): StdDev(1, 2, 4)})})
    second = snap({"n": ("count", {("a",): 8, ("b",): 1, ("c",): 2}),
                   "h": ("quantize", {(): h2}), "m": ("max", {(): 9}),
                   "a": ("avg", {(): Average(5, 40)}), "s": ("stddev", {(): StdDev(3, 8, 22)})})
    d = second.delta(first)
    assert d["n"].rows == {("a",): 3, ("c",): 2}  # unchanged rows left out
    assert d["h"].rows[()].buckets == (Bucket(2, 3, 3), Bucket(4, 7, 1))
    assert d["m"].rows == {}  # extremes cannot be taken apart; unchanged
    assert d["a"].rows == {(): Average(3, 30)} and d["a"].rows[()].value == 10
    assert d["s"].rows == {(): StdDev(2, 6, 18)}
    assert second.delta(None) is second


def test_json_form_lists_buckets_as_low_high_count():
    s = snap({"q": ("quantize", {(63,): Histogram((Bucket(8, 15, 3),))})})
    assert s.as_json() == [{"name": "q", "action": "quantize", "rows": [
        {"keys": [63], "value": [{"low": 8, "high": 15, "count": 3}]}]}]


def test_rekeyed_merges_rows_that_meet_as_the_action_merges():
    h1, h2 = Histogram((Bucket(1, 1, 2),)), Histogram((Bucket(1, 1, 1), Bucket(2, 3, 4)))
    s = snap({"n": ("count", {(44,): 5, (45,): 2, (9,): 1}),
              "h": ("quantize", {(44,): h1, (45,): h2}),
              "lo": ("min", {(44,): 7, (45,): 3}),
              "a": ("avg", {(44,): Average(1, 10), (45,): Average(3, 2)})})
    parent = {44: 40, 45: 40}  # 44 and 45 are children of zone 40; 9 is nobody's
    r = s.rekeyed(lambda key: (parent[key[0]],) if key[0] in parent else None)
    assert r["n"].rows == {(40,): 7}
    assert r["h"].rows[(40,)].buckets == (Bucket(1, 1, 3), Bucket(2, 3, 4))
    assert r["lo"].rows == {(40,): 3}
    assert r["a"].rows == {(40,): Average(4, 12)}
