"""One telemetry service per agent process, shared by every pollster.

It owns the engine (started lazily on the first poll, reused across
polling cycles -- never a compile per poll -- and stopped at exit), the zone
layer and the snapshot reducer.  Each polling cycle takes one snapshot of
every script and reduces it once; the pollsters of that cycle share the
result through the ``cache`` dict ceilometer hands them.

Engines per platform (:class:`~smartos_telemetry.engines.engine_set.EngineSet`):

* bpftrace (Linux): one supervised child per shipped ``.bt`` script;
* libdtrace (SmartOS; Linux with Oracle DTrace): one consumer running the
  platform's ``.d`` scripts combined into one program (Oracle DTrace allows
  one consumer per process).

When the engine cannot run (no privileges, nothing installed, a script the
kernel refuses), the service logs one line naming the cause and the fix
and raises :class:`EngineUnavailable` / :class:`ScriptError` to the
pollsters, which turn it into ``PollsterPermanentError`` for their
resources: the agent and every other pollster keep running.
"""

import atexit
import os
import threading
import time

from oslo_log import log as logging

from smartos_telemetry import platform as platforms
from smartos_telemetry.attribution import Attribution, ZoneKeys
from smartos_telemetry.engines.engine_set import EngineSet
from smartos_telemetry.errors import ConfigError, EngineDied, TelemetryError
from smartos_telemetry.meters.reduce import HOST, SnapshotReducer
from smartos_telemetry.meters.saved_totals import HOST_KEY, SavedTotals, StateFile
from smartos_telemetry.polling import opts
from smartos_telemetry.zones import owners

LOG = logging.getLogger(__name__)

CACHE_KEY = "smartos_telemetry.samples"

_SERVICES = {}
_SERVICES_LOCK = threading.Lock()


def get_service(conf):
    """The process's service for ``conf`` (made on first use)."""
    with _SERVICES_LOCK:
        service = _SERVICES.get(id(conf))
        if service is None:
            service = _SERVICES[id(conf)] = TelemetryService(conf)
        return service


