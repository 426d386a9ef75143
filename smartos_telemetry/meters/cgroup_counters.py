"""Per-zone counters the Linux kernel already keeps, from cgroup v2 files.

The Linux analogue of :mod:`smartos_telemetry.meters.kstat_counters`: each
poll reads, for every zone, the interface files of the zone's own cgroup
(one ``open``/``read`` per file; every statistic there is hierarchical, so
the zone's sub-cgroups -- a container's children, a VM's vCPU threads -- are
in it).  Samples are keyed by the zone's identity
(``linux_cgroups.identity``: the instance UUID, else kind and name), never
by the cgroup id, which is new whenever the cgroup is re-created.

Meters (cumulative ones are running totals kept by
:class:`~smartos_telemetry.meters.accumulator.Accumulator`; the names of
Ceilometer's meters keep Ceilometer's type and unit):

==========================  ==========  =======  ============================================
meter                       type        unit     source (file: statistic)
==========================  ==========  =======  ============================================
cpu                         cumulative  ns       cpu.stat: usage_usec x 1000
cpu.user                    cumulative  ns       cpu.stat: user_usec x 1000
cpu.system                  cumulative  ns       cpu.stat: system_usec x 1000
cpu.cap.limit               gauge       %        cpu.max: 100 x quota / period
cpu.cap.throttled           cumulative  period   cpu.stat: nr_throttled
cpu.cap.throttled.time      cumulative  ns       cpu.stat: throttled_usec x 1000
memory                      gauge       MiB      memory.max / 2^20
memory.usage                gauge       MiB      memory.current / 2^20
memory.usage.peak           gauge       MiB      memory.peak / 2^20
memory.swap.usage           gauge       MiB      memory.swap.current / 2^20
memory.cap.exceeded         cumulative  event    memory.events: max
memory.oom                  cumulative  event    memory.events: oom
memory.oom.kills            cumulative  process  memory.events: oom_kill
disk.read.bytes             cumulative  B        io.stat: rbytes, all devices
disk.write.bytes            cumulative  B        io.stat: wbytes, all devices
disk.read.requests          cumulative  request  io.stat: rios, all devices
disk.write.requests         cumulative  request  io.stat: wios, all devices
pids                        gauge       process  pids.current
pids.limit                  gauge       process  pids.max
pids.limit.exceeded         cumulative  event    pids.events: max
cpu.pressure.some           cumulative  ns       cpu.pressure: some total x 1000
cpu.pressure.full           cumulative  ns       cpu.pressure: full total x 1000
io.pressure.some            cumulative  ns       io.pressure: some total x 1000
io.pressure.full            cumulative  ns       io.pressure: full total x 1000
memory.pressure.some        cumulative  ns       memory.pressure: some total x 1000
memory.pressure.full        cumulative  ns       memory.pressure: full total x 1000
==========================  ==========  =======  ============================================

Facts and traps (Documentation/admin-guide/cgroup-v2.rst of the kernel;
the functions named are the kernel's):

* ``cpu.stat`` ``usage_usec``/``user_usec``/``system_usec`` are core files,
  there whatever controllers are enabled (``cgroup_base_stat_cputime_show()``,
  kernel/cgroup/rstat.c); ``nr_throttled``/``throttled_usec`` only with the
  ``cpu`` controller (``cpu_extra_stat_show()``, kernel/sched/core.c).
  A zone without them has no ``cpu.cap.throttled*`` samples.
* ``memory.*``, ``io.stat`` and ``pids.*`` exist only where the parent's
  ``cgroup.subtree_control`` enables the controller; on a hybrid host a
  controller bound to a v1 hierarchy is not in v2 at all.  A missing file
  is no sample (never a zero) and one log line per controller and agent.
* ``max`` in ``cpu.max``, ``memory.max`` and ``pids.max`` means no limit:
  no sample, as for an uncapped SmartOS zone.  ``memory.peak`` came with
  Linux 5.19; ``memory.swap.current`` needs swap accounting.
* ``memory.current`` (``memory.usage``) is everything charged to the
  cgroup -- anonymous memory, page cache, kernel memory -- not an RSS; the
  cache is reclaimed before ``memory.max`` is hit.
* ``memory.events`` (not ``.local``) counts the zone's sub-cgroups too;
  ``max`` is how often usage was about to exceed ``memory.max`` (the
  reclaim that follows), ``oom`` how often the limit could not be held,
  ``oom_kill`` processes the OOM killer killed.
* ``io.stat`` has one line per device (``MAJ:MIN rbytes=... wios=...``) for
  the devices the cgroup did I/O on; the meters are the sums.  A device's
  line goes away when the device does (its ``blkg`` is destroyed): within
  one cgroup a sum that drops is re-based, never counted again.  A line
  that does not parse loses the zone's ``io.stat`` for that poll (a partial
  sum would read as progress later).
* Pressure stall information (``cpu/io/memory.pressure``, ``total=`` in
  microseconds of stalled wall time, ``psi_show()``, kernel/sched/psi.c)
  needs ``CONFIG_PSI`` and ``psi=1`` where the kernel is built with
  ``CONFIG_PSI_DEFAULT_DISABLED``; otherwise the files are missing, or
  reading them fails with ``EOPNOTSUPP``.  ``cgroup.pressure`` = 0 hides a
  cgroup's files.  Then there is no sample, said once in the log and by
  ``smartos-telemetry check``.
* A cgroup re-created under the same identity (container restart, service
  restart, VM reboot into a new scope) starts every counter from zero: the
  totals go on from where they were, adding the new cgroup's values from
  zero (a new cgroup that has already counted past the old values is not
  mistaken for progress).  What the old cgroup counted between the last
  poll and its removal is lost.
* Names are bytes: a zone's path is text (``linux_cgroups.name_text``) and
  the file's is its bytes (``linux_cgroups.os_path``).
* A zone that is a Nova instance (libvirt scope with an instance UUID) has
  ``cpu``, ``memory``, ``memory.usage`` and ``disk.device.*`` from
  Ceilometer's own libvirt pollsters; the meters here that carry the same
  data (``cpu``, ``memory``, ``memory.usage``, ``disk.*``) are not emitted
  for it (:data:`LIBVIRT_COVERED`).
"""

