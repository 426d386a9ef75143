"""The pollsters: one per meter of the catalogue, entry-point name = meter name.

A zone pollster yields the samples of its meter (a distribution meter
``NAME`` yields ``NAME.p50`` ... ``NAME.sum``) for the zones discovery
handed it, and nothing for any other zone: a tenant's samples carry only
its own zone's data.  All pollsters of a cycle share one snapshot and one
reduction (``telemetry_service``).

Resources: a zone that is a cloud instance (libvirt domain, SmartOS VM) has
the instance UUID as ``resource_id`` and, where the platform knows them, the
tenant's project and user; other zones (containers, services, plain
cgroups) get ``<host>:<kind>:<name>``, stable across agent restarts.
"""

from ceilometer import sample as ceilometer_sample
from ceilometer.polling import plugin_base
from oslo_log import log as logging

from smartos_telemetry.errors import TelemetryError
from smartos_telemetry.meters.reduce import HOST
from smartos_telemetry.polling import telemetry_service

LOG = logging.getLogger(__name__)


def zone_resource_id(host, zone):
    return zone.instance_uuid or f"{host}:{zone.kind}:{zone.name}"


def zone_metadata(host, zone):
    """Resource metadata: what Gnocchi's ``instance`` type needs, and more."""
    metadata = {
        "display_name": zone.attribute("display_name", zone.name),
        "host": host,
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
        service = telemetry_service.get_service(self.conf)
        try:
            return service, service.samples_for_cycle(cache)
        except TelemetryError as exc:
            if service.ensure_failed():
                raise plugin_base.PollsterPermanentError(resources) from exc
            raise

    def _wanted(self, name):
        return name == self.meter or name.startswith(self.meter + ".")


class ZoneMeterPollster(_MeterPollster):
    """Samples of one per-zone meter for the discovered zones."""

    @property
    def default_discovery(self):
        return "local_zones"

    def get_samples(self, manager, cache, resources):
        service, samples = self._samples(cache, resources)
        zones = {zone.id: zone for zone in resources}
        host = service.host
        for s in samples:
            zone = zones.get(s.zone)
            if zone is None or not self._wanted(s.name):
                continue
            yield ceilometer_sample.Sample(
                name=s.name, type=s.type, unit=s.unit, volume=s.volume,
                user_id=zone.attribute("user_id"), project_id=zone.attribute("project_id"),
                resource_id=zone_resource_id(host, zone),
                resource_metadata=zone_metadata(host, zone))


class HostHealthPollster(_MeterPollster):
    """The engine's health counters, per host."""

    @property
    def default_discovery(self):
        return "local_host"

    def get_samples(self, manager, cache, resources):
        service, samples = self._samples(cache, resources)
        for s in samples:
            if s.zone is HOST and s.name == self.meter:
                yield ceilometer_sample.Sample(
                    name=s.name, type=s.type, unit=s.unit, volume=s.volume,
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


#: entry-point name -> class, as setup.cfg registers them (a test checks both)
POLLSTERS = {cls.meter: cls for cls in (
    RunQueueLatency, DiskIOLatency, DiskThrottleDelay, DiskThrottleCount, TCPConnectLatency,
    TCPRoundTripTime, TCPRetransmits, TCPConnectFailures, EngineDrops, EngineErrors,
    EngineRestarts)}