class TelemetryService:
    def __init__(self, conf):
        self.conf = conf
        self.opts = opts.register(conf)
        self.owners = owners.OwnerRules()
        try:
            opts.validate(conf)
            self.owners = owners.load(self.opts.owners_file)
            bad_config = None
        except ConfigError as exc:
            bad_config = exc
            LOG.error("smartos-telemetry: %s. The zone meters are disabled until the agent "
                      "restarts with a corrected configuration.", exc)
        else:
            (LOG.info if self.owners.configured else LOG.warning)(
                "smartos-telemetry: %s", self.owners.summary())
        self.platform = platforms.named("auto" if bad_config else self.opts.platform)
        self.host = getattr(conf, "host", None) or os.uname().nodename
        self._lock = threading.Lock()
        self._engines = None
        self._engine_name = None
        self._failure = bad_config
        self._generation = 0
        self._reducer = None
        self._zones = None
        self._kstats = None
        self._cgroups = None  # Linux: the cgroup-v2 counters (cgroup_reading_for_cycle)
        self._attribution = None  # made with the zone layer (zone_layer)
        # Linux, reclaiming what is gone (_reclaim): the zones of the last walk,
        # zones gone since whose last samples are not delivered yet, the cgroup
        # ids of the last snapshot's rows
        self._live = {}
        self._departing = {}
        self._seen_ids = set()
        self._raw_snapshots = {}
        # the running totals a previous agent saved, and where this one saves them
        self._state = StateFile("" if bad_config else self.opts.state_file)
        self._saved = self._state.load()
        self._saved_at = time.monotonic()
        self._zone_ids = {}  # zone key -> (resource id, "id" | "zonename")
        atexit.register(self.stop)

    # -- zones ----------------------------------------------------------------
    def zone_layer(self):
        if self._zones is None:
            self._zones = self.platform.zone_layer(self.opts)
        return self._zones

    def attribution(self):
        """The attribution step: rows of a zone's child cgroups counted under
        the zone (where the platform rolls them up), owners remembered."""
        if self._attribution is None:
            resolve = self.zone_layer().resolve if self.platform.rolls_up_children else None
            self._attribution = Attribution(resolve)
        return self._attribution

    def zones(self):
        """The live zones; on Linux also the zones gone since the last walk
        until their last samples have been delivered (once)."""
        if isinstance(self._failure, ConfigError):
            return []  # the zone layer's own options may be the bad ones
        live = self.owners.apply(self.zone_layer().zones())  # every zone with an owner
        if not self.platform.tracks_departed_zones:
            return live
        with self._lock:
            if not _walk_found_root(self.zone_layer()):
                return live  # a failed walk says nothing of what is gone
            now = {zone.id: zone for zone in live}
            for zone_id, zone in self._live.items():
                if zone_id not in now:
                    self._departing.setdefault(zone_id, zone)
            self._live = now
            return live + [z for i, z in self._departing.items() if i not in now]

    # -- engine -----------------------------------------------------------------
    def _start(self):
        here = self.platform
        name, why = here.choose_engine(self.opts.engine)
        LOG.info("smartos-telemetry: %s engine on %s (%s)", name, here.name, why)
        engines = EngineSet(name, here.scripts(name), options=self.opts.engine_options,
                            snapshot_timeout=self.opts.snapshot_timeout,
                            label=f"{here.name} meters")
        engines.start()
        self._engines, self._engine_name = engines, name
        self._generation += 1
        self.attribution().forget_owners()  # a new engine: new maps, counting from zero
        self._seen_ids.clear()
        if self._reducer is None or self._reducer.platform_engine != (here.name, name):
            self._reducer = SnapshotReducer(here.name, name, ttl=self.opts.zone_ttl,
                                            max_zones=self.opts.max_zones)

    def ensure_started(self):
        """Start the engine if it is not running; raise the cause if it cannot."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._engines is None:
                try:
                    self._start()
                except TelemetryError as exc:
                    self._failure = exc
                    LOG.error("smartos-telemetry: cannot trace: %s. The zone meters are "
                              "disabled until the agent restarts; `smartos-telemetry "
                              "check` says what this host lacks.", exc)
                    raise

    def ensure_failed(self):
        """True once the engine could not start: permanent until restart."""
        return self._failure is not None

    @property
    def engine_name(self):
        return self._engine_name

    def samples_for_cycle(self, cache):
        """This cycle's MeterSamples (computed once, shared through ``cache``)."""
        if CACHE_KEY in cache:
            return cache[CACHE_KEY]
        self.ensure_started()
        zones = self.zones()
        zone_keys = ZoneKeys(zones)
        known = set(zone_keys.keys())  # the keys scripts use: cgroup id, zoneid, zonename
        with self._lock:
            try:
                snapshots = self._engines.snapshot()
            except EngineDied as exc:
                LOG.error("smartos-telemetry: engine died (%s); restarting it", exc)
                self._stop_engines()
                raise
            self._raw_snapshots = snapshots
            snapshots = self.attribution().attribute(snapshots, zone_keys)
            self._carry_saved(zones)
            samples = self._reducer.reduce(snapshots, self._generation, zones=known)
            self._save_state()  # before any of these samples is handed on
            if self.platform.tracks_departed_zones:
                self._reclaim(known)
        cache[CACHE_KEY] = samples
        return samples

    def _reclaim(self, known):
        """Linux, after a cycle's samples: forget what is gone, so that maps,
        polls and memory follow the live zones, not every zone ever seen.

        Gone: a cgroup id in the previous snapshot's rows that the walk since
        (this cycle's) no longer finds -- ids are never reused, so it is dead
        -- and every cgroup of a departed zone.  This cycle's snapshot holds
        their final values, and the samples just made delivered them (a
        departed zone was among ``known`` once).  Then their rows are deleted
        from the engines, a departed zone's totals from the reducer, and the
        final values of a gone child cgroup of a zone that lives on are kept
        as that zone's retired base, so that its totals never drop.
        """
        layer = self.zone_layer()
        owners = self.attribution().owners
        raw = self._raw_snapshots
        delivered = {zone_id for zone_id in self._departing if zone_id in known}
        gone = {i for i in self._seen_ids if i and layer.path(i) is None} \
            if _walk_found_root(layer) else set()
        gone |= {cg for cg, owner in owners.items() if owner in delivered}
        gone |= delivered
        seen = set()
        for snap in raw.values():  # a shared snapshot twice: the same ids
            for agg in snap.aggregations.values():
                seen.update(k[0] for k in agg.rows if k and isinstance(k[0], int))
        if gone:
            forgotten = self._engines.forget(gone)
            for rel in forgotten:
                snap = raw.get(rel)
                for agg in (snap.aggregations.values() if snap else ()):
                    self.attribution().retire(agg, gone, delivered)
            if forgotten == set(raw):
                for cgroup_id in gone:
                    owners.pop(cgroup_id, None)
                seen -= gone
        self.attribution().forget_zones(delivered)
        if delivered:
            self._reducer.forget(delivered)
            for zone_id in delivered:
                del self._departing[zone_id]
                self._zone_ids.pop(zone_id, None)
        self._seen_ids = seen

    def kstat_reading_for_cycle(self, cache):
        """SmartOS: this cycle's kstat counters (one ``kstat -p`` per cycle)."""
        key = CACHE_KEY + ".kstat"
        if key not in cache:
            if self._kstats is None:
                from smartos_telemetry.meters.kstat_counters import KstatCounters
                o = self.opts
                kstats = KstatCounters(kstat=o.kstat_path, timeout=o.kstat_timeout,
                                       page_size=o.page_size, ttl=o.zone_ttl,
                                       max_zones=o.max_zones)
                kstats.carry(self._saved.kstat)
                self._saved.kstat = {}
                self._kstats = kstats
            reading = self._kstats.poll(self.zone_layer().uuids_by_zonename())
            with self._lock:
                self._save_state()
            if reading.malformed or reading.unattributed:
                LOG.warning("smartos-telemetry: kstat: %d malformed lines, %d kstats of no "
                            "zone", reading.malformed, reading.unattributed)
            cache[key] = reading
        return cache[key]

    def cgroup_reading_for_cycle(self, cache, zones):
        """Linux: this cycle's cgroup counters of ``zones`` (discovery's), read
        once per cycle for the families that share them (ceilometer may hand
        a pollster fewer resources: those are read for it); needs no tracing
        engine."""
        key = (CACHE_KEY + ".cgroup", frozenset(zone.id for zone in zones))
        if key not in cache:
            with self._lock:
                if self._cgroups is None:
                    o = self.opts
                    self._cgroups = self.platform.cgroup_counters(
                        self.zone_layer(), ttl=o.zone_ttl, max_zones=o.max_zones)
                    self._cgroups.carry(self._saved.cgroup)
                    self._saved.cgroup = {}
                cache[key] = self._cgroups.poll(zones)
                self._save_state()  # before any of these samples is handed on
        return cache[key]

    # -- running totals kept between agent runs (meters/saved_totals.py) -------------
    def _carry_saved(self, zones):
        """Name this cycle's zones by resource id, and give a zone seen for
        the first time the totals a previous agent saved for it."""
        from smartos_telemetry.polling.pollsters import zone_resource_id

        pending = self._saved.zones
        if HOST_KEY in pending:
            for section, (saved, _) in pending.pop(HOST_KEY).items():
                self._reducer.carry(section, HOST, saved)
        for zone in zones:
            rid = zone_resource_id(self.host, zone)
            self._zone_ids[zone.id] = (rid, "id")
            zonename = zone.attribute("zonename")
            if zonename:
                self._zone_ids[zonename] = (rid, "zonename")
            sections = pending.pop(rid, None) if pending else None
            for section, (saved, by) in (sections or {}).items():
                key = zonename if by == "zonename" else zone.id
                if key is not None:
                    self._reducer.carry(section, key, saved)

    def _save_state(self):
        """Write every running total to the state file (under ``self._lock``)."""
        if not self._state.usable:
            return
        zones = {}
        used = set()
        if self._reducer is not None:
            for section, entries in self._reducer.export().items():
                for key, saved in entries.items():
                    if key is HOST:
                        rid, by = HOST_KEY, "id"
                    elif key in self._zone_ids:
                        rid, by = self._zone_ids[key]
                        used.add(key)
                    else:
                        continue  # never a known zone's: never sampled
                    old = zones.setdefault(rid, {}).get(section)
                    if old is None or old[0].total < saved.total:
                        zones[rid][section] = (saved, by)
        self._zone_ids = {k: v for k, v in self._zone_ids.items() if k in used}
        # what the previous agent saved for zones not back yet: kept for
        # their ttl of this agent's running time
        elapsed = time.monotonic() - self._saved_at
        ttl = self.opts.zone_ttl
        for rid, sections in self._saved.zones.items():
            kept = {section: (saved._replace(unseen=saved.unseen + elapsed), by)
                    for section, (saved, by) in sections.items()
                    if saved.unseen + elapsed <= ttl}
            if kept and rid not in zones:
                zones[rid] = kept
        kstat = self._kstats.export() if self._kstats is not None else self._saved.kstat
        cgroup = self._cgroups.export() if self._cgroups is not None else self._saved.cgroup
        self._state.save(SavedTotals(zones, kstat, cgroup))

    def _stop_engines(self):
        engines, self._engines = self._engines, None
        if engines is not None:
            engines.stop()  # logs, never raises, a failure to stop one

    def stop(self):
        with self._lock:
            self._stop_engines()
            self._state.close()


def _walk_found_root(layer):
    """True when the zone layer's last walk reached the unified root (a walk
    that could not read it must not make every cgroup look gone)."""
    try:
        return layer.path(os.stat(layer.root).st_ino) is not None
    except OSError:
        return False
    except AttributeError:  # a zone layer with no cgroup tree (a test's stand-in)
        return False
