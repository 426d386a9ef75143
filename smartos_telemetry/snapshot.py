"""Typed snapshots of in-kernel aggregations: what every engine hands on.

An engine (libdtrace or bpftrace) reads its aggregations and returns a
:class:`Snapshot`: for each aggregation, rows of typed keys mapped to a
typed value.  Everything after the engine works on these types only, so it
never knows which engine ran.

Values are **cumulative since the engine started** (see :meth:`Snapshot.delta`
for per-interval values).  Cumulative is what the meters use: a missed or
rate-limited poll loses nothing, because the next snapshot still holds every
event, and counters derived from it never go backwards while the engine lives.

Value types, one per aggregating action:

========================  ==============================================
action                    value
========================  ==============================================
count, sum, min, max      ``int`` (exact; never truncated or rounded)
avg                       :class:`Average` (count, total)
stddev                    :class:`StdDev` (count, total, sum of squares)
quantize, lquantize,      :class:`Histogram` of :class:`Bucket` (low, high,
llquantize, hist, lhist   count); bounds inclusive, zero buckets omitted
========================  ==============================================

Keys are tuples of ``int`` and ``str``; a key-less aggregation has the key
``()``.  The libbpf engine's histograms are :class:`PackedHistogram`, a
Histogram whose counts are kept packed until asked for.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
import time
import typing

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

SCALAR_ACTIONS = frozenset({"count", "sum", "min", "max"})
HISTOGRAM_ACTIONS = frozenset({"quantize", "lquantize", "llquantize"})
ACTIONS = SCALAR_ACTIONS | HISTOGRAM_ACTIONS | {"avg", "stddev"}


class Bucket(typing.NamedTuple):
    """Events whose value lay in ``low..high`` (both inclusive).

    Open-ended buckets use the int64 limits: an underflow bucket has
    ``low == INT64_MIN``, an overflow bucket ``high == INT64_MAX``.  A named
    tuple: immutable and ordered by (low, high).
    """

    low: int
    high: int
    count: int

class Histogram:
    """A distribution as ascending, non-overlapping buckets.

    Engines hand on non-empty buckets only; an interval's difference
    (:meth:`minus`) may keep empty ones in place.

    Stored as three parallel tuples -- ``lows``, ``highs``, ``counts`` --
    so that the per-poll arithmetic (differences, totals, cumulative ranks)
    runs in C over whole tuples instead of bucket by bucket in Python: a busy
    host has thousands of zone histograms to subtract and read percentiles
    from on every poll.  :attr:`buckets` gives the same data as
    :class:`Bucket` triples.  Treat it as immutable (it is hashable).
    """

    __slots__ = ("lows", "highs", "counts")

    def __init__(self, buckets=()):
        """From ``(low, high, count)`` triples in ascending order, kept as
        given (empty buckets too: a display may want them)."""
        buckets = tuple(buckets)
        self.lows = tuple(b[0] for b in buckets)
        self.highs = tuple(b[1] for b in buckets)
        self.counts = tuple(b[2] for b in buckets)

    @classmethod
    def _of(cls, lows, highs, counts):
        """From parallel tuples already in ascending order."""
        hist = cls.__new__(cls)
        hist.lows, hist.highs, hist.counts = lows, highs, counts
        return hist

    @classmethod
    def from_counts(cls, bounded_counts):
        """Build from ``(low, high, count)`` triples in any order, dropping
        empty ones."""
        return cls(sorted(b for b in bounded_counts if b[2]))

    @property
    def buckets(self):
        return tuple(Bucket(*b) for b in zip(self.lows, self.highs, self.counts, strict=True))

    @property
    def count(self):
        return sum(self.counts)

    def __eq__(self, other):
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.counts == other.counts and self.lows == other.lows
                and self.highs == other.highs)

    def __hash__(self):
        return hash((self.lows, self.highs, self.counts))

    def __repr__(self):
        return f"Histogram({self.buckets!r})"

    def minus(self, earlier):
        """Events added since ``earlier`` (a snapshot of the same histogram).

        When both have the same buckets -- the usual case between two polls
        of one engine -- the difference keeps that layout, buckets with no
        new events included (counts of 0), so that it is one subtraction in
        C.  Otherwise buckets with no change are left out.  A bucket that
        vanished counts its events as removed (negative), which the
        accumulator reads as a reset.
        """
        if not earlier.counts:
            return self
        if self.lows == earlier.lows:
            if self.counts == earlier.counts:
                return _NO_EVENTS  # an idle zone: the common case
            return Histogram._of(self.lows, self.highs,
                                 tuple(map(operator.sub, self.counts, earlier.counts)))
        changes = self._by_bounds()
        for bounds, count in earlier._by_bounds().items():
            changes[bounds] = changes.get(bounds, 0) - count
        return Histogram.from_counts((lo, hi, c) for (lo, hi), c in changes.items())

    def _by_bounds(self):
        """``{(low, high): count}``."""
        return dict(zip(zip(self.lows, self.highs, strict=True), self.counts, strict=True))

    def plus(self, other):
        counts = self._by_bounds()
        for bounds, count in other._by_bounds().items():
            counts[bounds] = counts.get(bounds, 0) + count
        return Histogram.from_counts((lo, hi, c) for (lo, hi), c in counts.items())

    def as_list(self):
        return [{"low": lo, "high": hi, "count": c}
                for lo, hi, c in zip(self.lows, self.highs, self.counts, strict=True)]


_NO_EVENTS = Histogram(())


class BucketTable:
    """A fixed, ascending set of buckets (``lows``, ``highs``: tuples of
    ``int``) that :class:`PackedHistogram` values index into -- the libbpf
    engine's log-linear buckets.  Histograms of one table compare layouts by
    their bitmaps instead of their bounds."""

    __slots__ = ("lows", "highs")

    def __init__(self, lows, highs):
        self.lows, self.highs = tuple(lows), tuple(highs)
        if len(self.lows) != len(self.highs):
            raise ValueError("a bucket table needs as many lows as highs")


class PackedHistogram(Histogram):
    """A Histogram of a :class:`BucketTable`'s buckets, kept packed.

    ``bitmap``: ``bytes``, bit ``i`` (little-endian) set where bucket ``i``
    of ``table`` has events; ``packed``: ``bytes`` of native unsigned 64-bit
    counts, one per set bit, in bucket order.

    What the libbpf engine hands on (built in C from its maps,
    ``engines/libbpf/_zone_histograms.c``): a snapshot of thousands of zone
    histograms then makes two bytes objects each instead of an int object
    per bucket and two tuples of bounds, and the accumulator reads every
    zone's buckets and counts as arrays (:mod:`~smartos_telemetry.meters.accumulator`).
    Anything else asking for :attr:`lows`, :attr:`highs` or :attr:`counts`
    gets the tuples, made once; it equals, hashes and subtracts as the
    Histogram of the same buckets.
    """

    __slots__ = ("table", "bitmap", "packed", "_lows", "_highs", "_unpacked")

    @classmethod
    def of_buckets(cls, table, counts_by_index):
        """From ``{bucket index: count}`` (counts not 0)."""
        indexes = sorted(counts_by_index)
        bits = sum(1 << i for i in indexes)
        hist = cls.__new__(cls)
        hist.table = table
        hist.bitmap = bits.to_bytes(-(-len(table.lows) // 64) * 8, "little")
        hist.packed = struct.pack(f"={len(indexes)}Q", *map(counts_by_index.get, indexes))
        hist._lows = hist._highs = hist._unpacked = None
        return hist

    def _bounds(self):
        bits, indexes = int.from_bytes(self.bitmap, "little"), []
        while bits:
            lowest = bits & -bits
            indexes.append(lowest.bit_length() - 1)
            bits ^= lowest
        self._lows = tuple(map(self.table.lows.__getitem__, indexes))
        self._highs = tuple(map(self.table.highs.__getitem__, indexes))

    @property
    def lows(self):
        if self._lows is None:
            self._bounds()
        return self._lows

    @property
    def highs(self):
        if self._highs is None:
            self._bounds()
        return self._highs

    @property
    def counts(self):
        if self._unpacked is None:
            self._unpacked = struct.unpack(f"={len(self.packed) // 8}Q", self.packed)
        return self._unpacked


@dataclasses.dataclass(frozen=True)
class Average:
    """``avg()``: the mean is ``total / count``; both are kept exactly."""

    count: int
    total: int

    @property
    def value(self):
        return self.total / self.count if self.count else 0.0

    def minus(self, earlier):
        return Average(self.count - earlier.count, self.total - earlier.total)

    def as_dict(self):
        return {"count": self.count, "total": self.total, "value": self.value}


@dataclasses.dataclass(frozen=True)
class StdDev:
    """``stddev()``: population standard deviation of the recorded values."""

    count: int
    total: int
    sum_of_squares: int

    @property
    def value(self):
        if not self.count:
            return 0.0
        mean = self.total / self.count
        return math.sqrt(max(self.sum_of_squares / self.count - mean * mean, 0.0))

    def minus(self, earlier):
        return StdDev(
            self.count - earlier.count,
            self.total - earlier.total,
            self.sum_of_squares - earlier.sum_of_squares,
        )

    def as_dict(self):
        return {
            "count": self.count,
            "total": self.total,
            "sum_of_squares": self.sum_of_squares,
            "value": self.value,
        }


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """One named aggregation: its action and its rows ``key -> value``."""

    name: str
    action: str
    rows: dict

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown aggregating action {self.action!r}")

    def delta(self, earlier):
        """Rows holding what happened since ``earlier``.

        count, sum, avg, stddev and histograms subtract; min and max cannot
        be taken apart, so they keep their cumulative value.  Rows that did
        not change are left out.
        """
        if earlier is None:
            return self
        rows = {}
        for key, value in self.rows.items():
            before = earlier.rows.get(key)
            if before is None or self.action in ("min", "max"):
                if before != value:
                    rows[key] = value
                continue
            changed = value - before if isinstance(value, int) else value.minus(before)
            if changed != _ZERO.get(self.action, 0) and not _is_empty(changed):
                rows[key] = changed
        return Aggregation(self.name, self.action, rows)

    def rekeyed(self, new_key):
        """Rows under ``new_key(key)`` (rows mapped to None are left out), the
        values of rows that meet under one key merged as the action merges:
        counts, sums, averages, deviations and histograms add up; min and
        max keep the extreme."""
        rows = {}
        for key, value in self.rows.items():
            target = new_key(key)
            if target is None:
                continue
            if target in rows:
                value = merge_values(self.action, rows[target], value)
            rows[target] = value
        return Aggregation(self.name, self.action, rows)

    def as_dict(self):
        return {
            "name": self.name,
            "action": self.action,
            "rows": [
                {"keys": list(key), "value": value_as_json(value)}
                for key, value in sorted(self.rows.items(), key=_row_sort_key)
            ],
        }


_ZERO = {"avg": Average(0, 0), "stddev": StdDev(0, 0, 0)}


def merge_values(action, a, b):
    """One row's two values, merged as ``action`` merges: counts, sums,
    averages, deviations and histograms add up; min and max keep the
    extreme."""
    if action == "min":
        return min(a, b)
    if action == "max":
        return max(a, b)
    if isinstance(a, Histogram):
        return a.plus(b)
    if isinstance(a, Average):
        return Average(a.count + b.count, a.total + b.total)
    if isinstance(a, StdDev):
        return StdDev(a.count + b.count, a.total + b.total, a.sum_of_squares + b.sum_of_squares)
    return a + b


def without_first_keys(aggregations, first_keys):
    """``{name: Aggregation}`` less the rows whose first key is in ``first_keys``."""
    out = {}
    for name, agg in aggregations.items():
        if any(key and key[0] in first_keys for key in agg.rows):
            agg = Aggregation(name, agg.action, {
                key: value for key, value in agg.rows.items()
                if not (key and key[0] in first_keys)})
        out[name] = agg
    return out


def _is_empty(value):
    return isinstance(value, Histogram) and not value.counts


def _row_sort_key(item):
    key, _ = item
    return tuple((0, k, "") if isinstance(k, int) else (1, 0, k) for k in key)


def value_as_json(value):
    """A JSON-ready form of any snapshot value."""
    if isinstance(value, Histogram):
        return value.as_list()
    if isinstance(value, (Average, StdDev)):
        return value.as_dict()
    return value


@dataclasses.dataclass(frozen=True)
class EngineHealth:
    """Counters of trouble an engine met; all cumulative for its lifetime.

    ``drops`` and ``errors`` are keyed by kind (for example
    ``aggregation``, ``dynamic``, ``principal`` for DTrace drops;
    ``lost_events`` or ``map_full`` for bpftrace).
    """

    drops: dict = dataclasses.field(default_factory=dict)
    errors: dict = dataclasses.field(default_factory=dict)
    restarts: int = 0

    @property
    def total_drops(self):
        return sum(self.drops.values())

    @property
    def total_errors(self):
        return sum(self.errors.values())

@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Every aggregation of one script at one moment, cumulative since start.

    ``monotonic`` orders snapshots and measures intervals; ``wallclock`` is
    for display.  ``engine`` names the engine that produced it.
    """

    engine: str
    aggregations: dict
    health: EngineHealth = dataclasses.field(default_factory=EngineHealth)
    monotonic: float = dataclasses.field(default_factory=time.monotonic)
    wallclock: float = dataclasses.field(default_factory=time.time)

    def __getitem__(self, name):
        return self.aggregations[name]

    def get(self, name):
        return self.aggregations.get(name)

    def delta(self, earlier):
        """Per-interval values: what happened between ``earlier`` and this one."""
        if earlier is None:
            return self
        return dataclasses.replace(
            self,
            aggregations={
                name: agg.delta(earlier.aggregations.get(name))
                for name, agg in self.aggregations.items()
            },
        )

    def rekeyed(self, new_key):
        """Every aggregation's rows re-keyed (see :meth:`Aggregation.rekeyed`)."""
        return dataclasses.replace(self, aggregations={
            name: agg.rekeyed(new_key) for name, agg in self.aggregations.items()})

    def as_json(self):
        """One object per aggregation, as ``run-script --json`` prints them."""
        return [agg.as_dict() for _, agg in sorted(self.aggregations.items())]


def summed_health(healths):
    """One EngineHealth of several engines' (drops and errors by kind, restarts)."""
    drops, errors, restarts = {}, {}, 0
    for h in healths:
        for kind, n in h.drops.items():
            drops[kind] = drops.get(kind, 0) + n
        for kind, n in h.errors.items():
            errors[kind] = errors.get(kind, 0) + n
        restarts += h.restarts
    return EngineHealth(drops=drops, errors=errors, restarts=restarts)


class Snapshots(dict):
    """``{script: Snapshot}`` of one poll and ``health``, the engines' health
    counters summed once (:meth:`EngineSet.snapshot
    <smartos_telemetry.engines.engine_set.EngineSet.snapshot>` sums each
    engine once; several scripts may share one engine's snapshot).

    Made from a plain dict, ``health`` sums the distinct snapshots' own."""

    def __init__(self, by_script=(), health=None):
        super().__init__(by_script)
        if health is None:
            distinct = []
            for snap in self.values():
                if not any(snap is seen for seen in distinct):
                    distinct.append(snap)
            health = summed_health(s.health for s in distinct)
        self.health = health
