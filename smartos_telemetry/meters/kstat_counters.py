"""Per-zone counters the SmartOS kernel already keeps, from kstats.

One ``kstat -p`` run per poll reads every selected kstat
(``module:instance:name:statistic<TAB>value`` a line); each kstat is matched
to its zone by its ``zonename`` *data field* -- the full zonename, never
the kstat name (cut at 30 characters, so a 36-character VM UUID does not
fit) and never the zoneid (a new one on every boot).  Samples are keyed by
the VM UUID (``MeterSample.zone``); per-vnic samples also carry the
interface (:class:`NicSample`).

Why ``kstat -p``: the illumos ``kstat(1M)`` has had it in every version
(``-j`` came with the 2013 C rewrite), it is line-oriented -- one bad line
costs one statistic, counted, not the poll -- and it is testable from
fixtures on any host.  libkstat through ctypes would save one fork per poll
(milliseconds; Ceilometer polls every few minutes) at the price of
hand-laid ``kstat_t``/``kstat_named_t`` structures nothing here could test.

Meters (cumulative ones are running totals kept by
:class:`~smartos_telemetry.meters.accumulator.Accumulator`, keyed by VM UUID, never
by zoneid, so they survive zone reboots without going backwards; the names
of Ceilometer's libvirt meters keep Ceilometer's type and unit):

==============================  ==========  =======  ==========================================
meter                           type        unit     source (module:name statistic)
==============================  ==========  =======  ==========================================
cpu                             cumulative  ns       zones:<zonename[:30]> nsec_user + nsec_sys
cpu.user                        cumulative  ns       zones:<zonename[:30]> nsec_user
cpu.system                      cumulative  ns       zones:<zonename[:30]> nsec_sys
cpu.runqueue.wait               cumulative  ns       zones:<zonename[:30]> nsec_waitrq
zone.init.restarts              cumulative  event    zones:<zonename[:30]> init_restarts
cpu.cap.usage                   gauge       %        caps:cpucaps_zone_<zoneid> usage
cpu.cap.limit                   gauge       %        caps:cpucaps_zone_<zoneid> value
cpu.cap.above                   cumulative  s        caps:cpucaps_zone_<zoneid> above_sec
cpu.cap.below                   cumulative  s        caps:cpucaps_zone_<zoneid> below_sec
cpu.cap.waiting                 gauge       thread   caps:cpucaps_zone_<zoneid> nwait
memory                          gauge       MiB      memory_cap:<zonename[:30]> physcap / 2^20
memory.usage                    gauge       MiB      memory_cap:<zonename[:30]> rss / 2^20
memory.swap.usage               gauge       MiB      memory_cap:<zonename[:30]> swap / 2^20
memory.swap.in                  cumulative  MiB      memory_cap:<zonename[:30]> anonpgin x page
memory.paged.out                cumulative  B        memory_cap:<zonename[:30]> pagedout
memory.cap.exceeded             cumulative  event    memory_cap:<zonename[:30]> nover
memory.anon.alloc.failures      cumulative  event    memory_cap:<zonename[:30]> anon_alloc_fail
disk.vfs.read.requests          cumulative  request  zone_vfs:<zonename[:30]> reads
disk.vfs.write.requests         cumulative  request  zone_vfs:<zonename[:30]> writes
disk.vfs.read.bytes             cumulative  B        zone_vfs:<zonename[:30]> nread
disk.vfs.write.bytes            cumulative  B        zone_vfs:<zonename[:30]> nwritten
disk.vfs.read.latency           cumulative  ns       zone_vfs:<zonename[:30]> rlentime
disk.vfs.write.latency          cumulative  ns       zone_vfs:<zonename[:30]> wlentime
disk.vfs.slow.10ms              cumulative  request  zone_vfs:<zonename[:30]> 10ms_ops
disk.vfs.slow.100ms             cumulative  request  zone_vfs:<zonename[:30]> 100ms_ops
disk.vfs.slow.1s                cumulative  request  zone_vfs:<zonename[:30]> 1s_ops
disk.vfs.slow.10s               cumulative  request  zone_vfs:<zonename[:30]> 10s_ops
disk.vfs.throttle.count         cumulative  event    zone_vfs:<zonename[:30]> delay_cnt
disk.vfs.throttle.delay         cumulative  ns       zone_vfs:<zonename[:30]> delay_time x 1000
disk.zfs.read.requests          cumulative  request  zone_zfs:<zonename[:30]> reads
disk.zfs.write.requests         cumulative  request  zone_zfs:<zonename[:30]> writes
disk.zfs.read.bytes             cumulative  B        zone_zfs:<zonename[:30]> nread
disk.zfs.write.bytes            cumulative  B        zone_zfs:<zonename[:30]> nwritten
disk.zfs.read.latency           cumulative  ns       zone_zfs:<zonename[:30]> rlentime
disk.zfs.read.wait              cumulative  ns       zone_zfs:<zonename[:30]> waittime
network.incoming.bytes          cumulative  B        link:z<zoneid>_<nic> rbytes64
network.outgoing.bytes          cumulative  B        link:z<zoneid>_<nic> obytes64
network.incoming.packets        cumulative  packet   link:z<zoneid>_<nic> ipackets64
network.outgoing.packets        cumulative  packet   link:z<zoneid>_<nic> opackets64
network.incoming.packets.error  cumulative  packet   link:z<zoneid>_<nic> ierrors
network.outgoing.packets.error  cumulative  packet   link:z<zoneid>_<nic> oerrors
network.incoming.packets.drop   cumulative  packet   link:z<zoneid>_<nic> norcvbuf
network.outgoing.packets.drop   cumulative  packet   link:z<zoneid>_<nic> noxmtbuf
==============================  ==========  =======  ==========================================

Traps, and what is done about them:

* ``zone_vfs`` ``wtime``/``wlentime``/``wcnt`` are the *write* queue
  (``fop_write`` enters the kstat wait queue, ``fop_read`` the run queue),
  not a wait queue: ``wlentime`` is the writes' total latency.  ``rlentime``
  / ``wlentime`` (queue length x time, ns) are the sum of every operation's
  latency, which is what Ceilometer's ``*.latency`` meters are; ``rtime`` /
  ``wtime`` (time the queue was non-empty) are not.
* The slow-op counters overlap: an operation of 1 s or more also counts in
  ``10ms_ops`` and ``100ms_ops``.  ``disk.vfs.slow.X`` is "operations of at
  least X"; never add them (ops between 10 and 100 ms = slow.10ms -
  slow.100ms).
* ``delay_time`` is in microseconds; ``disk.vfs.throttle.delay`` is ns.
* zoneids change on every boot, and a booted zone's kstats start from zero.
  A kstat's identity is (instance, name, crtime); when the one feeding a
  zone changes, the zone restarted: its running totals go on from where
  they were, adding the new kstat's values from zero (a restart that has
  already counted past the old values is not mistaken for progress).  What
  a zone did between the last poll and its shutdown is lost.
* kstat names are cut at 30 characters: zones are matched by the full
  ``zonename`` data field; a kstat without one is counted as unattributed
  and skipped, never guessed.
* ``memory``: an uncapped zone's ``physcap`` is not 0 but the largest cap
  the kernel keeps: ``ptob(UINT32_MAX)`` pages on current platform images
  (illumos-joyent ``zone.c``, ``zone_mcap_kstat_update()``: 17,592,186,040,320
  bytes with 4 KiB pages), ``UINT64_MAX`` on older ones (``zone_phys_mem_ctl``
  reported as is); any of 0, ``UINT64_MAX`` and ``UINT32_MAX`` pages means no
  cap, and no sample is made (``swapcap`` is encoded the same way and not
  emitted).  KVM and bhyve zones' caps include the hypervisor's own memory.
* ``zone.init.restarts``: times the kernel restarted the zone's init; for
  bhyve and KVM zones, whose init is the hypervisor process, each guest
  reboot (smartos-live ``src/vm/lib/metadata/agent.js`` watches it for
  that).  A zone boot starts it from zero (new kstat).
* ``disk.zfs.*`` (``zfs_zone.c`` ``zfs_zone_zio_done()``): one count per
  leaf-vdev I/O (a write to a two-way mirror counts twice, a read once),
  attributed to the zone whose thread created the zio: asynchronous (TXG)
  writes are issued by the global zone's sync thread, so a zone's write
  counts and bytes are mostly its synchronous writes.  ``waittime`` and
  ``rlentime`` cover reads only.
* ``ierrors``/``oerrors``/``norcvbuf``/``noxmtbuf`` are 32-bit in every
  link kstat (``dls_stat.c``); a wrap reads as a restart of that counter
  (the accumulator's rule): the counts between the last poll and the
  wrap are lost.
* ``caps`` kstats exist only for zones with a CPU cap and are created in the
  zone (``rctl.c``, ``kstat_create_zone("caps", zoneid, ...)``: instance =
  zoneid); ``above_sec``/``below_sec`` go back to 0 when the cap changes
  (``cpucaps.c``), read as a restart like a wrap.
"""

