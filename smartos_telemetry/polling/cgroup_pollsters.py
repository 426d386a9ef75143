"""Linux: the counter pollsters fed by each zone's cgroup-v2 files.

Families as the SmartOS kstat ones (``cgroup.cpu``, ``cgroup.cpu.cap``,
``cgroup.memory``, ``cgroup.io``, ``cgroup.pids``, ``cgroup.pressure``;
meters/cgroup_counters.py lists their meters), registered in
``ceilometer.poll.smartos`` and ``ceilometer.poll.compute``: their
entry-point names are no Ceilometer meter's, so they shadow nothing.  One
read of every zone's files per cycle serves every family, and needs no
tracing engine.  Samples are a zone's only, with the same resource, owner
and metadata as the zone's engine meters; a Nova instance gets no sample of
a meter Ceilometer's libvirt pollsters already emit for it.
"""

from ceilometer import sample as ceilometer_sample
from oslo_log import log as logging

from smartos_telemetry.errors import TelemetryError
from smartos_telemetry.polling.pollsters import (
    PlatformCountersPollster,
    zone_metadata,
    zone_owner,
    zone_resource_id,
)

LOG = logging.getLogger(__name__)


class CgroupFamilyPollster(PlatformCountersPollster):
    """The counters of one family, from the zones' cgroup files."""

    platform_flag = "has_cgroup_counters"
    counters = "cgroup"
    platform_name = "Linux"
    family = None

    @classmethod
    def family_names(cls):
        return CGROUP_POLLSTERS

    def get_samples(self, manager, cache, resources):
        from smartos_telemetry.meters.cgroup_counters import BY_NAME
        from smartos_telemetry.zones.linux_cgroups import identity

        service = self._service_with_counters()
        if service is None:
            return
        zones = {}
        for zone in resources:  # the live zones come first: a re-created cgroup's
            if zone.path is not None:  # gone predecessor has the same identity
                zones.setdefault(identity(zone), zone)
        try:
            reading = service.cgroup_reading_for_cycle(cache, list(zones.values()))
        except TelemetryError as exc:
            LOG.error("smartos-telemetry: cgroup counters unavailable: %s", exc)
            raise
        host = service.host
        for s in reading.samples:
            zone = zones.get(s.zone)
            if zone is None or BY_NAME[s.name].family != self.family:
                continue
            user_id, project_id = zone_owner(zone)
            yield ceilometer_sample.Sample(
                name=s.name, type=s.type, unit=s.unit, volume=s.volume,
                user_id=user_id, project_id=project_id,
                resource_id=zone_resource_id(host, zone),
                resource_metadata=zone_metadata(host, zone))


class CgroupCPUCounters(CgroupFamilyPollster):
    family = "cpu"


class CgroupCPUCapCounters(CgroupFamilyPollster):
    family = "cpu.cap"


class CgroupMemoryCounters(CgroupFamilyPollster):
    family = "memory"


class CgroupIOCounters(CgroupFamilyPollster):
    family = "io"


class CgroupPidsCounters(CgroupFamilyPollster):
    family = "pids"


class CgroupPressureCounters(CgroupFamilyPollster):
    family = "pressure"


#: entry-point name -> class, as setup.cfg registers them (a test checks both)
CGROUP_POLLSTERS = {f"cgroup.{cls.family}": cls for cls in (
    CgroupCPUCounters, CgroupCPUCapCounters, CgroupMemoryCounters, CgroupIOCounters,
    CgroupPidsCounters, CgroupPressureCounters)}
