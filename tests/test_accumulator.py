"""The accumulator: interval deltas, running totals that never go backwards,
engine restarts, zone churn and its memory bound."""

from smartos_telemetry.meters.accumulator import Accumulator, HistogramAccumulator
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
    acc = HistogramAccumulator("runq")
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
    acc = HistogramAccumulator("runq")
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


def test_a_carried_total_is_the_base_a_new_engine_adds_to():
    from smartos_telemetry.meters.accumulator import Saved
    old = HistogramAccumulator("runq")
    old.update({"a": hist((1, 1, 600), (2, 3, 34))}, generation=1)
    saved = old.export()["a"]
    assert (saved.total, saved.kind, saved.raw) == (634, "h", None)
    new = HistogramAccumulator("runq")  # the next agent: its engine counts from zero
    assert new.carry("a", saved)
    out = new.update({"a": hist((1, 1, 5))}, generation=1)["a"]
    assert out.total == 639 and out.delta.buckets == (Bucket(1, 1, 5),)
    assert not new.carry("a", Saved(1, "h", 0.0))  # already seen: never counted twice
    assert new.total("a") == 639


def test_a_carried_raw_value_counts_only_what_the_source_gained():
    old = Accumulator("kstat")
    old.update({"z": 100})
    old.update({"z": 130})
    saved = old.export(with_raw=True)["z"]
    assert (saved.total, saved.raw) == (130, 130)
    new = Accumulator("kstat")
    new.carry("z", saved)
    out = new.update({"z": 150})["z"]  # the kernel kept counting: 20 more
    assert (out.delta, out.total) == (20, 150)


def test_a_carried_zone_goes_on_with_its_ttl_where_it_left_it():
    from smartos_telemetry.meters.accumulator import Saved
    clock = Clock()
    acc = Accumulator("calls", ttl=60, clock=clock)
    acc.carry("a", Saved(9, "c", 50.0))
    clock.now = 5
    acc.update({"b": 1})
    assert "a" in acc
    clock.now = 11
    acc.update({"b": 1})
    assert "a" not in acc  # unseen 50 s before plus 11 s now