import time
import typing

from oslo_log import log as logging

from smartos_telemetry.commands import run_command
from smartos_telemetry.meters.kernel_counters import KernelCounterTotals
from smartos_telemetry.meters.reduce import MeterSample
from smartos_telemetry.zones.smartos_vmadm import GLOBAL_ZONE

LOG = logging.getLogger(__name__)

MIB = 1 << 20
UINT32_MAX, UINT64_MAX = (1 << 32) - 1, (1 << 64) - 1
#: what ``kstat -p`` is asked for (one run; selectors may be regular expressions)
KSTAT_SELECTORS = ("zones:::", "zone_vfs:::", "zone_zfs:::", "memory_cap:::",
                   "caps::/^cpucaps_zone_/:", "link:::")
MODULES = ("zones", "zone_vfs", "zone_zfs", "memory_cap", "caps", "link")
PER_NIC_MODULE = "link"


class KstatMeter(typing.NamedTuple):
    """One meter: ``fields`` of a kstat of ``module``, summed, times ``scale``."""

    name: str
    type: str  # gauge | cumulative
    unit: str
    module: str
    fields: tuple
    scale: float = 1


def _m(name, type_, unit, module, *fields, scale=1):
    return KstatMeter(name, type_, unit, module, fields, scale)


C, G = "cumulative", "gauge"
METERS = (
    _m("cpu", C, "ns", "zones", "nsec_user", "nsec_sys"),
    _m("cpu.user", C, "ns", "zones", "nsec_user"),
    _m("cpu.system", C, "ns", "zones", "nsec_sys"),
    _m("cpu.runqueue.wait", C, "ns", "zones", "nsec_waitrq"),
    _m("zone.init.restarts", C, "event", "zones", "init_restarts"),
    _m("cpu.cap.usage", G, "%", "caps", "usage"),
    _m("cpu.cap.limit", G, "%", "caps", "value"),
    _m("cpu.cap.above", C, "s", "caps", "above_sec"),
    _m("cpu.cap.below", C, "s", "caps", "below_sec"),
    _m("cpu.cap.waiting", G, "thread", "caps", "nwait"),
    _m("memory", G, "MiB", "memory_cap", "physcap", scale=1 / MIB),
    _m("memory.usage", G, "MiB", "memory_cap", "rss", scale=1 / MIB),
    _m("memory.swap.usage", G, "MiB", "memory_cap", "swap", scale=1 / MIB),
    _m("memory.swap.in", C, "MiB", "memory_cap", "anonpgin"),  # scale: the page size
    _m("memory.paged.out", C, "B", "memory_cap", "pagedout"),
    _m("memory.cap.exceeded", C, "event", "memory_cap", "nover"),
    _m("memory.anon.alloc.failures", C, "event", "memory_cap", "anon_alloc_fail"),
    _m("disk.vfs.read.requests", C, "request", "zone_vfs", "reads"),
    _m("disk.vfs.write.requests", C, "request", "zone_vfs", "writes"),
    _m("disk.vfs.read.bytes", C, "B", "zone_vfs", "nread"),
    _m("disk.vfs.write.bytes", C, "B", "zone_vfs", "nwritten"),
    _m("disk.vfs.read.latency", C, "ns", "zone_vfs", "rlentime"),
    _m("disk.vfs.write.latency", C, "ns", "zone_vfs", "wlentime"),
    _m("disk.vfs.slow.10ms", C, "request", "zone_vfs", "10ms_ops"),
    _m("disk.vfs.slow.100ms", C, "request", "zone_vfs", "100ms_ops"),
    _m("disk.vfs.slow.1s", C, "request", "zone_vfs", "1s_ops"),
    _m("disk.vfs.slow.10s", C, "request", "zone_vfs", "10s_ops"),
    _m("disk.vfs.throttle.count", C, "event", "zone_vfs", "delay_cnt"),
    _m("disk.vfs.throttle.delay", C, "ns", "zone_vfs", "delay_time", scale=1000),
    _m("disk.zfs.read.requests", C, "request", "zone_zfs", "reads"),
    _m("disk.zfs.write.requests", C, "request", "zone_zfs", "writes"),
    _m("disk.zfs.read.bytes", C, "B", "zone_zfs", "nread"),
    _m("disk.zfs.write.bytes", C, "B", "zone_zfs", "nwritten"),
    _m("disk.zfs.read.latency", C, "ns", "zone_zfs", "rlentime"),
    _m("disk.zfs.read.wait", C, "ns", "zone_zfs", "waittime"),
    _m("network.incoming.bytes", C, "B", "link", "rbytes64"),
    _m("network.outgoing.bytes", C, "B", "link", "obytes64"),
    _m("network.incoming.packets", C, "packet", "link", "ipackets64"),
    _m("network.outgoing.packets", C, "packet", "link", "opackets64"),
    _m("network.incoming.packets.error", C, "packet", "link", "ierrors"),
    _m("network.outgoing.packets.error", C, "packet", "link", "oerrors"),
    _m("network.incoming.packets.drop", C, "packet", "link", "norcvbuf"),
    _m("network.outgoing.packets.drop", C, "packet", "link", "noxmtbuf"),
)
BY_NAME = {m.name: m for m in METERS}


