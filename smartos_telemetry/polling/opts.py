"""The ``[smartos]`` options, registered on the ``conf`` ceilometer hands
the plugins (ceilometer builds its own ConfigOpts; ``cfg.CONF`` is never
read).  ``oslo-config-generator --namespace smartos_telemetry`` writes a
sample from :func:`list_opts`.
"""

from oslo_config import cfg

GROUP = "smartos"

OPTS = [
    cfg.StrOpt("engine", default="auto",
               choices=[("auto", "libdtrace if it loads, else bpftrace"),
                        ("dtrace", "libdtrace only"), ("bpftrace", "bpftrace only")],
               help="Tracing engine. auto: libdtrace where its binding loads "
                    "(SmartOS, illumos, Linux with Oracle DTrace), bpftrace otherwise."),
    cfg.StrOpt("platform", default="auto",
               choices=[("auto", "from the kernel's name"),
                        ("linux", "cgroups are zones; Linux scripts"),
                        ("smartos", "vmadm zones; SmartOS scripts")],
               help="Zone layer and script set. auto: smartos on SunOS, linux elsewhere."),
    cfg.FloatOpt("zone_ttl", default=900.0, min=1.0,
                 help="Seconds after which a zone absent from the engine's data is "
                      "forgotten."),
    cfg.IntOpt("max_zones", default=10000, min=1,
               help="Most zones kept per aggregation; the least recently seen go "
                    "first (with a warning)."),
    cfg.FloatOpt("snapshot_timeout", default=10.0, min=0.1,
                 help="Seconds one engine snapshot may take before the poll gives up "
                      "on it."),
    cfg.DictOpt("engine_options", default={},
                help="Extra engine options, e.g. aggsize:16m (DTrace) or "
                     "zones:2000 (bpftrace map sizing)."),
    cfg.ListOpt("zone_kinds", default=[],
                help="Linux: kinds of cgroup that count as zones (libvirt, docker, "
                     "containerd, podman, crio, service, scope, cgroup); empty: all."),
    cfg.ListOpt("plain_parents", default=[],
                help="Linux: cgroups directly below these unified-hierarchy paths "
                     "(e.g. /tenants) are zones."),
    cfg.StrOpt("vmadm_path", default="/usr/sbin/vmadm",
               help="SmartOS: vmadm, for the zone inventory."),
    cfg.StrOpt("zoneadm_path", default="/usr/sbin/zoneadm",
               help="SmartOS: zoneadm, for the live zoneids."),
    cfg.StrOpt("kstat_path", default="/usr/bin/kstat",
               help="SmartOS: kstat, for the per-zone counters (kstat -p)."),
    cfg.FloatOpt("vmadm_timeout", default=60.0, min=1.0, help="SmartOS: seconds vmadm may take."),
    cfg.FloatOpt("zoneadm_timeout", default=10.0, min=1.0,
                 help="SmartOS: seconds zoneadm may take."),
    cfg.FloatOpt("kstat_timeout", default=30.0, min=1.0, help="SmartOS: seconds kstat may take."),
    cfg.FloatOpt("vmadm_refresh_interval", default=300.0, min=1.0,
                 help="SmartOS: seconds the vmadm inventory is reused before it is asked "
                      "again (sooner when an unknown zone boots)."),
    cfg.FloatOpt("vmadm_max_stale", default=1800.0, min=0.0,
                 help="SmartOS: seconds the last good inventory serves while vmadm fails."),
    cfg.IntOpt("page_size", default=4096, min=512,
               help="SmartOS: bytes per page, for the page counts of the memory_cap kstats."),
]


def register(conf):
    """Register the options on ``conf`` once; safe to call again."""
    try:
        conf.register_opts(OPTS, group=GROUP)
    except cfg.DuplicateOptError:
        pass
    return conf[GROUP]


def list_opts():
    return [(GROUP, OPTS)]
