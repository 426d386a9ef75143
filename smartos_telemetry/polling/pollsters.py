"""The pollsters: one per meter of the catalogue, entry-point name = meter name.

A zone pollster yields the samples of its meter (a distribution meter
``NAME`` yields those of ``NAME.p50`` ... ``NAME.sum`` that ``[smartos]
distribution_statistics`` names) for the zones discovery
handed it, and nothing for any other zone: a tenant's samples carry only
its own zone's data.  All pollsters of a cycle share one snapshot and one
reduction (``telemetry_service``).

Resources: a zone that is a cloud instance (libvirt domain, SmartOS VM) has
the instance UUID as ``resource_id`` and, where the platform knows them, the
tenant's project and user; other zones (containers, services, plain
cgroups) get ``<host>:<kind>:<name>``, stable across agent restarts.

Every sample of a zone meter has the same fields set, whatever its zone:
its project and user are the platform's owner of the zone, else the
operator's owner rules (``[smartos] owners_file``, zones/owners.py), else
:data:`NO_OWNER`.
"""

import dataclasses
import hashlib

from ceilometer import sample as ceilometer_sample
from ceilometer.polling import plugin_base
from oslo_log import log as logging

from smartos_telemetry.attribution import ZoneKeys
from smartos_telemetry.errors import TelemetryError
from smartos_telemetry.meters.reduce import HOST
from smartos_telemetry.polling import telemetry_service
from smartos_telemetry.zones import owners

LOG = logging.getLogger(__name__)


#: The project and user of a zone no one owns (zones/owners.py says why "none")
NO_OWNER = owners.NO_OWNER

#: Gnocchi keeps a resource's original id and our resource types' display_name
#: in 255 characters (indexer/sqlalchemy_base.py: String(255); gnocchi/resources.yaml)
GNOCCHI_TEXT_MAX = 255


def bounded(text, limit=GNOCCHI_TEXT_MAX):
    """``text`` if it fits ``limit`` characters, else its head, ``~`` and a
    digest of the whole: the same text always gives the same result, two
    texts two results."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"{text[:limit - len(digest) - 1]}~{digest}"


def zone_resource_id(host, zone):
    return zone.instance_uuid or bounded(f"{host}:{zone.kind}:{zone.name}")


def zone_owner(zone):
    """``(user_id, project_id)`` of a zone's samples, never unset: discovery's
    zones carry their owner (the platform's, else the operator's rules,
    zones/owners.py); :data:`NO_OWNER` where neither names one."""
    return (zone.attribute("user_id") or NO_OWNER, zone.attribute("project_id") or NO_OWNER)


def zone_metadata(host, zone):
    """Resource metadata: what Gnocchi's ``instance`` type needs, and more.
    ``zone_name`` is the zone's name in full, even where ``display_name`` or
    the resource id had to be cut to Gnocchi's 255 characters."""
    metadata = {
        "display_name": bounded(zone.attribute("display_name", zone.name)),
        "host": host,
        "zone_name": zone.name,
        "zone_kind": zone.kind,
        "zone_id": zone.id,
        "zone_path": zone.path,
        "instance_id": zone.instance_uuid,
        "flavor_id": zone.attribute("flavor_id", ""),
        "flavor_name": zone.attribute("flavor_name", ""),
    }
    if zone.instance_uuid:  # an instance: its hypervisor name, as nova's pollsters give it
        metadata["name"] = zone.name
    return metadata


class _MeterPollster(plugin_base.PollsterBase):
    meter = None

    def _samples(self, cache, resources):
        """``(service, samples)``: this cycle's samples of this pollster's
        meter, ``(name, type, unit, volume, zone)`` tuples (the reducer's
        :meth:`~smartos_telemetry.meters.intervals.MeterIntervals.samples`)."""
        service = telemetry_service.get_service(self.conf)
        try:
            intervals = service.samples_for_cycle(cache)
        except TelemetryError:
            if service.ensure_failed():
                # the service logged the cause and the fix once; ceilometer
                # would log every resource of every pollster for a
                # PollsterPermanentError, every cycle a new zone appears
                return service, ()
            raise
        meter = intervals.get(self.meter)
        if meter is None:
            return service, ()
        return service, meter.samples(service.opts.distribution_statistics)