# -- kstat -p ---------------------------------------------------------------------

class Kstat(typing.NamedTuple):
    module: str
    instance: int
    name: str
    stats: dict  # statistic -> int, float or str


def _value(text):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_kstat_p(text):
    """``(kstats, malformed)`` from ``kstat -p`` output.

    Each line is ``module:instance:name:statistic<TAB>value``.  The name is
    everything between the instance and the last ``:`` (names may hold
    colons; statistics do not).  A line without a tab, with fewer than four
    fields, an empty module or statistic, or a non-numeric instance is
    skipped and counted in ``malformed``.  Values are ints where they parse
    as such, else floats, else strings.
    """
    kstats, malformed = {}, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        key, tab, value = line.partition("\t")
        parts = key.split(":")
        if not tab or len(parts) < 4 or not parts[0] or not parts[-1] \
                or not parts[1].isdigit():
            malformed += 1
            continue
        module, instance, name, stat = parts[0], int(parts[1]), ":".join(parts[2:-1]), parts[-1]
        ks = kstats.get((module, instance, name))
        if ks is None:
            ks = kstats[(module, instance, name)] = Kstat(module, instance, name, {})
        ks.stats[stat] = _value(value.rstrip("\r"))
    return list(kstats.values()), malformed


def link_interface(kstat_name):
    """``z12_net0`` -> ``net0``, ``z7_eth0`` -> ``eth0`` (the global zone's
    name for a zone's vnic); other names are returned as they are."""
    head, sep, rest = kstat_name.partition("_")
    if sep and rest and head[:1] == "z" and head[1:].isdigit():
        return rest
    return kstat_name


