"""The ``[smartos]`` options, registered on the ``conf`` ceilometer hands
the plugins (ceilometer builds its own ConfigOpts; ``cfg.CONF`` is never
read).  ``oslo-config-generator --namespace smartos_telemetry`` writes a
sample from :func:`list_opts`.
"""

import math
import os
import re

from oslo_config import cfg

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.meters.catalogue import DISTRIBUTION_SUFFIXES

GROUP = "smartos"
DEFAULT_STATE_FILE = "/var/lib/smartos-telemetry/state.json"

#: what the consumers read: Aodh's run-queue alarms p99 (etc/aodh), CloudKitty
#: count and sum (etc/cloudkitty/metrics.yml); each statistic is a Gnocchi
#: metric per zone and distribution (README "Sizing Gnocchi")
DEFAULT_DISTRIBUTION_STATISTICS = ("p99", "count", "sum")

#: the most keys a BPF hash map may have: the kernel refuses (E2BIG, "Argument
#: list too long") a map whose bucket count, max_entries rounded up to a power
#: of two, exceeds U32_MAX / sizeof(struct bucket) (kernel/bpf/hashtab.c,
#: htab_map_alloc; a bucket is 16 bytes on 64-bit)
BPF_MAP_KEYS_LIMIT = 1 << 28

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
                     "(absolute, e.g. /tenants) are zones."),
    cfg.ListOpt("libvirt_xml_dirs", default=["/run/libvirt/qemu"],
                help="Linux: where libvirt keeps the status records of running domains "
                     "(a machine scope's instance UUID and Nova metadata come from there)."),
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
    cfg.StrOpt("owners_file", default="",
               help="YAML rules giving the project (and user) of every zone the platform "
                    "knows no owner of (containers, services, plain cgroups): ordered "
                    "rules on cgroup path, zone kind and name, and a default. Read at "
                    "start; a bad file disables the zone meters with one error naming the "
                    "rule. Empty: such zones carry project 'none'. See "
                    "etc/ceilometer/smartos-owners.yaml."),
    cfg.ListOpt("distribution_statistics", default=list(DEFAULT_DISTRIBUTION_STATISTICS),
                help="The samples each latency distribution emits per zone, of "
                     + ", ".join(DISTRIBUTION_SUFFIXES) + ". Each is a Gnocchi metric per "
                     "zone: fewer is a cheaper Gnocchi. The default is what the shipped "
                     "consumers read: Aodh's run-queue alarms p99, CloudKitty count and "
                     "sum; add p50, p95, max for dashboards."),
    cfg.StrOpt("state_file", default=DEFAULT_STATE_FILE,
               help="Where the running totals of the cumulative meters are kept between "
                    "agent runs (written after every poll, atomically), so that counters go "
                    "on across agent restarts and host reboots. Empty: not kept."),
]


def register(conf):
    """Register the options on ``conf`` once; safe to call again."""
    try:
        conf.register_opts(OPTS, group=GROUP)
    except cfg.DuplicateOptError:
        pass
    return conf[GROUP]


def validate(conf):
    """The ``[smartos]`` group of ``conf`` after reading every option once, so
    that a bad value is one :class:`ConfigError` naming the option, the value
    and the fix, at start, not a traceback at the first poll."""
    group = register(conf)
    for opt in OPTS:
        try:
            value = getattr(group, opt.dest)
        except cfg.ConfigFileValueError as exc:
            raise ConfigError(_bad_value(opt, exc)) from None
        if isinstance(value, float) and not math.isfinite(value):
            where = getattr(conf.get_location(opt.dest, GROUP), "detail", None)
            raise ConfigError(f"[{GROUP}] {opt.name} = {value}"
                              + (f" in {where}" if where else "")
                              + f": not a number (fix: {_fix(opt)})")
    _check_engine_options(group.engine_options)
    from smartos_telemetry.zones.linux_cgroups import config_from_options
    config_from_options(group)  # zone kinds, plain_parents
    _check_statistics(conf, group.distribution_statistics)
    from smartos_telemetry.zones import owners
    owners.load(group.owners_file)  # a bad rule: OwnerRulesError naming it
    if group.state_file and not os.path.isabs(group.state_file):
        where = getattr(conf.get_location("state_file", GROUP), "detail", None)
        raise ConfigError(f"[{GROUP}] state_file = {group.state_file}"
                          + (f" in {where}" if where else "") + ": not an absolute path "
                          f"(fix: e.g. state_file = {DEFAULT_STATE_FILE}, or empty to keep "
                          f"no totals between agent runs)")
    return group


def _bad_value(opt, exc):
    """One line from oslo.config's message: the file, the reason, the fix."""
    text = str(exc)
    where = re.search(r"detail='([^']*)'", text)
    reason = str(exc.__context__) if isinstance(exc.__context__, ValueError) \
        else text.rpartition(" is not valid: ")[2]
    return (f"[{GROUP}] {opt.name}" + (f" in {where.group(1)}" if where else "")
            + f": {reason} (fix: {_fix(opt)})")


def _fix(opt):
    kind = opt.type
    choices = getattr(kind, "choices", None)
    if choices:
        return f"set {opt.name} to one of {', '.join(str(c) for c in choices)}"
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    if low is not None or high is not None:
        bounds = " and ".join(b for b in (f"at least {low:g}" if low is not None else "",
                                          f"at most {high:g}" if high is not None else "")
                              if b)
        return f"set {opt.name} to a number of {bounds}, or remove the line (default {opt.default})"
    return "see its help: oslo-config-generator --namespace smartos_telemetry"


def _check_engine_options(options):
    """The bpftrace map sizing, checked before any map is made: the kernel's
    refusal of an oversized map reads "Argument list too long"."""
    sizing = {}
    for name in ("zones", "buckets", "map_keys_max"):
        if name not in options:
            continue
        try:
            sizing[name] = int(options[name])
        except ValueError:
            raise ConfigError(f"[{GROUP}] engine_options {name}:{options[name]}: not an "
                              f"integer (fix: e.g. engine_options = {name}:2000)") from None
        if sizing[name] < 1:
            raise ConfigError(f"[{GROUP}] engine_options {name}:{options[name]}: must be at "
                              f"least 1")
    keys = sizing.get("map_keys_max") or sizing.get("zones", 64) * sizing.get("buckets", 512)
    if keys > BPF_MAP_KEYS_LIMIT:
        raise ConfigError(
            f"[{GROUP}] engine_options ask for {keys:,} keys per bpftrace map (zones x "
            f"buckets, or map_keys_max); the kernel allows at most {BPF_MAP_KEYS_LIMIT:,} "
            f"(fix: lower zones, buckets or map_keys_max)")


def _check_statistics(conf, statistics):
    where = getattr(conf.get_location("distribution_statistics", GROUP), "detail", None)
    at = f" in {where}" if where else ""
    fix = f"fix: a comma-separated list of {', '.join(DISTRIBUTION_SUFFIXES)}"
    bad = [s for s in statistics if s not in DISTRIBUTION_SUFFIXES]
    if bad:
        raise ConfigError(f"[{GROUP}] distribution_statistics{at}: {', '.join(bad)} "
                          f"{'is not a statistic' if len(bad) == 1 else 'are not statistics'} "
                          f"({fix})")
    if not statistics:
        raise ConfigError(f"[{GROUP}] distribution_statistics{at} is empty: the latency "
                          f"meters would emit nothing ({fix}, or remove the line)")


def list_opts():
    return [(GROUP, OPTS)]
