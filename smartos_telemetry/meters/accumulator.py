"""From an engine's cumulative snapshots to per-zone interval values and
counters that never go backwards.

An engine's aggregations are cumulative since *that engine* started.  An
engine that dies and is restarted starts again from zero, and a zone's
counters would then jump backwards.  An accumulator keeps, per zone:

* the last raw value it saw from the current engine (the baseline),
* a running total that only grows: every interval adds the events since
  the baseline, and after a restart the new engine's values count from zero.

Two kinds, the same rules:

* :class:`Accumulator` -- counters (``count()``, ``sum()``, a kstat): each
  :meth:`Accumulator.update` returns, per zone seen in the snapshot, an
  :class:`Interval`: the interval's delta and the running total (exact
  Python ints).
* :class:`HistogramAccumulator` -- distributions: every zone of one
  aggregation at once, as rows of one ``int64`` array over one bucket layout
  (the union of the buckets its zones have used), so that a poll's
  differences, resets and totals are a few array operations whatever the
  number of zones.  :meth:`HistogramAccumulator.update` returns a
  :class:`HistogramUpdate`: each zone's interval histogram and event total.

Agent restarts: ``export`` gives what the totals need to go on in the next
agent (each zone's total, the kind of value, how long it has been unseen
and, for a source that keeps counting while the agent is away -- a kernel
kstat -- the last raw value); ``carry`` puts a zone back before it is first
seen.

Zone churn: a zone appears as soon as a snapshot has it; a zone missing from
snapshots for ``ttl`` seconds is forgotten.  Memory is bounded by
``max_zones`` zones per aggregation (the least recently seen go first, with
a warning); a histogram zone keeps one row of 8 bytes per bucket of its
aggregation's layout (a few hundred buckets: 2,000 zones of 600 buckets are
under 10 MB per aggregation).
"""

import itertools
import operator
import time
import typing

import numpy as np
from oslo_log import log as logging

from smartos_telemetry.snapshot import INT64_MAX, Histogram, PackedHistogram

LOG = logging.getLogger(__name__)

_LOWS, _HIGHS, _COUNTS = (operator.attrgetter(name) for name in ("lows", "highs", "counts"))
_PACKED, _BITMAP, _TABLE = (operator.attrgetter(name) for name in ("packed", "bitmap", "table"))


def _one_table(hists):
    """The BucketTable all of ``hists`` index (packed histograms of one
    engine), else None."""
    if not hists or type(hists[0]) is not PackedHistogram:
        return None
    table = hists[0].table
    if all(type(h) is PackedHistogram for h in hists) and \
            all(t is table for t in map(_TABLE, hists)):
        return table
    return None


def flat_counts(hists, count):
    """Every histogram's counts end to end, as ``count`` int64s.

    Packed histograms (the libbpf engine's) are joined as bytes and read as
    one array, with no int object per bucket; any other histogram among
    them has its counts unpacked.  A count past int64 raises
    OverflowError, as it would for a tuple of ints."""
    if all(type(h) is PackedHistogram for h in hists):
        raw = np.frombuffer(b"".join(map(_PACKED, hists)), dtype=np.uint64)
        if raw.size != count:
            raise ValueError(f"{raw.size} packed counts, {count} buckets")
        if raw.size and int(raw.max()) > INT64_MAX:
            raise OverflowError("a bucket count past int64")
        return raw.astype(np.int64)
    return np.fromiter(itertools.chain.from_iterable(map(_COUNTS, hists)),
                       dtype=np.int64, count=count)


class Interval(typing.NamedTuple):
    """One zone's change over one polling interval (a counter's).

    ``delta``: what happened in the interval; ``total``: the running total,
    never decreasing.
    """

    delta: int
    total: int


#: the kinds of value a zone's raw value may be, as ``export`` names them
HISTOGRAM, COUNTER = "h", "c"


class Saved(typing.NamedTuple):
    """One zone of an accumulator, as saved between agent runs.

    ``total``: the running total; ``kind``: HISTOGRAM or COUNTER; ``unseen``:
    seconds since a snapshot last had the zone (the zone's ttl goes on from
    there); ``raw``: the last raw value, for a source whose counting goes on
    while the agent is away (None: the next source starts from zero).
    """

    total: int
    kind: str
    unseen: float
    raw: object = None


