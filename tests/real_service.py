"""Test helper (root, real kernel): the agent's telemetry service on real bpftrace.

The service is what ceilometer-polling runs: the shipped Linux scripts, the
zone layer over the real cgroup tree (zones: the cgroups directly below one
scratch parent), the reducer.  A cycle is what ceilometer does each
interval: discovery, then the pollsters (which share one reduction).
"""

import contextlib

from agent_conf import linux_agent_conf

from smartos_telemetry.polling import telemetry_service


@contextlib.contextmanager
def real_service(parent_rel, **smartos):
    """A started service whose zones are the cgroups below ``parent_rel``
    (a path under the unified root); ``smartos`` sets ``[smartos]`` options."""
    conf = linux_agent_conf("", host="cn-test")
    conf.set_override("engine", "bpftrace", group="smartos")
    conf.set_override("plain_parents", [parent_rel], group="smartos")
    for name, value in smartos.items():
        conf.set_override(name, value, group="smartos")
    service = telemetry_service.TelemetryService(conf)
    try:
        service.ensure_started()
        yield service
    finally:
        service.stop()


def cycle(service):
    """One polling cycle: ``(zones discovered, samples)``."""
    zones = service.zones()
    return zones, service.samples_for_cycle({})


def engine_of(service, script):
    """The running engine of one shipped script (``linux/tcp.bt``)."""
    return service._engines._by_script[script]
