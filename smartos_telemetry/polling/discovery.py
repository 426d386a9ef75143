"""Discovery plugins: this host's zones, and the host itself.

Registered as ``local_zones`` and ``local_host`` in
``ceilometer.discover.smartos`` (and ``ceilometer.discover.compute``).
Their group id is per host, so workload partitioning never hands one
host's zones to another agent.
"""

from ceilometer.polling import plugin_base
from oslo_log import log as logging

from smartos_telemetry.polling import telemetry_service

LOG = logging.getLogger(__name__)


class LocalZoneDiscovery(plugin_base.DiscoveryBase):
    """The zones (tenants) of this host, as ``Zone`` objects."""

    KEYSTONE_REQUIRED_FOR_SERVICE = None

    @property
    def group_id(self):
        return f"LocalZones-{self.conf.host}"

    def discover(self, manager, param=None):
        return telemetry_service.get_service(self.conf).zones()


class LocalHostDiscovery(plugin_base.DiscoveryBase):
    """This host alone: the resource of the engine-health meters."""

    KEYSTONE_REQUIRED_FOR_SERVICE = None

    @property
    def group_id(self):
        return f"LocalHost-{self.conf.host}"

    def discover(self, manager, param=None):
        return [self.conf.host]