import errno
import os
import time
import typing

from oslo_log import log as logging

from smartos_telemetry.meters.kernel_counters import KernelCounterTotals
from smartos_telemetry.meters.reduce import MeterSample
from smartos_telemetry.zones.linux_cgroups import identity, os_path

LOG = logging.getLogger(__name__)

MIB = 1 << 20
C, G = "cumulative", "gauge"


class CgroupMeter(typing.NamedTuple):
    """One meter: statistic ``field`` of cgroup file ``file``, times ``scale``.

    ``family``: the pollster that emits it; ``libvirt``: the Ceilometer
    libvirt meter that already carries the same data for a Nova instance
    (then it is not emitted for one), or None.
    """

    name: str
    type: str
    unit: str
    family: str
    file: str
    field: str
    scale: float = 1
    libvirt: str = None


def _m(name, type_, unit, family, file, field, scale=1, libvirt=None):
    return CgroupMeter(name, type_, unit, family, file, field, scale, libvirt)


METERS = (
    _m("cpu", C, "ns", "cpu", "cpu.stat", "usage_usec", 1000, libvirt="cpu"),
    _m("cpu.user", C, "ns", "cpu", "cpu.stat", "user_usec", 1000),
    _m("cpu.system", C, "ns", "cpu", "cpu.stat", "system_usec", 1000),
    _m("cpu.cap.limit", G, "%", "cpu.cap", "cpu.max", "limit"),
    _m("cpu.cap.throttled", C, "period", "cpu.cap", "cpu.stat", "nr_throttled"),
    _m("cpu.cap.throttled.time", C, "ns", "cpu.cap", "cpu.stat", "throttled_usec", 1000),
    _m("memory", G, "MiB", "memory", "memory.max", "value", 1 / MIB, libvirt="memory"),
    _m("memory.usage", G, "MiB", "memory", "memory.current", "value", 1 / MIB,
       libvirt="memory.usage"),
    _m("memory.usage.peak", G, "MiB", "memory", "memory.peak", "value", 1 / MIB),
    _m("memory.swap.usage", G, "MiB", "memory", "memory.swap.current", "value", 1 / MIB),
    _m("memory.cap.exceeded", C, "event", "memory", "memory.events", "max"),
    _m("memory.oom", C, "event", "memory", "memory.events", "oom"),
    _m("memory.oom.kills", C, "process", "memory", "memory.events", "oom_kill"),
    _m("disk.read.bytes", C, "B", "io", "io.stat", "rbytes",
       libvirt="disk.device.read.bytes"),
    _m("disk.write.bytes", C, "B", "io", "io.stat", "wbytes",
       libvirt="disk.device.write.bytes"),
    _m("disk.read.requests", C, "request", "io", "io.stat", "rios",
       libvirt="disk.device.read.requests"),
    _m("disk.write.requests", C, "request", "io", "io.stat", "wios",
       libvirt="disk.device.write.requests"),
    _m("pids", G, "process", "pids", "pids.current", "value"),
    _m("pids.limit", G, "process", "pids", "pids.max", "value"),
    _m("pids.limit.exceeded", C, "event", "pids", "pids.events", "max"),
    _m("cpu.pressure.some", C, "ns", "pressure", "cpu.pressure", "some", 1000),
    _m("cpu.pressure.full", C, "ns", "pressure", "cpu.pressure", "full", 1000),
    _m("io.pressure.some", C, "ns", "pressure", "io.pressure", "some", 1000),
    _m("io.pressure.full", C, "ns", "pressure", "io.pressure", "full", 1000),
    _m("memory.pressure.some", C, "ns", "pressure", "memory.pressure", "some", 1000),
    _m("memory.pressure.full", C, "ns", "pressure", "memory.pressure", "full", 1000),
)
BY_NAME = {m.name: m for m in METERS}
FAMILIES = tuple(dict.fromkeys(m.family for m in METERS))
#: the meters not emitted for a Nova instance: Ceilometer's libvirt pollsters
#: emit these (or, for disk.*, the same I/O per device) for it
LIBVIRT_COVERED = frozenset(m.name for m in METERS if m.libvirt)
PRESSURE_FILES = ("cpu.pressure", "io.pressure", "memory.pressure")
#: every file read per zone, in this order; cpu.stat is a core file of every
#: v2 cgroup, so its absence means the zone's cgroup is gone
FILES = tuple(dict.fromkeys(m.file for m in METERS))
_READ_MAX = 1 << 16  # io.stat of a host with many disks stays far below this


