"""The accumulator: interval deltas, running totals that never go backwards,
engine restarts, zone churn and its memory bound."""

from smartos_telemetry.accumulator import Accumulator
from smartos_telemetry.snapshot import Bucket, Histogram


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def hist(*triples):
    return Histogram.from_counts(triples)


def test_counters_give_interval_deltas_and_running_totals():
    acc = Accumulator("calls")
    first = acc.update({"a": 5, "b": 1})
    assert (first["a"].delta, first["a"].total) == (5, 5)
    second = acc.update({"a": 8, "b": 1, "c": 2})
    assert (second["a"].delta, second["a"].total) == (3, 8)
    assert (second["b"].delta, second["b"].total) == (0, 1)
    assert (second["c"].delta, second["c"].total) == (2, 2)


def test_histograms_give_the_interval_distribution_and_event_totals():
    acc = Accumulator("runq")
    acc.update({"a": hist((1, 1, 2), (2, 3, 1))})
    out = acc.update({"a": hist((1, 1, 2), (2, 3, 4), (4, 7, 1))})["a"]
    assert out.delta.buckets == (Bucket(2, 3, 3), Bucket(4, 7, 1))
    assert out.total == 7


def test_a_restarted_engine_never_makes_totals_go_backwards():
    acc = Accumulator("calls")
    acc.update({"a": 100}, generation=1)
    restarted = acc.update({"a": 7}, generation=2)["a"]
    assert (restarted.delta, restarted.total) == (7, 107)
    later = acc.update({"a": 10}, generation=2)["a"]
    assert (later.delta, later.total) == (3, 110)


def test_a_value_going_backwards_within_one_engine_is_a_fresh_start():
    acc = Accumulator("runq")
    acc.update({"a": hist((1, 1, 5))})
    out = acc.update({"a": hist((1, 1, 2))})["a"]  # the map was cleared
    assert out.delta.buckets == (Bucket(1, 1, 2),) and out.total == 7


def test_absent_zones_expire_after_the_ttl_and_present_ones_stay():
    clock = Clock()
    acc = Accumulator("calls", ttl=60, clock=clock)
    acc.update({"a": 1, "b": 1})
    clock.now = 50
    acc.update({"a": 2})
    clock.now = 100
    acc.update({"a": 2})
    assert acc.zones() == ["a"]  # b unseen for 100 s > 60 s
    assert acc.total("b") is None and acc.total("a") == 2


def test_memory_is_bounded_by_max_zones():
    clock = Clock()
    acc = Accumulator("calls", max_zones=100, clock=clock)
    for i in range(1000):
        clock.now = i
        acc.update({f"zone-{i}": 1})
    assert len(acc) == 100
    assert set(acc.zones()) == {f"zone-{i}" for i in range(900, 1000)}
