"""From an engine's cumulative snapshots to per-zone interval values and
counters that never go backwards.

An engine's aggregations are cumulative since *that engine* started.  An
engine that dies and is restarted starts again from zero, and a zone's
counters would then jump backwards.  :class:`Accumulator` keeps, per zone:

* the last raw value it saw from the current engine (the baseline),
* a running total that only grows: every interval adds the events since
  the baseline, and after a restart the new engine's values count from zero.

Each :meth:`Accumulator.update` returns, per zone seen in the snapshot, the
interval's delta (an ``int`` or a :class:`Histogram` of just this interval's
events, which percentiles are read from) and the running total (a count of
events for histograms, the value for counters).

Agent restarts: :meth:`Accumulator.export` gives what the totals need to go
on in the next agent (each zone's total, the kind of value, how long it has
been unseen and, for a source that keeps counting while the agent is away --
a kernel kstat -- the last raw value); :meth:`Accumulator.carry` puts a zone
back before it is first seen.

Zone churn: a zone appears as soon as a snapshot has it; a zone missing from
snapshots for ``ttl`` seconds is forgotten.  Memory is bounded by
``max_zones`` zones per aggregation (the least recently seen go first, with
a warning); each zone keeps one raw value, so the bound is ``max_zones``
histograms of at most a few hundred buckets (about 2,000 zones x 100
non-empty buckets = 200,000 buckets, some 20 MB of Python objects).
"""

import time
import typing

from oslo_log import log as logging

from smartos_telemetry.snapshot import Histogram

LOG = logging.getLogger(__name__)


class Interval(typing.NamedTuple):
    """One zone's change over one polling interval.

    ``delta``: what happened in the interval (int, or Histogram of the
    interval's events).  ``total``: the running total, never decreasing (an
    int: the value for counters, the number of events for histograms).
    """

    delta: object
    total: int


#: Interval((...)) without the keyword-argument layer (one per zone per poll)
_interval = tuple.__new__


def _size(value):
    """Events in a histogram, or the value of a counter."""
    return value.count if isinstance(value, Histogram) else value


def _empty_like(value):
    return Histogram(()) if isinstance(value, Histogram) else 0


#: the kinds of value a zone's raw value may be, as :meth:`Accumulator.export`
#: names them
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


#: Saved((...)) without the keyword-argument layer (one per zone per meter per poll)
_saved = tuple.__new__


class _ZoneState:
    __slots__ = ("raw", "total", "seen")

    def __init__(self, raw, total, seen):
        self.raw, self.total, self.seen = raw, total, seen


class Accumulator:
    """Running per-zone totals for one aggregation (count, sum or histogram).

    ``rows`` handed to :meth:`update` map a zone key to the engine's
    cumulative value for that zone.  Values must not decrease while one
    engine lives; a value that does (the engine's map was cleared, a
    counter wrapped) is taken as a fresh start for that zone, as is every
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
        last raw values (only a counter's: a source that keeps counting)."""
        now = self._clock()
        out = {}
        for zone, state in self._zones.items():
            if isinstance(state.raw, Histogram):
                out[zone] = _saved(Saved, (state.total, HISTOGRAM, now - state.seen, None))
            else:
                out[zone] = _saved(Saved, (state.total, COUNTER, now - state.seen,
                                           state.raw if with_raw else None))
        return out

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
        if saved.raw is not None:
            raw = saved.raw
        else:
            raw = Histogram(()) if saved.kind == HISTOGRAM else 0
        self._zones[zone] = _ZoneState(raw, int(saved.total), self._clock() - saved.unseen)
        return True

    def update(self, rows, generation=0):
        """Fold one cumulative snapshot in; return ``{zone: Interval}``."""
        now = self._clock()
        if generation != self._generation:
            # the first generation keeps what carry() put back: those
            # baselines are meant for it
            if self._generation is not None:
                LOG.info("%s: engine restarted (generation %s -> %s); counting on from "
                         "the running totals", self.name, self._generation, generation)
                for state in self._zones.values():
                    state.raw = _empty_like(state.raw)
            self._generation = generation
        out = {}
        zones = self._zones
        for zone, raw in rows.items():
            state = zones.get(zone)
            if state is None:
                # a zone first seen now: everything the engine has for it
                # happened since the engine started, i.e. after our baseline
                state = zones[zone] = _ZoneState(_empty_like(raw), 0, now)
            state.seen = now
            if isinstance(raw, Histogram):
                delta = raw.minus(state.raw)  # no buckets when idle
                counts = delta.counts
                if not counts:
                    out[zone] = _interval(Interval, (delta, state.total))
                    continue
                added, backwards = sum(counts), min(counts) < 0
            else:
                delta = raw - state.raw
                if not delta:
                    out[zone] = _interval(Interval, (0, state.total))
                    continue
                added, backwards = delta, delta < 0
            if backwards:
                LOG.info("%s: zone %s went backwards; taking it as a fresh start",
                         self.name, zone)
                delta = raw
                added = _size(raw)
            state.raw = raw
            state.total += added
            out[zone] = _interval(Interval, (delta, state.total))
        self._expire(now)
        return out

    def _expire(self, now):
        gone = [z for z, s in self._zones.items() if now - s.seen > self.ttl]
        for zone in gone:
            del self._zones[zone]
        if gone:
            LOG.debug("%s: forgot %d zones unseen for %.0f s", self.name, len(gone), self.ttl)
        excess = len(self._zones) - self.max_zones
        if excess > 0:
            oldest = sorted(self._zones, key=lambda z: self._zones[z].seen)[:excess]
            for zone in oldest:
                del self._zones[zone]
            LOG.warning("%s: more than %d zones; forgot the %d least recently seen",
                        self.name, self.max_zones, excess)
