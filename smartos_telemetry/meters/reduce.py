"""From snapshots to meter intervals: the arithmetic the meters bill on.

:class:`SnapshotReducer` holds one accumulator per aggregation it reads
(:mod:`~smartos_telemetry.meters.accumulator`).  Each polling interval it
takes the latest snapshot of every script (cumulative since the engine
started) and returns an :class:`~smartos_telemetry.meters.intervals.Intervals`:
per meter, every zone's interval as columns, engine-neutral and
Ceilometer-neutral (``meters/intervals.py`` says what each column holds):

* distributions: percentiles and max of *this interval's* events (the
  accumulator's histogram delta), for zones with events in the interval;
  cumulative event counts and sums for every zone seen;
* counters: the accumulator's running total, which never goes backwards,
  and what the interval added;
* engine health: drops, errors and restarts per host.

Zone keys are passed through as the snapshots key them (cgroup id,
zonename or zoneid); naming them is the zone layer's job.  ``zones``, when
given, limits the result to those keys, so a zone that is not a known
tenant never gets samples.
"""

import operator
import time
from itertools import repeat

from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.accumulator import (
    COUNTER,
    Accumulator,
    HistogramAccumulator,
    Saved,
)
from smartos_telemetry.meters.intervals import HOST, Intervals, MeterIntervals, MeterSample
from smartos_telemetry.meters.percentiles import interval_stats
from smartos_telemetry.snapshot import Snapshots

__all__ = ["ESTIMATE_SUFFIX", "HOST", "MeterSample", "SnapshotReducer"]

#: the section of a meter's estimated sums in :meth:`SnapshotReducer.export`
ESTIMATE_SUFFIX = ".sum~"


class SnapshotReducer:
    """Meter intervals for one platform and engine, poll after poll."""

    def __init__(self, platform, engine, ttl=900.0, max_zones=10000, clock=time.monotonic):
        self.platform_engine = (platform, engine)
        self.meters = catalogue.meters_for(platform, engine)
        self.health_meters = [m for m in catalogue.CATALOGUE if m.kind == "health"]
        self._histogram_keys = {(m.name, m.sources[self.platform_engine].aggregation)
                                for m in self.meters if m.kind == "distribution"}
        self._ttl = ttl
        self._max_zones = max_zones
        self._clock = clock
        self._accumulators = {}
        self._estimated_sums = {}

    def _acc(self, key):
        """The accumulator of ``(meter name, aggregation)``: a histogram one for
        a distribution's own aggregation, a counter one otherwise."""
        acc = self._accumulators.get(key)
        if acc is None:
            kind = HistogramAccumulator if key in self._histogram_keys else Accumulator
            acc = self._accumulators[key] = kind(
                ":".join(key), ttl=self._ttl, max_zones=self._max_zones, clock=self._clock)
        return acc

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

    # -- one poll --------------------------------------------------------------------
    def reduce(self, snapshots, generation=0, zones=None):
        """``snapshots``: ``{script: Snapshot}``; returns the poll's
        :class:`~smartos_telemetry.meters.intervals.Intervals` (iterating it
        gives every :class:`MeterSample`)."""
        out = []
        for meter in self.meters:
            src = meter.sources[self.platform_engine]
            snap = snapshots.get(src.script)
            if snap is None:
                continue
            rows = self._zone_rows(snap, src.aggregation, zones)
            if meter.kind == "counter":
                out.append(MeterIntervals(meter, *self._acc((meter.name, src.aggregation)).fold(
                    rows, generation)))
                continue
            sums = None
            if src.sum_aggregation:
                sums = self._acc((meter.name, src.sum_aggregation)).update(
                    self._zone_rows(snap, src.sum_aggregation, zones), generation)
            out.append(self._distribution(meter, self._acc((meter.name, src.aggregation)).update(
                rows, generation), sums))
        out.extend(self._health(snapshots, generation))
        return Intervals(out)

    def _distribution(self, meter, update, sums):
        """One distribution meter's :class:`MeterIntervals` from its
        accumulator's update and, where the script keeps one, its exact sums."""
        stats = interval_stats(update.lows, update.highs, update.deltas)
        estimates = self._estimated_sums.setdefault(meter.name, {})
        zones = update.zones
        if sums is None:
            column = list(map(operator.add, map(estimates.get, zones, repeat(0.0)),
                              stats.midpoints))
            estimates.update(zip(zones, column, strict=True))
        else:
            column = []
            for zone, midpoints in zip(zones, stats.midpoints, strict=True):
                if zone in sums:
                    column.append(sums[zone].total)
                else:
                    value = estimates[zone] = estimates.get(zone, 0.0) + midpoints
                    column.append(value)
        # the estimates of zones the accumulator has forgotten go with them
        acc = self._acc((meter.name, meter.sources[self.platform_engine].aggregation))
        for zone in estimates.keys() - set(acc.zones()):
            del estimates[zone]
        p50, p95, p99 = stats.percentiles
        return MeterIntervals(meter, zones, update.totals.tolist(), update.added.tolist(),
                              sums=column, p50=p50, p95=p95, p99=p99, max=stats.max,
                              histograms=update.deltas, lows=update.lows, highs=update.highs)

    def _health(self, snapshots, generation):
        if not snapshots:
            return []
        # the engine set's one figure (each engine once, though one engine
        # may feed several scripts: the combined D program)
        health = snapshots.health if isinstance(snapshots, Snapshots) \
            else Snapshots(snapshots).health
        drops, errors, restarts = health.total_drops, health.total_errors, health.restarts
        values = {"telemetry.engine.drops": drops, "telemetry.engine.errors": errors,
                  "telemetry.engine.restarts": restarts}
        return [MeterIntervals(meter, *self._acc((meter.name, "host")).fold(
                    {HOST: values[meter.name]}, generation))
                for meter in self.health_meters]