class Malformed(ValueError):
    """A cgroup file's text is not in the kernel's format."""


# -- the kernel's formats ---------------------------------------------------------

def _count(text):
    if not text.isdigit():  # ASCII digits only: never a sign, space or "max"
        raise Malformed(f"{text!r} is not a count")
    return int(text)


def parse_flat(text):
    """``KEY VALUE`` a line (``cpu.stat``, ``memory.events``, ``pids.events``)."""
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        key, sep, value = line.partition(" ")
        if not sep or not key:
            raise Malformed(f"line {line!r} is not 'key value'")
        out[key] = _count(value)
    return out


def parse_single(text):
    """One value (``memory.current``, ``memory.max``, ``pids.max``, ...);
    ``max`` (no limit) is None."""
    value = text.strip()
    return {"value": None if value == "max" else _count(value)}


def parse_cpu_max(text):
    """``cpu.max``: ``QUOTA PERIOD`` (microseconds) -> the limit in percent
    of one CPU; ``max PERIOD`` (no limit) -> None."""
    parts = text.split()
    if len(parts) != 2:
        raise Malformed(f"{text.strip()!r} is not 'quota period'")
    period = _count(parts[1])
    if parts[0] == "max":
        return {"limit": None}
    if not period:
        raise Malformed("period 0")
    return {"limit": 100.0 * _count(parts[0]) / period}


def parse_io_stat(text):
    """``io.stat``: ``MAJ:MIN key=value ...`` per device -> the sums over
    devices of rbytes, wbytes, rios, wios.  Any line that does not parse
    makes the whole file Malformed."""
    sums = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    for line in text.splitlines():
        if not line:
            continue
        device, *pairs = line.split(" ")
        major, colon, minor = device.partition(":")
        if not colon or not major.isdigit() or not minor.isdigit():
            raise Malformed(f"line {line!r} does not start with MAJ:MIN")
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise Malformed(f"{pair!r} in line {line!r} is not key=value")
            if key in sums:
                sums[key] += _count(value)
    return sums


def parse_pressure(text):
    """``some avg10=... avg60=... avg300=... total=N`` (and ``full``) -> the
    ``total`` of each line (microseconds)."""
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        kind, *pairs = line.split(" ")
        totals = [p[6:] for p in pairs if p.startswith("total=")]
        if kind not in ("some", "full") or len(totals) != 1:
            raise Malformed(f"line {line!r} is not 'some|full ... total=N'")
        out[kind] = _count(totals[0])
    return out


PARSERS = {
    "cpu.stat": parse_flat, "cpu.max": parse_cpu_max,
    "memory.max": parse_single, "memory.current": parse_single, "memory.peak": parse_single,
    "memory.swap.current": parse_single, "memory.events": parse_flat,
    "io.stat": parse_io_stat,
    "pids.current": parse_single, "pids.max": parse_single, "pids.events": parse_flat,
    "cpu.pressure": parse_pressure, "io.pressure": parse_pressure,
    "memory.pressure": parse_pressure,
}


