"""The reducer's samples against a straightforward computation of the same
meters, zone by zone and bucket by bucket in Python ints, over random
snapshots: zones appearing, disappearing and evicted, maps cleared, engine
restarts, counters, exact and estimated sums, open-ended buckets, a zone
filter, and totals carried into a next agent."""

import collections
import random

import pytest

from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.accumulator import HistogramAccumulator
from smartos_telemetry.meters.reduce import ESTIMATE_SUFFIX, HOST, SnapshotReducer
from smartos_telemetry.snapshot import (
    INT64_MAX,
    INT64_MIN,
    Aggregation,
    EngineHealth,
    Histogram,
    Snapshot,
)

PE = ("linux", "bpftrace")
TTL, MAX_ZONES = 5.0, 14

#: the bucket pool the random histograms draw from: log-linear buckets and
#: the open-ended ends an engine reports (underflow, overflow)
POOL = ([(INT64_MIN, 999)] + [loglinear.bucket_bounds(i) for i in range(150, 230, 2)]
        + [(2**40, INT64_MAX)])


#: the bpftrace meters, and one distribution with an exact sum() beside it
METERS = catalogue.meters_for(*PE) + [catalogue.Meter(
    "test.exact.latency", "distribution", "ns", "a distribution with an exact sum",
    {PE: catalogue.Source("linux/test.bt", "lat_ns", "cgroup_id", "lat_sum")})]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# -- the straightforward computation ---------------------------------------------------

def finite(buckets):
    """``[(low, high, count)]`` ascending, the open first/last bound clamped."""
    out = [list(b) for b in buckets]
    if out and out[0][0] == INT64_MIN:
        out[0][0] = out[0][1]
    if out and out[-1][1] == INT64_MAX:
        out[-1][1] = out[-1][0]
    return out


