"""From snapshots to meter samples: the arithmetic the meters bill on.

:class:`SnapshotReducer` holds one :class:`~smartos_telemetry.meters.accumulator.Accumulator`
per aggregation it reads.  Each polling interval it takes the latest
snapshot of every script (cumulative since the engine started) and returns
:class:`MeterSample` objects, engine-neutral and Ceilometer-neutral:

* distributions: percentiles and max of *this interval's* events (the
  accumulator's histogram delta), gauges emitted only for zones with events
  in the interval; cumulative ``.count`` and ``.sum`` for every zone seen;
* counters: the accumulator's running total, which never goes backwards;
* engine health: drops, errors and restarts per host.

Zone keys are passed through as the scripts record them (cgroup id,
zonename or zoneid); naming them is the zone layer's job.  ``zones``, when
given, limits the samples to those keys, so a zone that is not a known
tenant never gets samples.
"""

import gc
import typing

from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.accumulator import COUNTER, Accumulator, Saved
from smartos_telemetry.meters.percentiles import interval_stats

HOST = None  # the zone of host-level samples
#: the section of a meter's estimated sums in :meth:`SnapshotReducer.export`
ESTIMATE_SUFFIX = ".sum~"

#: MeterSample((...)) without the keyword-argument layer: a poll of a busy
#: host makes tens of thousands
_sample = tuple.__new__


class MeterSample(typing.NamedTuple):
    """One sample, before it becomes a Ceilometer Sample (a named tuple:
    tens of thousands are made per poll on a busy host)."""

    name: str
    type: str  # gauge | cumulative
    unit: str
    volume: float
    zone: object  # a zone key, or HOST

    def as_dict(self):
        return self._asdict()