# -- the counters -----------------------------------------------------------------

class CgroupReading(typing.NamedTuple):
    """One poll's result.

    ``samples``: MeterSamples whose ``zone`` is the zone's identity
    (``linux_cgroups.identity``); ``malformed``: ``(zone name, file, why)``
    of files read but not understood (their statistics lost this poll);
    ``unreadable``: the same for files that could not be read;
    ``absent``: ``{file: zones without it}``; ``no_psi``: zones whose
    pressure files are missing or unsupported; ``restarted``: identities
    whose cgroup was re-created since the last poll; ``gone``: zones whose
    cgroup was gone when read.
    """

    samples: list
    malformed: list
    unreadable: list
    absent: dict
    no_psi: tuple
    restarted: tuple
    gone: tuple


def read_file(path):
    """The text of one cgroup file: one open, one read.  Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        data = os.read(fd, _READ_MAX)
    finally:
        os.close(fd)
    return data.decode("ascii")  # the kernel writes these files in ASCII


class CgroupCounters(KernelCounterTotals):
    """Per-zone counters from each zone's cgroup files, one :meth:`poll` at a time.

    ``root``: the unified hierarchy's mount point (``CgroupZones.root``);
    ``ttl``, ``max_zones``: how long a zone unseen is remembered and how
    many are, per meter (the accumulators' bounds).  What was read is a
    zone's cgroup, its identity the cgroup id.
    """

    source = "cgroup"
    meters = BY_NAME
    identities_key = "cgroups"

    def __init__(self, root, ttl=900.0, max_zones=10000, clock=time.monotonic,
                 reader=read_file):
        super().__init__(ttl, max_zones, clock)
        self.root = root.rstrip("/")
        self.reader = reader
        self._fed = {}  # (meter, key) -> the last value handed to the accumulator
        self._base = {}  # (meter, key) -> what the cgroup's value lost (io.stat devices)
        self._told = set()  # files whose absence was logged
        self._bad = set()  # (zone, file) unreadable or malformed at the last poll

    def _carried(self, name, key, entry):
        # the saved raw value was the last one fed: _rebase measures a drop from it
        if entry.raw is not None:
            self._fed[(name, key)] = entry.raw

    # -- one poll -------------------------------------------------------------------
    def read_zone(self, zone):
        """``({file: parsed}, malformed, unreadable, absent)`` of one zone;
        None if its cgroup is gone."""
        base = f"{self.root}{os_path(zone.path or '/')}".rstrip("/")
        parsed, malformed, unreadable, absent = {}, [], [], []
        for name in FILES:
            try:
                text = self.reader(f"{base}/{name}")
            except FileNotFoundError:
                if name == "cpu.stat":
                    return None
                absent.append(name)
                continue
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP and name in PRESSURE_FILES:
                    absent.append(name)  # PSI compiled in, disabled at boot
                else:
                    unreadable.append((name, exc.strerror or str(exc)))
                continue
            except UnicodeDecodeError as exc:
                malformed.append((name, f"not ASCII ({exc.reason})"))
                continue
            if len(text) >= _READ_MAX:  # one read: a file this long may be cut
                malformed.append((name, f"{_READ_MAX} bytes or more, not read whole"))
                continue
            try:
                parsed[name] = PARSERS[name](text)
            except Malformed as exc:
                malformed.append((name, str(exc)))
        return parsed, malformed, unreadable, absent

    def poll(self, zones):
        """Samples of ``zones`` (Zone objects with ``path``, as
        ``CgroupZones.zones()`` gives them)."""
        with self._lock:
            return self._poll(zones)

    def _poll(self, zones):
        now = self.clock()
        rows = {m.name: {} for m in METERS}
        bad, unreadable, absent, no_psi, restarted, gone = [], [], {}, [], [], []
        for zone in zones:
            read = self.read_zone(zone)
            if read is None:
                gone.append(zone.name)
                continue
            parsed, malformed, failed, missing = read
            key = identity(zone)
            bad += [(zone.name, f, why) for f, why in malformed]
            unreadable += [(zone.name, f, why) for f, why in failed]
            for name in missing:
                absent.setdefault(name, []).append(zone.name)
            if any(f in missing for f in PRESSURE_FILES):
                no_psi.append(zone.name)
            seen = self._idents.get(key)
            if seen is not None and seen[0] != zone.id:
                restarted.append(key)
                LOG.info("zone %s: cgroup %s replaced by %s (re-created); its totals go on "
                         "from where they were", zone.name, seen[0], zone.id)
            self._idents[key] = (zone.id, now)
            for meter in METERS:
                stats = parsed.get(meter.file)
                if stats is None or (zone.instance_uuid and meter.name in LIBVIRT_COVERED):
                    continue
                value = stats.get(meter.field)
                if value is not None:
                    rows[meter.name][key] = value
        for k in [k for k, (_, at) in self._idents.items() if now - at > self.ttl]:
            del self._idents[k]
        samples = []
        fresh = set(restarted)
        for meter in METERS:
            values = rows[meter.name]
            if meter.type == G:
                samples += [MeterSample(meter.name, G, meter.unit, raw * meter.scale, key)
                            for key, raw in values.items()]
                continue
            acc = self._acc(meter.name)
            restart = {key: 0 for key in fresh if key in values}
            if restart:  # a new cgroup counts from zero: show the accumulator that first
                acc.update(restart)
            fed = {key: self._rebase(meter.name, key, raw, key in fresh)
                   for key, raw in values.items()}
            for key, iv in acc.update(fed).items():
                total = iv.total * meter.scale if meter.scale != 1 else iv.total
                samples.append(MeterSample(meter.name, C, meter.unit, total, key))
        for k in [k for k in self._fed if k[1] not in self._idents]:
            del self._fed[k]
            self._base.pop(k, None)
        reading = CgroupReading(samples, bad, unreadable, absent, tuple(no_psi),
                                tuple(restarted), tuple(gone))
        self._log(reading)
        return reading

    def _rebase(self, name, key, raw, fresh):
        """The value for the accumulator: ``raw`` plus what this cgroup's
        value lost while it lived (an io.stat device gone), so that within
        one cgroup it never drops and nothing is counted twice."""
        k = (name, key)
        if fresh:
            self._base[k] = 0
        base = self._base.get(k, 0)
        last = self._fed.get(k)
        if last is not None and not fresh and raw + base < last:
            base = self._base[k] = last - raw
        self._fed[k] = value = raw + base
        return value

    def _log(self, reading):
        """One warning per kind of problem when files newly go bad (a file
        that stays bad is not logged again every poll); one INFO line per
        missing file name for the agent's life."""
        bad = set()
        for problems, what in ((reading.malformed, "not understood"),
                               (reading.unreadable, "unreadable")):
            now = {(zone, name) for zone, name, _ in problems}
            new = [p for p in problems if (p[0], p[1]) not in self._bad]
            bad |= now
            if new:
                zone, name, why = new[0]
                LOG.warning("smartos-telemetry: cgroup counters: %d files %s (their "
                            "statistics are skipped while they are), e.g. zone %r %s: %s",
                            len(new), what, zone, name, why)
        self._bad = bad
        groups = {}  # what is missing, by what it needs: a controller, or PSI
        for name, zones in reading.absent.items():
            if name not in self._told:
                need = "pressure" if name in PRESSURE_FILES else name.split(".")[0]
                groups.setdefault(need, ([], set()))[0].append(name)
                groups[need][1].update(zones)
        for need, (names, zones) in sorted(groups.items()):
            self._told.update(names)
            if need == "pressure":
                why = ("pressure stall information is off (kernel without CONFIG_PSI, "
                       "booted without psi=1, or cgroup.pressure 0): no *.pressure.* samples "
                       "for them")
            else:
                why = (f"the {need} controller is not enabled for them (enable it in the "
                       f"parent's cgroup.subtree_control; on a hybrid host it may be bound "
                       f"to a v1 hierarchy): no samples from these files")
            LOG.info("smartos-telemetry: cgroup counters: %s missing for %d zones (e.g. %r); "
                     "%s", ", ".join(sorted(names)), len(zones), min(zones), why)


def psi_state(root):
    """``smartos-telemetry check``: whether pressure stall information can be
    read under ``root`` -- ``"enabled"`` or the reason it is not."""
    path = os.path.join(root, "cpu.pressure")
    try:
        parse_pressure(read_file(path))
    except FileNotFoundError:
        return (f"not available ({path} missing: kernel without CONFIG_PSI); "
                f"no *.pressure.* samples")
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return "disabled (boot with psi=1 to enable it); no *.pressure.* samples"
        return f"unreadable ({path}: {exc.strerror or exc}); no *.pressure.* samples"
    except (Malformed, UnicodeDecodeError) as exc:
        return f"not understood ({path}: {exc}); no *.pressure.* samples"
    return "enabled"


def controllers(root):
    """The controllers the unified hierarchy offers (``cgroup.controllers``)."""
    try:
        return tuple(read_file(os.path.join(root, "cgroup.controllers")).split())
    except (OSError, UnicodeDecodeError):
        return ()