class ZoneMeterPollster(_MeterPollster):
    """Samples of one per-zone meter for the discovered zones."""

    @property
    def default_discovery(self):
        return "local_zones"

    def get_samples(self, manager, cache, resources):
        service, samples = self._samples(cache, resources)
        zones = ZoneKeys(resources)  # only the zones discovery handed us
        host = service.host
        for name, kind, unit, volume, key in samples:
            zone = zones.get(key)
            if zone is None:
                continue
            user_id, project_id = zone_owner(zone)
            yield ceilometer_sample.Sample(
                name=name, type=kind, unit=unit, volume=volume,
                user_id=user_id, project_id=project_id,
                resource_id=zone_resource_id(host, zone),
                resource_metadata=zone_metadata(host, zone))


class HostHealthPollster(_MeterPollster):
    """The engine's health counters, per host."""

    @property
    def default_discovery(self):
        return "local_host"

    def get_samples(self, manager, cache, resources):
        service, samples = self._samples(cache, resources)
        for name, kind, unit, volume, zone in samples:
            if zone is HOST:
                yield ceilometer_sample.Sample(
                    name=name, type=kind, unit=unit, volume=volume,
                    user_id=None, project_id=None, resource_id=service.host,
                    resource_metadata={"host": service.host, "engine": service.engine_name})


class RunQueueLatency(ZoneMeterPollster):
    meter = "cpu.runqueue.latency"


class DiskIOLatency(ZoneMeterPollster):
    meter = "disk.io.latency"


class DiskThrottleDelay(ZoneMeterPollster):
    meter = "disk.throttle.delay"


class DiskThrottleCount(ZoneMeterPollster):
    meter = "disk.throttle.count"


class TCPConnectLatency(ZoneMeterPollster):
    meter = "network.tcp.connect.latency"


class TCPRoundTripTime(ZoneMeterPollster):
    meter = "network.tcp.rtt"


class TCPRetransmits(ZoneMeterPollster):
    meter = "network.tcp.retransmits"


class TCPConnectFailures(ZoneMeterPollster):
    meter = "network.tcp.connect.failures"


class EngineDrops(HostHealthPollster):
    meter = "telemetry.engine.drops"


class EngineErrors(HostHealthPollster):
    meter = "telemetry.engine.errors"


class EngineRestarts(HostHealthPollster):
    meter = "telemetry.engine.restarts"


#: the ``counters`` of the platform-only families that said, once per agent,
#: that this platform has none of them: one line, not one per pollster and cycle
_SAID_NOT_HERE = set()


class PlatformCountersPollster(plugin_base.PollsterBase):
    """Base of the counter-family pollsters only one platform can feed (the
    SmartOS kstats, the Linux cgroup files).  Registered in a namespace every
    platform loads, so elsewhere they must stand down quietly."""

    #: the :class:`~smartos_telemetry.platform.base.Platform` flag that says
    #: this platform has these counters
    platform_flag = None
    #: what the families are fed by, and the platform that has it (the log line's words)
    counters = None
    platform_name = None

    @classmethod
    def family_names(cls):
        """The entry-point names of every pollster of these families."""
        raise NotImplementedError

    def _service_with_counters(self):
        """This agent's service, or None where its platform lacks these counters."""
        service = telemetry_service.get_service(self.conf)
        return service if getattr(service.platform, self.platform_flag) else None

    @property
    def default_discovery(self):
        """``local_zones`` where the platform has the counters; elsewhere no
        discovery, so that ceilometer skips these pollsters quietly (no
        resources)."""
        if self._service_with_counters() is not None:
            return "local_zones"
        if self.counters not in _SAID_NOT_HERE:
            _SAID_NOT_HERE.add(self.counters)
            LOG.info("smartos-telemetry: the %s counter pollsters (%s) exist on %s only; "
                     "not polled on %s", self.counters, ", ".join(self.family_names()),
                     self.platform_name, telemetry_service.get_service(self.conf).platform)
        return None