# -- the counters -----------------------------------------------------------------

class NicSample(typing.NamedTuple):
    """A per-vnic sample: ``sample.zone`` is the VM UUID, ``interface`` the
    vnic's name inside the zone, as in vmadm's ``nics`` (``net0``; ``eth0``
    in lx zones)."""

    interface: str
    sample: MeterSample


class KstatReading(typing.NamedTuple):
    """One poll's result.

    ``samples``: per-zone samples (zone = VM UUID); ``nic_samples``: per-vnic
    ones; ``malformed``: lines of ``kstat -p`` skipped; ``unattributed``:
    kstats without a ``zonename`` field, skipped; ``unknown_zones``:
    zonenames with kstats that are not among the zones asked for;
    ``restarted``: VM UUIDs whose kstats were re-created since the last poll
    (zone reboot; vnic re-created); ``bad_values``: statistics a meter
    needs that were missing or not integers.
    """

    samples: list
    nic_samples: list
    malformed: int
    unattributed: int
    unknown_zones: tuple
    restarted: tuple
    bad_values: int


class KstatCounters(KernelCounterTotals):
    """Per-zone counters from one ``kstat -p`` run per :meth:`poll`.

    ``kstat``: the command's path; ``timeout``: seconds one run may take;
    ``page_size``: bytes per page (``pagesize(1)``; 4096 on x86) for
    ``memory.swap.in``; ``ttl``, ``max_zones``: how long a zone unseen is
    remembered and how many are, per meter (the accumulators' bounds).
    What was read is a kstat, keyed ``(module, key)``, its identity
    ``(instance, name, crtime)``.
    """

    source = "kstat"
    meters = BY_NAME
    identities_key = "kstats"

    def __init__(self, kstat="/usr/bin/kstat", timeout=30.0, page_size=4096, ttl=900.0,
                 max_zones=10000, clock=time.monotonic):
        super().__init__(ttl, max_zones, clock)
        self.argv = [kstat, "-p", *KSTAT_SELECTORS]
        self.timeout = timeout
        self.page_size = page_size
        # what memory_cap physcap reads for an uncapped zone (see the docstring)
        self.no_cap = (0, UINT64_MAX, UINT32_MAX * page_size)

    @staticmethod
    def _saved_identity(ident):
        return tuple(ident)  # JSON gives the identity back as a list

    def _scale(self, meter):
        return self.page_size / MIB if meter.name == "memory.swap.in" else meter.scale

    def read(self):
        """``kstat -p`` output (raises CommandFailed)."""
        return run_command(self.argv, self.timeout,
                           f"check that {self.argv[0]} exists and runs in the global zone "
                           f"within {self.timeout:g} s, or set the kstat path/timeout options")

    def poll(self, zones=None):
        """Run ``kstat -p`` and fold it in; see :meth:`fold`."""
        return self.fold(self.read(), zones)

    def fold(self, text, zones=None):
        """Samples from one ``kstat -p`` output.

        ``zones``: ``{zonename: VM UUID}`` of the zones to report (e.g.
        ``SmartOSZones.uuids_by_zonename()``); kstats of any other zone are
        skipped.  None: every non-global zone, keyed by its zonename.
        """
        kstats, malformed = parse_kstat_p(text)
        chosen, unattributed, unknown = self._attribute(kstats, zones)
        with self._lock:
            return self._fold(chosen, malformed, unattributed, unknown)

    def _fold(self, chosen, malformed, unattributed, unknown):
        restarted = self._restarts(chosen)
        samples, nic_samples, bad = [], [], 0
        for meter in METERS:
            rows, scale = {}, self._scale(meter)
            for (module, key), ks in chosen.items():
                if module != meter.module:
                    continue
                values = [ks.stats.get(f) for f in meter.fields]
                if not all(isinstance(v, int) and v >= 0 for v in values):
                    bad += 1
                    continue
                rows[key] = sum(values)
            if meter.type == G:
                out = {key: raw * scale for key, raw in rows.items()
                       if not (meter.name == "memory" and raw in self.no_cap)}
            else:
                acc = self._acc(meter.name)
                fresh = {key: 0 for key in restarted.get(meter.module, ()) if key in rows}
                if fresh:  # a new kstat counts from zero: show the accumulator that first
                    acc.update(fresh)
                out = {key: iv.total * scale if scale != 1 else iv.total
                       for key, iv in acc.update(rows).items()}
            for key, volume in out.items():
                if meter.module == PER_NIC_MODULE:
                    nic_samples.append(NicSample(
                        key[1], MeterSample(meter.name, meter.type, meter.unit, volume, key[0])))
                else:
                    samples.append(MeterSample(meter.name, meter.type, meter.unit, volume, key))
        if malformed:
            LOG.warning("%s: skipped %d malformed lines", self.argv[0], malformed)
        rebooted = sorted({k[0] if isinstance(k, tuple) else k
                           for keys in restarted.values() for k in keys})
        return KstatReading(samples, nic_samples, malformed, unattributed,
                            tuple(sorted(unknown)), tuple(rebooted), bad)

    @staticmethod
    def _attribute(kstats, zones):
        """``({(module, key): Kstat}, unattributed, unknown zonenames)``; key is
        the VM UUID, or (VM UUID, interface) for vnics.  Two kstats for one
        key (a zone caught mid-reboot): the newer (crtime) wins."""
        chosen, unattributed, unknown = {}, 0, set()
        for ks in kstats:
            if ks.module not in MODULES:
                continue
            if ks.module == "caps" and not ks.name.startswith("cpucaps_zone_"):
                continue
            zonename = ks.stats.get("zonename")
            if not isinstance(zonename, str) or not zonename:
                unattributed += 1
                continue
            if zonename == GLOBAL_ZONE:
                continue
            uuid = zonename if zones is None else zones.get(zonename)
            if uuid is None:
                unknown.add(zonename)
                continue
            key = (uuid, link_interface(ks.name)) if ks.module == PER_NIC_MODULE else uuid
            old = chosen.get((ks.module, key))
            if old is None or _crtime(ks) >= _crtime(old):
                chosen[(ks.module, key)] = ks
        return chosen, unattributed, unknown

    def _restarts(self, chosen):
        """``{module: keys}`` whose kstat is not the one seen last time."""
        now = self.clock()
        restarted = {}
        for (module, key), ks in chosen.items():
            ident = (ks.instance, ks.name, ks.stats.get("crtime"))
            seen = self._idents.get((module, key))
            if seen is not None and seen[0] != ident:
                restarted.setdefault(module, set()).add(key)
                LOG.info("zone %s: %s kstat %s:%s replaced by %s:%s (zone rebooted or vnic "
                         "re-created); its totals go on from where they were", key, module,
                         seen[0][0], seen[0][1], ks.instance, ks.name)
            self._idents[(module, key)] = (ident, now)
        for k in [k for k, (_, at) in self._idents.items() if now - at > self.ttl]:
            del self._idents[k]
        return restarted


def _crtime(ks):
    crtime = ks.stats.get("crtime")
    return crtime if isinstance(crtime, (int, float)) else 0
