"""What the kernel-counter readers (SmartOS kstats, Linux cgroup files) share:
their running totals and how those outlive an agent restart.

The kernel keeps these counters, not the agent: while no agent runs they go
on counting.  So the state file keeps, with each zone's total, the last raw
value and the identity of what was read (a kstat's instance, name and
crtime; a cgroup's id): the next agent adds what the same kernel object
gained over the saved value, or, if it was re-created meanwhile (zone or
host reboot, a new cgroup under the same zone), all of its new value.
"""

import threading

from smartos_telemetry.meters.accumulator import Accumulator

CUMULATIVE = "cumulative"


class KernelCounterTotals:
    """One reader's per-meter accumulators and the identities of what it read.

    A reader names ``source`` (the accumulators' name prefix), ``meters``
    (meter name -> its meter, with ``type``) and ``identities_key`` (where
    :meth:`export` puts the identities), and holds ``self._lock`` while it
    folds a reading into the totals.
    """

    source = None
    meters = None
    identities_key = None

    def __init__(self, ttl, max_zones, clock):
        self.ttl = ttl
        self.max_zones = max_zones
        self.clock = clock
        self._accumulators = {}
        self._idents = {}  # key -> (identity of what was read, last seen)
        self._lock = threading.Lock()  # one fold at a time: the totals are shared

    def export(self):
        """What the next agent needs so that a restart loses nothing:
        ``{"counters": {meter: {key: Saved with the last raw value}},
        identities_key: {key: (identity, unseen)}}``."""
        with self._lock:
            now = self.clock()
            return {"counters": {name: acc.export(with_raw=True)
                                 for name, acc in self._accumulators.items()},
                    self.identities_key: {k: (ident, now - at)
                                          for k, (ident, at) in self._idents.items()}}

    def carry(self, saved):
        """Put back what :meth:`export` gave, before the first poll."""
        with self._lock:
            now = self.clock()
            for name, zones in saved.get("counters", {}).items():
                meter = self.meters.get(name)
                if meter is not None and meter.type == CUMULATIVE:
                    acc = self._acc(name)
                    for key, entry in zones.items():
                        if acc.carry(key, entry):
                            self._carried(name, key, entry)
            for key, (ident, unseen) in saved.get(self.identities_key, {}).items():
                self._idents.setdefault(key, (self._saved_identity(ident), now - unseen))

    def _carried(self, name, key, entry):
        """Hook: ``entry`` (a Saved) of meter ``name`` and zone ``key`` was taken back."""

    @staticmethod
    def _saved_identity(ident):
        """An identity as the state file gives it back, as :meth:`export` had it."""
        return ident

    def _acc(self, name):
        acc = self._accumulators.get(name)
        if acc is None:
            acc = self._accumulators[name] = Accumulator(
                f"{self.source}:{name}", ttl=self.ttl, max_zones=self.max_zones,
                clock=self.clock)
        return acc