class KstatFamilyPollster(PlatformCountersPollster):
    """SmartOS: the counters one kstat module keeps per zone (``cpu``,
    ``cpu.cap``, ``memory``, ``disk.vfs``, ``disk.zfs``, ``network``), with
    Ceilometer's names where one exists (kstat_counters.py lists them).

    One ``kstat -p`` per cycle serves every family.  Zone samples have the
    VM UUID as resource; per-vnic ones ``<uuid>-<interface>``, as
    ceilometer's per-interface network meters do.
    """

    platform_flag = "has_kstat_counters"
    counters = "kstat"
    platform_name = "SmartOS"
    module = None

    @classmethod
    def family_names(cls):
        return KSTAT_POLLSTERS

    def get_samples(self, manager, cache, resources):
        from smartos_telemetry.meters.kstat_counters import BY_NAME

        service = self._service_with_counters()
        if service is None:
            return
        try:
            reading = service.kstat_reading_for_cycle(cache)
        except TelemetryError as exc:
            LOG.error("smartos-telemetry: kstat counters unavailable: %s", exc)
            raise
        zones = {zone.instance_uuid: zone for zone in resources if zone.instance_uuid}
        host = service.host
        for s in reading.samples:
            zone = zones.get(s.zone)
            if zone is not None and BY_NAME[s.name].module == self.module:
                yield self._sample(s, zone, zone.instance_uuid, host, {})
        for nic in reading.nic_samples:
            s = nic.sample
            zone = zones.get(s.zone)
            if zone is not None and BY_NAME[s.name].module == self.module:
                extra = {"interface": nic.interface, "instance_id": zone.instance_uuid}
                vnic = service.zone_layer().nic(s.zone, nic.interface)
                if vnic is not None:
                    extra.update(dataclasses.asdict(vnic))
                yield self._sample(s, zone, f"{zone.instance_uuid}-{nic.interface}", host,
                                   extra)

    @staticmethod
    def _sample(s, zone, resource_id, host, extra):
        metadata = zone_metadata(host, zone)
        metadata.update(extra)
        user_id, project_id = zone_owner(zone)
        return ceilometer_sample.Sample(
            name=s.name, type=s.type, unit=s.unit, volume=s.volume,
            user_id=user_id, project_id=project_id,
            resource_id=resource_id, resource_metadata=metadata)


class ZoneCPUCounters(KstatFamilyPollster):
    module = "zones"


class ZoneCPUCapCounters(KstatFamilyPollster):
    module = "caps"


class ZoneMemoryCounters(KstatFamilyPollster):
    module = "memory_cap"


class ZoneVFSCounters(KstatFamilyPollster):
    module = "zone_vfs"


class ZoneZFSCounters(KstatFamilyPollster):
    module = "zone_zfs"


class ZoneNetworkCounters(KstatFamilyPollster):
    module = "link"


#: SmartOS kstat families: entry-point name -> class (ceilometer.poll.smartos only:
#: in the compute namespace the names would shadow the libvirt pollsters')
KSTAT_POLLSTERS = {
    "cpu": ZoneCPUCounters, "cpu.cap": ZoneCPUCapCounters, "memory": ZoneMemoryCounters,
    "disk.vfs": ZoneVFSCounters, "disk.zfs": ZoneZFSCounters, "network": ZoneNetworkCounters,
}


#: entry-point name -> class, as setup.cfg registers them (a test checks both)
POLLSTERS = {cls.meter: cls for cls in (
    RunQueueLatency, DiskIOLatency, DiskThrottleDelay, DiskThrottleCount, TCPConnectLatency,
    TCPRoundTripTime, TCPRetransmits, TCPConnectFailures, EngineDrops, EngineErrors,
    EngineRestarts)}