class SnapshotReducer:
    """Meter samples for one platform and engine, interval after interval."""

    def __init__(self, platform, engine, ttl=900.0, max_zones=10000, keep_histograms=False):
        """``keep_histograms``: keep the last poll's interval histogram of
        every busy zone in :attr:`interval_histograms`, ``{(meter name,
        zone): Histogram}`` (what smartos-dtrace-top draws)."""
        self.platform_engine = (platform, engine)
        self.keep_histograms = keep_histograms
        self.interval_histograms = {}
        self.meters = catalogue.meters_for(platform, engine)
        self.health_meters = [m for m in catalogue.CATALOGUE if m.kind == "health"]
        self._ttl = ttl
        self._max_zones = max_zones
        self._accumulators = {}
        self._estimated_sums = {}

    def _acc(self, key):
        acc = self._accumulators.get(key)
        if acc is None:
            acc = self._accumulators[key] = Accumulator(
                ":".join(key), ttl=self._ttl, max_zones=self._max_zones)
        return acc

    def scripts(self):
        return catalogue.scripts_for(*self.platform_engine)

    def forget(self, zones):
        """Drop every total of ``zones``: zones that are gone, once their last
        samples have been delivered (memory follows live zones, not every
        zone ever seen)."""
        zones = set(zones)
        for acc in self._accumulators.values():
            acc.forget(zones)
        for estimates in self._estimated_sums.values():
            for zone in zones & estimates.keys():
                del estimates[zone]

    # -- kept between agent runs ---------------------------------------------------
    def export(self):
        """``{section: {zone: Saved}}``: every running total a next agent needs
        to go on (see :meth:`carry`).  Sections are the accumulators' names
        and ``<meter>.sum~`` for the estimated sums of meters without a sum
        aggregation (their total is a float)."""
        out = {acc.name: acc.export() for acc in self._accumulators.values()}
        for name, estimates in self._estimated_sums.items():
            counts = out.get(self._count_section(name), {})
            out[name + ESTIMATE_SUFFIX] = {
                zone: Saved(value, COUNTER, counts[zone].unseen if zone in counts else 0.0)
                for zone, value in estimates.items()}
        return out

    def carry(self, section, zone, saved):
        """Put back one zone's total of one section (from :meth:`export` of a
        previous agent) before the zone is first seen; False if it was."""
        if section.endswith(ESTIMATE_SUFFIX):
            estimates = self._estimated_sums.setdefault(section[:-len(ESTIMATE_SUFFIX)], {})
            if zone in estimates:
                return False
            estimates[zone] = float(saved.total)
            return True
        meter, sep, aggregation = section.partition(":")
        if not sep:
            return False
        return self._acc((meter, aggregation)).carry(zone, saved)

    def _count_section(self, meter_name):
        for meter in self.meters:
            if meter.name == meter_name:
                return f"{meter.name}:{meter.sources[self.platform_engine].aggregation}"
        return None

    @staticmethod
    def _zone_rows(snapshot, aggregation, zones):
        agg = snapshot.get(aggregation) if snapshot else None
        if agg is None:
            return {}
        rows = {key[0]: value for key, value in agg.rows.items() if key}
        if zones is not None:
            rows = {z: v for z, v in rows.items() if z in zones}
        return rows

    def reduce(self, snapshots, generation=0, zones=None):
        """``snapshots``: ``{script: Snapshot}``; returns a list of MeterSample."""
        # a poll makes a few hundred thousand short-lived, acyclic objects;
        # the cyclic collector would rescan the long-lived snapshots many
        # times over (it doubled the poll time with 1,000 zones)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._reduce(snapshots, generation, zones)
        finally:
            if was_enabled:
                gc.enable()

    def _reduce(self, snapshots, generation, zones):
        out = []
        self.interval_histograms = {}
        for meter in self.meters:
            src = meter.sources[self.platform_engine]
            snap = snapshots.get(src.script)
            if snap is None:
                continue
            rows = self._zone_rows(snap, src.aggregation, zones)
            intervals = self._acc((meter.name, src.aggregation)).update(rows, generation)
            if meter.kind == "counter":
                out.extend(_sample(MeterSample, (meter.name, "cumulative", meter.unit, iv.total,
                                                 zone))
                           for zone, iv in intervals.items())
                continue
            sums = None
            if src.sum_aggregation:
                sums = self._acc((meter.name, src.sum_aggregation)).update(
                    self._zone_rows(snap, src.sum_aggregation, zones), generation)
            self._distributions(meter, intervals, sums, out)
            self._forget_estimates(meter.name, (meter.name, src.aggregation))
        out.extend(self._health(snapshots, generation))
        return out

    def _distributions(self, meter, intervals, sums, out):
        """Append each zone's samples of one distribution meter to ``out``.

        The busiest loop of a poll (zones x distribution meters), so the
        sample names are made once and the samples built as plain tuples."""
        unit = meter.unit
        p50, p95, p99, top, count, total = (f"{meter.name}.{s}" for s in (
            "p50", "p95", "p99", "max", "count", "sum"))
        estimates = self._estimated_sums.setdefault(meter.name, {})
        for zone, interval in intervals.items():
            stats = interval_stats(interval.delta)
            midpoints = 0.0
            if stats is not None:
                if self.keep_histograms:
                    self.interval_histograms[(meter.name, zone)] = interval.delta
                out += (_sample(MeterSample, (p50, "gauge", unit, stats[0], zone)),
                        _sample(MeterSample, (p95, "gauge", unit, stats[1], zone)),
                        _sample(MeterSample, (p99, "gauge", unit, stats[2], zone)),
                        _sample(MeterSample, (top, "gauge", unit, stats[3], zone)))
                midpoints = stats[4]
            if sums is not None and zone in sums:
                value = sums[zone].total
            else:
                value = estimates[zone] = estimates.get(zone, 0.0) + midpoints
            out += (_sample(MeterSample, (count, "cumulative", "event", interval.total, zone)),
                    _sample(MeterSample, (total, "cumulative", unit, value, zone)))

    def _forget_estimates(self, name, acc_key):
        """Drop the estimated sums of zones the accumulator has forgotten."""
        estimates = self._estimated_sums.get(name, {})
        acc = self._accumulators[acc_key]
        for zone in [z for z in estimates if z not in acc]:
            del estimates[zone]

    def _health(self, snapshots, generation):
        if not snapshots:
            return []
        # one engine may feed several scripts (the combined D program): count
        # each snapshot's health once
        unique = {id(s): s for s in snapshots.values()}.values()
        drops = sum(s.health.total_drops for s in unique)
        errors = sum(s.health.total_errors for s in unique)
        restarts = sum(s.health.restarts for s in unique)
        values = {"telemetry.engine.drops": drops, "telemetry.engine.errors": errors,
                  "telemetry.engine.restarts": restarts}
        out = []
        for meter in self.health_meters:
            iv = self._acc((meter.name, "host")).update({HOST: values[meter.name]}, generation)
            out.append(MeterSample(meter.name, "cumulative", meter.unit, iv[HOST].total, HOST))
        return out