class _ZoneState:
    __slots__ = ("raw", "total", "seen")

    def __init__(self, raw, total, seen):
        self.raw, self.total, self.seen = raw, total, seen


class Accumulator:
    """Running per-zone totals for one counter aggregation (count or sum).

    ``rows`` handed to :meth:`update` map a zone key to the engine's
    cumulative value (an ``int``) for that zone.  Values must not decrease
    while one engine lives; a value that does (the engine's map was cleared,
    a counter wrapped) is taken as a fresh start for that zone, as is every
    value after ``generation`` changes (a restarted engine).
    """

    def __init__(self, name, ttl=900.0, max_zones=10000, clock=time.monotonic):
        self.name = name
        self.ttl = ttl
        self.max_zones = max_zones
        self._clock = clock
        self._zones = {}
        self._generation = None

    def __len__(self):
        return len(self._zones)

    def __contains__(self, zone):
        return zone in self._zones

    def zones(self):
        return list(self._zones)

    def total(self, zone):
        state = self._zones.get(zone)
        return state.total if state else None

    def forget(self, zones):
        """Drop the state of ``zones`` (gone, their last interval delivered)."""
        for zone in zones:
            self._zones.pop(zone, None)

    def export(self, with_raw=False):
        """``{zone: Saved}`` of every zone remembered; ``with_raw``: with the
        last raw values (a source that keeps counting)."""
        now = self._clock()
        return {zone: Saved(state.total, COUNTER, now - state.seen,
                            state.raw if with_raw else None)
                for zone, state in self._zones.items()}

    def carry(self, zone, saved):
        """Put back a zone a previous agent saved (:class:`Saved`), before this
        accumulator has seen it; returns False (and changes nothing) if it has.

        Its total is the base the next values add to.  Without ``raw`` the
        next value counts in full (a new engine starts from zero: nothing it
        reports was counted before); with ``raw`` only what exceeds it does
        (the same kstat, which kept counting).  The zone's ttl goes on from
        ``unseen``: the agent's downtime does not count.
        """
        if zone in self._zones:
            return False
        raw = saved.raw if saved.raw is not None else 0
        self._zones[zone] = _ZoneState(raw, int(saved.total), self._clock() - saved.unseen)
        return True

    def update(self, rows, generation=0):
        """Fold one cumulative snapshot in; return ``{zone: Interval}``."""
        zones, totals, deltas = self.fold(rows, generation)
        return {zone: Interval(delta, total)
                for zone, total, delta in zip(zones, totals, deltas, strict=True)}

    def fold(self, rows, generation=0):
        """:meth:`update` as columns: ``(zones, totals, deltas)``, three lists
        in the order of ``rows``."""
        now = self._clock()
        if generation != self._generation:
            # the first generation keeps what carry() put back: those
            # baselines are meant for it
            if self._generation is not None:
                _log_restart(self.name, self._generation, generation)
                for state in self._zones.values():
                    state.raw = 0
            self._generation = generation
        deltas, totals = [], []
        add_delta, add_total = deltas.append, totals.append
        zones = self._zones
        for zone, raw in rows.items():
            state = zones.get(zone)
            if state is None:
                # a zone first seen now: everything the engine has for it
                # happened since the engine started, i.e. after our baseline
                state = zones[zone] = _ZoneState(0, 0, now)
            state.seen = now
            delta = raw - state.raw
            if delta < 0:
                LOG.info("%s: zone %s went backwards; taking it as a fresh start",
                         self.name, zone)
                delta = raw
            state.raw = raw
            state.total = total = state.total + delta
            add_delta(delta)
            add_total(total)
        _expire(self, [zone for zone, state in zones.items() if now - state.seen > self.ttl],
                lambda: {zone: state.seen for zone, state in zones.items()})
        return list(rows), totals, deltas

    def _drop(self, zones):
        for zone in zones:
            del self._zones[zone]


def _log_restart(name, before, after):
    LOG.info("%s: engine restarted (generation %s -> %s); counting on from the running "
             "totals", name, before, after)


def _expire(acc, gone, seen):
    """Forget ``gone`` (zones of ``acc`` unseen for its ttl), then the least
    recently seen beyond its ``max_zones``; ``seen()``: ``{zone: last seen}``
    in the order the zones were added."""
    if gone:
        acc._drop(gone)
        LOG.debug("%s: forgot %d zones unseen for %.0f s", acc.name, len(gone), acc.ttl)
    excess = len(acc) - acc.max_zones
    if excess > 0:
        kept = seen()
        acc._drop(sorted(kept, key=kept.__getitem__)[:excess])
        LOG.warning("%s: more than %d zones; forgot the %d least recently seen",
                    acc.name, acc.max_zones, excess)


