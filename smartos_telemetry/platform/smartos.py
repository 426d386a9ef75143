"""SmartOS: zones are the VMs vmadm knows, keyed by zoneid or zonename."""

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.platform.base import Platform


class SmartOS(Platform):
    name = "smartos"
    host_row_name = "global"  # as prstat -Z names it
    has_kstat_counters = True
    # the SmartOS scripts are D only (bpftrace has no illumos port)
    auto_engine = "dtrace"

    def zone_layer(self, options=None, plain_parents=()):
        from smartos_telemetry.zones.smartos_vmadm import SmartOSZones, VmadmInventory

        if plain_parents:
            raise ConfigError("--plain-parent is for Linux cgroups; SmartOS zones come "
                              "from vmadm")
        if options is None:
            return SmartOSZones()
        o = options
        return SmartOSZones(VmadmInventory(
            vmadm=o.vmadm_path, zoneadm=o.zoneadm_path, vmadm_timeout=o.vmadm_timeout,
            zoneadm_timeout=o.zoneadm_timeout, refresh_interval=o.vmadm_refresh_interval,
            max_stale=o.vmadm_max_stale))
