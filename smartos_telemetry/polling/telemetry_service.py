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

from oslo_log import log as logging

from smartos_telemetry.engines.engine_set import EngineSet, choose
from smartos_telemetry.errors import ConfigError, EngineDied, TelemetryError
from smartos_telemetry.meters.reduce import SnapshotReducer
from smartos_telemetry.polling import opts

LOG = logging.getLogger(__name__)

CACHE_KEY = "smartos_telemetry.samples"

_SERVICES = {}
_SERVICES_LOCK = threading.Lock()


def detect_platform():
    return "smartos" if os.uname().sysname == "SunOS" else "linux"


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
        try:
            opts.validate(conf)
            bad_config = None
        except ConfigError as exc:
            bad_config = exc
            LOG.error("smartos-telemetry: %s. The zone meters are disabled until the agent "
                      "restarts with a corrected configuration.", exc)
        self.platform = detect_platform() if bad_config or self.opts.platform == "auto" \
            else self.opts.platform
        self.host = getattr(conf, "host", None) or os.uname().nodename
        self._lock = threading.Lock()
        self._engines = None
        self._engine_name = None
        self._failure = bad_config
        self._generation = 0
        self._reducer = None
        self._zones = None
        self._kstats = None
        self._owners = {}  # Linux: cgroup id -> the id of the zone it rolls up to
        atexit.register(self.stop)

    # -- zones ----------------------------------------------------------------
    def zone_layer(self):
        if self._zones is None:
            if self.platform == "linux":
                from smartos_telemetry.zones.linux_cgroups import (
                    CgroupZones,
                    config_from_options,
                )
                self._zones = CgroupZones(config_from_options(self.opts))
            else:
                from smartos_telemetry.zones.smartos_vmadm import SmartOSZones, VmadmInventory
                o = self.opts
                self._zones = SmartOSZones(VmadmInventory(
                    vmadm=o.vmadm_path, zoneadm=o.zoneadm_path, vmadm_timeout=o.vmadm_timeout,
                    zoneadm_timeout=o.zoneadm_timeout,
                    refresh_interval=o.vmadm_refresh_interval, max_stale=o.vmadm_max_stale))
        return self._zones

    def zones(self):
        if isinstance(self._failure, ConfigError):
            return []  # the zone layer's own options may be the bad ones
        return self.zone_layer().zones()

    # -- engine -----------------------------------------------------------------
    def _start(self):
        name, why = choose(self.platform, self.opts.engine)  # SmartOS: auto is dtrace
        LOG.info("smartos-telemetry: %s engine on %s (%s)", name, self.platform, why)
        engines = EngineSet(self.platform, name, options=self.opts.engine_options)
        engines.start()
        self._engines, self._engine_name = engines, name
        self._generation += 1
        self._owners.clear()  # a new engine: new maps
        if self._reducer is None or self._reducer.platform_engine != (self.platform, name):
            self._reducer = SnapshotReducer(self.platform, name, ttl=self.opts.zone_ttl,
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
        known = set()
        for zone in self.zones():  # the keys scripts use: cgroup id, zoneid, zonename
            known.add(zone.id)
            if zone.attribute("zonename"):
                known.add(zone.attribute("zonename"))
        with self._lock:
            try:
                snapshots = self._engines.snapshot()
            except EngineDied as exc:
                LOG.error("smartos-telemetry: engine died (%s); restarting it", exc)
                self._stop_engines()
                raise
            if self.platform == "linux":
                snapshots = self._rolled_up(snapshots)
            samples = self._reducer.reduce(snapshots, self._generation, zones=known)
        cache[CACHE_KEY] = samples
        return samples

    def _rolled_up(self, snapshots):
        """Linux: rows of a zone's child cgroups (a VM's vCPU threads under its
        scope, a container's sub-groups) counted under the zone's own id.

        Which zone a cgroup id belongs to is remembered for as long as the
        engine may hold rows for it: a child cgroup that is gone must keep
        counting in its zone, or the zone's totals would drop.
        """
        layer = self.zone_layer()

        def owner(key):
            if not key or not isinstance(key[0], int):
                return key
            cgroup_id = key[0]
            if cgroup_id not in self._owners:
                zone = layer.resolve(cgroup_id)
                if zone is None:
                    return key  # not a zone's: kept as it is (never sampled)
                self._owners[cgroup_id] = zone.id
            return (self._owners[cgroup_id], *key[1:])

        done = {}
        for snap in snapshots.values():
            if id(snap) not in done:
                done[id(snap)] = snap.rekeyed(owner)
        return {rel: done[id(snap)] for rel, snap in snapshots.items()}

    def kstat_reading_for_cycle(self, cache):
        """SmartOS: this cycle's kstat counters (one ``kstat -p`` per cycle)."""
        key = CACHE_KEY + ".kstat"
        if key not in cache:
            if self._kstats is None:
                from smartos_telemetry.kstat_counters import KstatCounters
                o = self.opts
                self._kstats = KstatCounters(kstat=o.kstat_path, timeout=o.kstat_timeout,
                                             page_size=o.page_size, ttl=o.zone_ttl,
                                             max_zones=o.max_zones)
            reading = self._kstats.poll(self.zone_layer().uuids_by_zonename())
            if reading.malformed or reading.unattributed:
                LOG.warning("smartos-telemetry: kstat: %d malformed lines, %d kstats of no "
                            "zone", reading.malformed, reading.unattributed)
            cache[key] = reading
        return cache[key]

    def _stop_engines(self):
        engines, self._engines = self._engines, None
        if engines is not None:
            engines.stop()  # logs, never raises, a failure to stop one

    def stop(self):
        with self._lock:
            self._stop_engines()