class HistogramUpdate:
    """What one :meth:`HistogramAccumulator.update` gives, row ``i`` for
    ``zones[i]`` (the snapshot's zones, in its order).

    ``deltas``: a 2-D ``int64`` array, each zone's events of the interval
    per bucket of the layout ``lows``/``highs`` (tuples of ``int``);
    ``added``: the interval's events per zone; ``totals``: each zone's
    running event count after it (both 1-D ``int64``).
    """

    __slots__ = ("zones", "deltas", "added", "totals", "lows", "highs")

    def __init__(self, zones, deltas, added, totals, lows, highs):
        self.zones, self.deltas, self.added, self.totals = zones, deltas, added, totals
        self.lows, self.highs = lows, highs

    def __getitem__(self, zone):
        """``zone``'s :class:`Interval`: its interval :class:`Histogram` (the
        buckets with events) and its total."""
        i = self.zones.index(zone)
        counts = self.deltas[i]
        filled = counts.nonzero()[0].tolist()
        delta = Histogram((self.lows[b], self.highs[b], int(counts[b])) for b in filled)
        return Interval(delta, int(self.totals[i]))


class HistogramAccumulator:
    """Running per-zone event totals for one histogram aggregation, every zone
    at once.

    ``rows`` handed to :meth:`update` map a zone key to the engine's
    cumulative :class:`Histogram` for that zone.  A zone whose histogram lost
    events in any bucket since the last poll (the engine's map was cleared)
    starts afresh, as does every zone after ``generation`` changes (a
    restarted engine): its interval is then everything the new value holds.

    State, one row per zone (in the order zones were first seen): the last
    raw counts per bucket of the layout, the running total and when the
    zone was last seen.  The layout is every bucket (``(low, high)``) a
    zone has used, ascending; a bucket never seen before widens it.
    """

    def __init__(self, name, ttl=900.0, max_zones=10000, clock=time.monotonic):
        self.name = name
        self.ttl = ttl
        self.max_zones = max_zones
        self._clock = clock
        self._generation = None
        self._rows = {}  # zone -> row
        self._raw = np.zeros((0, 0), dtype=np.int64)
        self._totals = np.zeros(0, dtype=np.int64)
        self._seen = np.zeros(0)
        self.lows, self.highs = (), ()
        self._columns = {}  # (low, high) -> column
        self._zone_columns = {}  # zone -> (lows, highs, columns) of its last histogram
        # the last poll's zones, their buckets and _flat_columns
        self._last_zones = self._last_lows = self._last_highs = self._last_flat = None
        self._last_bitmaps = None  # instead of lows and highs: packed histograms' layouts
        self._last_bounds = None
        self._table_column_cache = None  # (BucketTable, its buckets' columns)

    def __len__(self):
        return len(self._rows)

    def __contains__(self, zone):
        return zone in self._rows

    def zones(self):
        return list(self._rows)

    def total(self, zone):
        row = self._rows.get(zone)
        return None if row is None else int(self._totals[row])

    def forget(self, zones):
        """Drop the state of ``zones`` (gone, their last interval delivered)."""
        gone = [zone for zone in zones if zone in self._rows]
        if gone:
            self._drop(gone)

    def export(self, with_raw=False):
        """``{zone: Saved}`` of every zone remembered (never a raw value: the
        next engine counts from zero)."""
        unseen = (self._clock() - self._seen).tolist()
        totals = self._totals.tolist()
        return {zone: Saved(totals[row], HISTOGRAM, unseen[row])
                for zone, row in self._rows.items()}

    def carry(self, zone, saved):
        """Put back a zone a previous agent saved, before this accumulator has
        seen it (False, and nothing changes, if it has): its total is the
        base the next engine's events add to; its ttl goes on from
        ``unseen``."""
        if zone in self._rows:
            return False
        self._add([zone], self._clock() - saved.unseen)
        self._totals[self._rows[zone]] = int(saved.total)
        return True

    def update(self, rows, generation=0):
        """Fold one cumulative snapshot in; return a :class:`HistogramUpdate`."""
        now = self._clock()
        if generation != self._generation:
            # the first generation keeps what carry() put back (empty
            # baselines, as every histogram's is after a restart)
            if self._generation is not None:
                _log_restart(self.name, self._generation, generation)
                self._raw[:] = 0
            self._generation = generation
        zones = list(rows)
        hists = list(rows.values())
        new_zones = [zone for zone in zones if zone not in self._rows]
        if new_zones:
            # a zone first seen now: everything the engine has for it
            # happened since the engine started, i.e. after our baseline
            self._add(new_zones, now)
        flat, same = self._flat_columns(zones, hists)
        try:
            counts = flat_counts(hists, len(flat))
        except (OverflowError, TypeError):
            self._last_zones = None  # this poll's buckets never reached the state
            raise
        if zones == list(self._rows):  # every zone remembered, in row order
            index = slice(None)
        else:
            index = np.fromiter(map(self._rows.__getitem__, zones), dtype=np.intp,
                                count=len(zones))
        steady = self._steady(flat, counts, index) if same else None
        if steady is not None:
            deltas, added = steady
            self._totals[index] += added
            totals = self._totals[index].copy()
            self._seen[index] = now
            return self._done(now, HistogramUpdate(zones, deltas, added, totals, self.lows,
                                                   self.highs))
        raw = np.zeros((len(hists), len(self.lows)), dtype=np.int64)
        raw.ravel()[flat] = counts
        deltas = raw - self._raw[index]
        backwards = (deltas < 0).any(axis=1)
        if backwards.any():
            for i in np.flatnonzero(backwards).tolist():
                LOG.info("%s: zone %s went backwards; taking it as a fresh start",
                         self.name, zones[i])
            deltas[backwards] = raw[backwards]
        added = deltas.sum(axis=1)
        self._raw[index] = raw
        self._totals[index] += added
        totals = self._totals[index].copy()
        self._seen[index] = now
        return self._done(now, HistogramUpdate(zones, deltas, added, totals, self.lows,
                                               self.highs))

    def _done(self, now, update):
        """``update``, once the zones unseen for the ttl (and beyond
        ``max_zones``) are forgotten."""
        stale = np.flatnonzero(now - self._seen > self.ttl).tolist()
        if stale:
            every = list(self._rows)
            stale = [every[row] for row in stale]
        _expire(self, stale, lambda: dict(zip(self._rows, self._seen.tolist(), strict=True)))
        return update

    def _steady(self, flat, counts, index):
        """``(deltas, added)`` of a poll with the last poll's zones and their
        last buckets (the usual poll), or None if a zone went backwards.
        Each zone's row of the state then holds its last values at exactly
        these buckets (and zeros elsewhere: a row is written whole, zeroed
        or new), so only these are read and written.  ``index``: each
        snapshot row's state row (a slice: the same)."""
        bounds, width = self._last_bounds, len(self.lows)
        at = flat
        if not isinstance(index, slice):
            moved = (index - np.arange(len(index), dtype=np.intp)) * width
            at = flat + np.repeat(moved, np.diff(bounds))
        step = counts - self._raw.ravel()[at]
        if (step < 0).any():
            return None
        self._raw.ravel()[at] = counts
        deltas = np.zeros((len(bounds) - 1, width), dtype=np.int64)
        deltas.ravel()[flat] = step
        running = np.concatenate(([0], np.cumsum(step)))
        return deltas, running[bounds[1:]] - running[bounds[:-1]]

    def _flat_columns(self, zones, hists):
        """Where each bucket of each histogram goes in the 2-D array (flat,
        row by row), and whether the zones and their buckets are the last
        poll's (then so is the answer: the usual case)."""
        table = _one_table(hists)
        if table is not None:
            return self._flat_columns_of_table(zones, hists, table)
        self._last_bitmaps = None
        lows, highs = list(map(_LOWS, hists)), list(map(_HIGHS, hists))
        if zones == self._last_zones and lows == self._last_lows and highs == self._last_highs:
            return self._last_flat, True
        columns = self._columns_of(zones, hists)
        if columns is None:  # a bucket never seen before
            self._widen({b for h in hists for b in zip(h.lows, h.highs, strict=True)})
            columns = self._columns_of(zones, hists)
        sizes = np.fromiter(map(len, columns), dtype=np.intp, count=len(columns))
        if columns:
            flat = np.concatenate(columns) + np.repeat(
                np.arange(len(columns), dtype=np.intp) * len(self.lows), sizes)
        else:
            flat = np.zeros(0, dtype=np.intp)
        self._last_zones, self._last_lows, self._last_highs = zones, lows, highs
        self._last_flat = flat
        self._last_bounds = np.concatenate(([0], np.cumsum(sizes)))  # each zone's entries
        return flat, False

    def _flat_columns_of_table(self, zones, hists, table):
        """:meth:`_flat_columns` of packed histograms of one bucket table:
        their layouts are their bitmaps, read for every zone at once."""
        bitmaps = list(map(_BITMAP, hists))
        if zones == self._last_zones and bitmaps == self._last_bitmaps:
            return self._last_flat, True
        words = np.frombuffer(b"".join(bitmaps), dtype=np.uint8).reshape(len(hists), -1)
        flags = np.unpackbits(words, axis=1, bitorder="little")[:, :len(table.lows)]
        rows, buckets = np.nonzero(flags)  # row by row, each row's buckets ascending
        columns = self._table_columns(table)[buckets]
        if (columns < 0).any():  # a bucket never seen before
            self._widen({(table.lows[b], table.highs[b])
                         for b in np.unique(buckets[columns < 0]).tolist()})
            columns = self._table_columns(table)[buckets]
        sizes = np.bincount(rows, minlength=len(hists))
        flat = columns + rows * len(self.lows)
        self._last_zones, self._last_bitmaps = zones, bitmaps
        self._last_lows = self._last_highs = None
        self._last_flat = flat
        self._last_bounds = np.concatenate(([0], np.cumsum(sizes)))
        return flat, False

    def _table_columns(self, table):
        """Each bucket of ``table``'s column in the layout (-1: not in it)."""
        if self._table_column_cache is None or self._table_column_cache[0] is not table:
            columns = self._columns
            self._table_column_cache = (table, np.fromiter(
                (columns.get(b, -1) for b in zip(table.lows, table.highs, strict=True)),
                dtype=np.intp, count=len(table.lows)))
        return self._table_column_cache[1]

    def _columns_of(self, zones, hists):
        """Each histogram's buckets as layout columns (an ``intp`` array per
        zone), or None if one has a bucket the layout lacks.  A zone's
        buckets are most often those of its last poll: those are looked up
        once."""
        out = []
        known = self._zone_columns
        for zone, hist in zip(zones, hists, strict=True):
            last = known.get(zone)
            if last is not None and last[0] == hist.lows and last[1] == hist.highs:
                out.append(last[2])
                continue
            try:
                columns = np.fromiter(map(self._columns.__getitem__,
                                          zip(hist.lows, hist.highs, strict=True)),
                                      dtype=np.intp, count=len(hist.lows))
            except KeyError:
                return None
            known[zone] = (hist.lows, hist.highs, columns)
            out.append(columns)
        return out

    def _widen(self, buckets):
        """Add ``buckets`` to the layout, keeping it ascending."""
        layout = sorted(set(self._columns) | buckets)
        columns = {b: i for i, b in enumerate(layout)}
        raw = np.zeros((self._raw.shape[0], len(layout)), dtype=np.int64)
        if self._columns:
            raw[:, [columns[b] for b in zip(self.lows, self.highs, strict=True)]] = self._raw
        self._raw, self._columns = raw, columns
        self.lows = tuple(low for low, _ in layout)
        self.highs = tuple(high for _, high in layout)
        self._zone_columns.clear()
        self._table_column_cache = None
        self._last_zones = None

    def _add(self, zones, seen):
        """New rows for ``zones``: no events, a total of 0, seen at ``seen``."""
        first = len(self._rows)
        for i, zone in enumerate(zones):
            self._rows[zone] = first + i
        n = len(zones)
        self._raw = np.concatenate([self._raw, np.zeros((n, self._raw.shape[1]), np.int64)])
        self._totals = np.concatenate([self._totals, np.zeros(n, np.int64)])
        self._seen = np.concatenate([self._seen, np.full(n, seen)])

    def _drop(self, zones):
        for zone in zones:
            del self._rows[zone]
            self._zone_columns.pop(zone, None)
        keep = np.fromiter(self._rows.values(), dtype=np.intp, count=len(self._rows))
        self._raw, self._totals, self._seen = self._raw[keep], self._totals[keep], self._seen[keep]
        self._rows = {zone: i for i, zone in enumerate(self._rows)}