def stat(buckets, pct):
    total = sum(c for _, _, c in buckets)
    rank = -(-total * pct // 100)
    seen = 0
    for low, high, count in finite(buckets):
        if seen + count >= rank:
            return low + (high - low) * (rank - seen - 0.5) / count
        seen += count
    raise AssertionError("rank beyond the events")


class Acc:
    """One aggregation's running totals, the rules written out per zone."""

    def __init__(self, clock, histogram):
        self.clock, self.histogram = clock, histogram
        self.zones = {}  # zone -> [raw, total, seen], in the order first seen
        self.generation = None

    def empty(self):
        return {} if self.histogram else 0

    def fold(self, rows, generation):
        now = self.clock()
        if generation != self.generation:
            if self.generation is not None:
                for state in self.zones.values():
                    state[0] = self.empty()
            self.generation = generation
        out = {}
        for zone, value in rows.items():
            state = self.zones.setdefault(zone, [self.empty(), 0, now])
            state[2] = now
            if self.histogram:
                new = {}
                for low, high, count in value.buckets:
                    new[(low, high)] = count
                delta = {b: new.get(b, 0) - state[0].get(b, 0)
                         for b in set(new) | set(state[0])}
                if any(c < 0 for c in delta.values()):
                    delta = dict(new)
                added = sum(delta.values())
                delta = sorted((lo, hi, c) for (lo, hi), c in delta.items() if c)
            else:
                delta = added = value - state[0]
                if delta < 0:
                    delta = added = value
            state[0] = value if not self.histogram else new
            state[1] += added
            out[zone] = (delta, state[1])
        for zone in [z for z, s in self.zones.items() if now - s[2] > TTL]:
            del self.zones[zone]
        excess = len(self.zones) - MAX_ZONES
        if excess > 0:
            for zone in sorted(self.zones, key=lambda z: self.zones[z][2])[:excess]:
                del self.zones[zone]
        return out


class Reference:
    def __init__(self, clock):
        self.clock = clock
        self.meters = METERS
        self.accs = {}
        self.estimates = {}

    def acc(self, meter, aggregation, histogram):
        key = f"{meter}:{aggregation}"
        if key not in self.accs:
            self.accs[key] = Acc(self.clock, histogram)
        return self.accs[key]

    @staticmethod
    def rows(snap, aggregation, zones):
        agg = snap.get(aggregation)
        if agg is None:
            return {}
        rows = {key[0]: value for key, value in agg.rows.items() if key}
        return {z: v for z, v in rows.items() if zones is None or z in zones}

    def reduce(self, snapshots, generation, zones):
        out = []
        for meter in self.meters:
            src = meter.sources[PE]
            snap = snapshots.get(src.script)
            if snap is None:
                continue
            rows = self.rows(snap, src.aggregation, zones)
            if meter.kind == "counter":
                for zone, (_, total) in self.acc(meter.name, src.aggregation, False).fold(
                        rows, generation).items():
                    out.append((meter.name, "cumulative", meter.unit, total, zone))
                continue
            sums = None
            if src.sum_aggregation:
                sums = self.acc(meter.name, src.sum_aggregation, False).fold(
                    self.rows(snap, src.sum_aggregation, zones), generation)
            acc = self.acc(meter.name, src.aggregation, True)
            estimates = self.estimates.setdefault(meter.name, {})
            for zone, (delta, total) in acc.fold(rows, generation).items():
                midpoints = 0.0
                if delta:
                    for pct in (50, 95, 99):
                        out.append((f"{meter.name}.p{pct}", "gauge", meter.unit,
                                    stat(delta, pct), zone))
                    out.append((f"{meter.name}.max", "gauge", meter.unit,
                                finite(delta)[-1][1], zone))
                    midpoints = sum(c * (lo + hi) for lo, hi, c in finite(delta)) / 2
                out.append((f"{meter.name}.count", "cumulative", "event", total, zone))
                if sums is not None and zone in sums:
                    value = sums[zone][1]
                else:
                    value = estimates[zone] = estimates.get(zone, 0.0) + midpoints
                out.append((f"{meter.name}.sum", "cumulative", meter.unit, value, zone))
            for zone in [z for z in estimates if z not in acc.zones]:
                del estimates[zone]
        unique = {id(s): s for s in snapshots.values()}.values()
        health = {"telemetry.engine.drops": sum(s.health.total_drops for s in unique),
                  "telemetry.engine.errors": sum(s.health.total_errors for s in unique),
                  "telemetry.engine.restarts": sum(s.health.restarts for s in unique)}
        for name, value in health.items():
            total = self.acc(name, "host", False).fold({HOST: value}, generation)[HOST][1]
            out.append((name, "cumulative", "event", total, HOST))
        return out

    def carried(self):
        """The next agent's reference: totals and ttl carried, raw values not."""
        nxt = Reference(self.clock)
        now = self.clock()
        for key, acc in self.accs.items():
            new = nxt.accs[key] = Acc(self.clock, acc.histogram)
            for zone, (_, total, seen) in acc.zones.items():
                new.zones[zone] = [new.empty(), total, now - (now - seen)]
        nxt.estimates = {m: dict(e) for m, e in self.estimates.items()}
        return nxt


# -- random snapshots ----------------------------------------------------------------

class Engine:
    """Cumulative per-zone values of one engine, changing at random."""

    def __init__(self, rng):
        self.rng = rng
        self.hists = collections.defaultdict(dict)  # (aggregation, zone) -> {bucket: count}
        self.counters = {}
        self.health = [0, 0, 0]
        self.zero_buckets = True

    def restart(self):
        self.hists.clear()
        self.counters.clear()

    def step(self, zones):
        rng = self.rng
        for zone in zones:
            for agg in ("runq_ns", "io_ns", "connect_ns", "srtt_ns", "lat_ns"):
                hist = self.hists[(agg, zone)]
                if rng.random() < 0.05:
                    hist.clear()  # the map was cleared: fewer events than before
                for _ in range(rng.choice([0, 0, 1, 2, 5])):
                    bucket = rng.choice(POOL)
                    hist[bucket] = hist.get(bucket, 0) + rng.choice([1, 2, 7, 1000, 10**6])
            for agg in ("retransmits", "connect_failed", "lat_sum"):
                value = self.counters.get((agg, zone), 0)
                if rng.random() < 0.05:
                    value = rng.randint(0, 3)  # went backwards
                else:
                    value += rng.choice([0, 0, 1, 3, 10**9])
                self.counters[(agg, zone)] = value
        self.health = [h + self.rng.choice([0, 1]) for h in self.health]

    def grow(self, zones):
        """More events in the buckets the zones already have, counters up: a
        steady poll (the same zones, the same buckets)."""
        for (_, zone), hist in self.hists.items():
            if zone in zones:
                for bucket in hist:
                    hist[bucket] += self.rng.choice([0, 1, 5])
        for zone in zones:
            for agg in ("retransmits", "connect_failed", "lat_sum"):
                self.counters[(agg, zone)] = (self.counters.get((agg, zone), 0)
                                              + self.rng.choice([0, 2]))

    def value(self, agg, zone):
        if agg in ("retransmits", "connect_failed", "lat_sum"):
            return self.counters[(agg, zone)]
        buckets = dict(self.hists[(agg, zone)])
        if self.zero_buckets and self.rng.random() < 0.05:
            # a bucket kept at 0 (Histogram keeps what it is given)
            buckets.setdefault(self.rng.choice(POOL), 0)
        return Histogram(sorted((*b, c) for b, c in buckets.items()))

    def snapshots(self, zones):
        def agg(name, action):
            return Aggregation(name, action, {(z,): self.value(name, z) for z in zones})

        health = EngineHealth({"aggregation": self.health[0]}, {"dynamic": self.health[1]},
                              self.health[2])
        tcp = Snapshot("bpftrace", {
            "connect_ns": agg("connect_ns", "llquantize"),
            "srtt_ns": agg("srtt_ns", "llquantize"),
            "retransmits": agg("retransmits", "count"),
            "connect_failed": agg("connect_failed", "count")}, health)
        return {
            "linux/runqueue.bt": Snapshot("bpftrace", {"runq_ns": agg("runq_ns", "llquantize")},
                                          health),
            "linux/diskio.bt": Snapshot("bpftrace", {"io_ns": agg("io_ns", "llquantize")},
                                        health),
            "linux/tcp.bt": tcp,
            "linux/test.bt": Snapshot("bpftrace", {"lat_ns": agg("lat_ns", "llquantize"),
                                                   "lat_sum": agg("lat_sum", "sum")}, health),
        }


def typed(samples):
    """A multiset of samples with each volume's type (an int stays an int)."""
    return collections.Counter((*s, type(s[3]).__name__) for s in samples)


@pytest.mark.parametrize("seed", range(6))
def test_samples_equal_the_straightforward_computation(seed, monkeypatch):
    monkeypatch.setattr(catalogue, "meters_for", lambda platform, engine: METERS)
    rng = random.Random(seed)
    clock = Clock()
    reducer = SnapshotReducer(*PE, ttl=TTL, max_zones=MAX_ZONES, clock=clock)
    reference = Reference(clock)
    engine = Engine(rng)
    universe = list(range(1, 25)) + ["web", "db"]  # cgroup ids and zonenames
    generation, compared, present, known = 0, 0, [], None
    steady = []  # polls the accumulators read the short way (same zones, same buckets)
    real_steady = HistogramAccumulator._steady

    def counted(acc, *args):
        out = real_steady(acc, *args)
        steady.append(out is not None)
        return out

    monkeypatch.setattr(HistogramAccumulator, "_steady", counted)
    for poll in range(60):
        clock.now += rng.choice([1.0, 1.0, 2.0, 7.0])
        if poll and rng.random() < 0.4:  # a steady poll: the same zones, the same buckets
            engine.grow(present)
            engine.zero_buckets = False
        else:
            if rng.random() < 0.07:
                generation += 1
                engine.restart()
            present = rng.sample(universe, rng.randint(0, 18))
            engine.step(present)
            engine.zero_buckets = True
            known = None if rng.random() < 0.7 else set(rng.sample(universe, 12))
        snapshots = engine.snapshots(present)
        if rng.random() < 0.1:
            del snapshots["linux/diskio.bt"]  # a script without a snapshot this poll
        got = list(reducer.reduce(snapshots, generation, zones=known))
        want = reference.reduce(snapshots, generation, known)
        assert typed(got) == typed(want), (seed, poll)
        compared += len(want)
        if poll in (20, 40):  # the agent restarts: a new reducer goes on from the saved totals
            saved = reducer.export()
            want_totals = {key: {z: s[1] for z, s in acc.zones.items()}
                           for key, acc in reference.accs.items()}
            assert {section: {z: s.total for z, s in zones.items()}
                    for section, zones in saved.items()
                    if not section.endswith(ESTIMATE_SUFFIX)} == want_totals
            reducer = SnapshotReducer(*PE, ttl=TTL, max_zones=MAX_ZONES, clock=clock)
            for section, zones in saved.items():
                for zone, entry in zones.items():
                    assert reducer.carry(section, zone, entry)
            reference = reference.carried()
            engine.restart()  # the next agent's engine counts from zero
            generation = 0
    assert compared > 2000
    assert sum(steady) > 10  # the short way was taken, and agreed
