"""The meter catalogue: every meter we emit, and where it comes from.

One entry per meter: its Ceilometer name, unit, kind and description, and
per platform and engine the aggregation of the shipped script that feeds
it -- or the reason the platform has no honest source, in which case the
meter is not emitted there.  The README's meter table is generated from
this catalogue (``python -m smartos_telemetry.meters.catalogue``) and a test
keeps the two equal.

Kinds, and the samples each yields per zone and polling interval:

* ``distribution`` (a latency histogram in the kernel):
  ``NAME.p50``, ``NAME.p95``, ``NAME.p99``, ``NAME.max`` -- gauges over the
  interval's events, in the histogram's unit (ns); ``NAME.count`` --
  cumulative events; ``NAME.sum`` -- cumulative total (ns), exact where the
  script keeps a ``sum()`` beside the histogram, otherwise estimated from
  the bucket midpoints (within the bucket error, at most 10%).  The
  pollsters emit those ``[smartos] distribution_statistics`` names
  (default p99, count, sum).
* ``counter``: ``NAME``, cumulative.
* ``health``: per host, cumulative, from the engine's own counters.
"""

import dataclasses

SMARTOS_DTRACE = ("smartos", "dtrace")
LINUX_DTRACE = ("linux", "dtrace")
LINUX_BPFTRACE = ("linux", "bpftrace")
LINUX_LIBBPF = ("linux", "libbpf")
PLATFORM_ENGINES = (SMARTOS_DTRACE, LINUX_DTRACE, LINUX_BPFTRACE, LINUX_LIBBPF)

DISTRIBUTION_SUFFIXES = ("p50", "p95", "p99", "max", "count", "sum")


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a meter's values come from on one platform and engine.

    ``zone_key`` names the aggregation key that identifies the zone
    (``cgroup_id``, ``zonename`` or ``zoneid``); ``sum_aggregation``, for a
    distribution, names the exact ``sum()`` kept beside the histogram.
    """

    script: str
    aggregation: str
    zone_key: str
    sum_aggregation: str = None


@dataclasses.dataclass(frozen=True)
class Meter:
    name: str
    kind: str  # distribution | counter | health
    unit: str
    description: str
    sources: dict = dataclasses.field(default_factory=dict)
    #: platform/engine -> why there is no source there
    missing: dict = dataclasses.field(default_factory=dict)

    def samples(self, statistics=DISTRIBUTION_SUFFIXES):
        """``(name, type, unit)`` of every sample this meter yields; a
        distribution only those of ``statistics`` (``[smartos]
        distribution_statistics``)."""
        if self.kind != "distribution":
            return [(self.name, "cumulative", self.unit)]
        out = []
        for suffix in (s for s in DISTRIBUTION_SUFFIXES if s in statistics):
            if suffix in ("count", "sum"):
                unit = "event" if suffix == "count" else self.unit
                out.append((f"{self.name}.{suffix}", "cumulative", unit))
            else:
                out.append((f"{self.name}.{suffix}", "gauge", self.unit))
        return out


def _src(script, aggregation, zone_key, sum_aggregation=None):
    return Source(script, aggregation, zone_key, sum_aggregation)


CATALOGUE = (
    Meter(
        "cpu.runqueue.latency", "distribution", "ns",
        "Time a zone's threads waited runnable for a CPU, from becoming runnable (wakeup or "
        "preemption) to running.  SmartOS: first sched:::enqueue to on-cpu, over every "
        "queue a migrating thread sat on (for user threads, the waits zone_misc "
        "nsec_waitrq sums); Linux: "
        "sched_wakeup or a preempting sched_switch to the task's switch-in.",
        {
            SMARTOS_DTRACE: _src("smartos/runqueue.d", "runq_ns", "zonename"),
            LINUX_DTRACE: _src("linux/runqueue.d", "runq_ns", "cgroup_id"),
            LINUX_BPFTRACE: _src("linux/runqueue.bt", "runq_ns", "cgroup_id"),
            LINUX_LIBBPF: _src("linux/runqueue.bpf.c", "runq_ns", "cgroup_id"),
        }),
    Meter(
        "disk.io.latency", "distribution", "ns",
        "Latency of the zone's disk I/O.  SmartOS: ZFS reads and writes of the zone's zios "
        "from dispatch to completion, one sample per leaf-vdev I/O (a mirror write counts "
        "once per side), queue wait not included; writes are mostly the zone's "
        "synchronous ones, as TXG writes are issued by the global zone.  Linux: "
        "block-layer queue to completion, by submitting cgroup.",
        {
            SMARTOS_DTRACE: _src("smartos/zfs_io.d", "zio_ns", "zoneid"),
            LINUX_DTRACE: _src("linux/diskio.d", "io_ns", "cgroup_id"),
            LINUX_BPFTRACE: _src("linux/diskio.bt", "io_ns", "cgroup_id"),
            LINUX_LIBBPF: _src("linux/diskio.bpf.c", "io_ns", "cgroup_id"),
        }),
    Meter(
        "disk.throttle.delay", "counter", "ns",
        "Delay the ZFS I/O throttle injected into the zone's threads (zfs-zone-wait, fired "
        "just before the wait; 5 us steps, up to 100 us, 200 us for writes during heavy "
        "TXG syncing).",
        {SMARTOS_DTRACE: _src("smartos/zfs_io.d", "throttle_delay_ns", "zoneid")},
        {LINUX_DTRACE: "Linux has no per-zone I/O throttle delay source (io.pressure is "
                       "stall time, not injected delay)",
         LINUX_BPFTRACE: "as for Linux DTrace",
         LINUX_LIBBPF: "as for Linux DTrace"}),
    Meter(
        "disk.throttle.count", "counter", "event",
        "Times the ZFS I/O throttle delayed one of the zone's reads or writes "
        "(zfs-zone-wait).",
        {SMARTOS_DTRACE: _src("smartos/zfs_io.d", "throttle_count", "zoneid")},
        {LINUX_DTRACE: "no per-zone I/O throttle events on Linux",
         LINUX_BPFTRACE: "no per-zone I/O throttle events on Linux",
         LINUX_LIBBPF: "no per-zone I/O throttle events on Linux"}),
    Meter(
        "network.tcp.connect.latency", "distribution", "ns",
        "Active TCP open: first SYN sent to SYN-ACK received, by the connection's zone "
        "(SmartOS: the tcp provider's cs_zoneid, the zone of the connection's credential).",
        {
            SMARTOS_DTRACE: _src("smartos/tcp.d", "connect_ns", "zoneid"),
            LINUX_DTRACE: _src("linux/tcp.d", "connect_ns", "cgroup_id"),
            LINUX_BPFTRACE: _src("linux/tcp.bt", "connect_ns", "cgroup_id"),
            LINUX_LIBBPF: _src("linux/tcp.bpf.c", "connect_ns", "cgroup_id"),
        }),
    Meter(
        "network.tcp.rtt", "distribution", "ns",
        "Smoothed round-trip time of the zone's TCP connections, one sample per ACK "
        "(Linux tcp_probe) or per RTT measurement (illumos tcp_set_rto: the SRTT before "
        "that sample, filed under the zone of the connection's credential).",
        {
            SMARTOS_DTRACE: _src("smartos/tcp.d", "srtt_ns", "zoneid"),
            LINUX_DTRACE: _src("linux/tcp.d", "srtt_ns", "cgroup_id"),
            LINUX_BPFTRACE: _src("linux/tcp.bt", "srtt_ns", "cgroup_id"),
            LINUX_LIBBPF: _src("linux/tcp.bpf.c", "srtt_ns", "cgroup_id"),
        }),
    Meter(
        "network.tcp.retransmits", "counter", "segment",
        "TCP segments the zone's connections retransmitted (SmartOS: tcp:::send with "
        "tcps_retransmit; Linux: tcp_retransmit_skb).",
        {
            SMARTOS_DTRACE: _src("smartos/tcp.d", "retransmits", "zoneid"),
            LINUX_DTRACE: _src("linux/tcp.d", "retransmits", "cgroup_id"),
            LINUX_BPFTRACE: _src("linux/tcp.bt", "retransmits", "cgroup_id"),
            LINUX_LIBBPF: _src("linux/tcp.bpf.c", "retransmits", "cgroup_id"),
        }),
    Meter(
        "network.tcp.connect.failures", "counter", "event",
        "Active TCP opens that did not reach ESTABLISHED: refused, reset or timed out on "
        "Linux; on SmartOS only those an RST refused (tcp:::connect-refused; a timed-out "
        "SYN fires no probe).",
        {
            SMARTOS_DTRACE: _src("smartos/tcp.d", "connect_failed", "zoneid"),
            LINUX_DTRACE: _src("linux/tcp.d", "connect_failed", "cgroup_id"),
            LINUX_BPFTRACE: _src("linux/tcp.bt", "connect_failed", "cgroup_id"),
            LINUX_LIBBPF: _src("linux/tcp.bpf.c", "connect_failed", "cgroup_id"),
        }),
    Meter("telemetry.engine.drops", "health", "event",
          "Records the tracing engine dropped (all kinds), per host."),
    Meter("telemetry.engine.errors", "health", "event",
          "Run-time errors the tracing engine reported, per host."),
    Meter("telemetry.engine.restarts", "health", "event",
          "Times the tracing engine was restarted after dying, per host."),
)

BY_NAME = {m.name: m for m in CATALOGUE}


def counter_samples():
    """``{name: (type, unit)}`` of the per-zone samples of the Linux cgroup
    counter families (no script: each zone's cgroup-v2 files, read at poll
    time; meters/cgroup_counters.py says where each comes from).  They go
    to Gnocchi beside the catalogue's meters."""
    from smartos_telemetry.meters.cgroup_counters import METERS

    return {m.name: (m.type, m.unit) for m in METERS}


def meters_for(platform, engine):
    """The zone meters with a source on ``(platform, engine)``."""
    return [m for m in CATALOGUE if (platform, engine) in m.sources]


def scripts_for(platform, engine):
    """The scripts ``(platform, engine)`` must run for its meters, sorted."""
    return sorted({m.sources[(platform, engine)].script for m in meters_for(platform, engine)})


def _sample_summary(meter):
    if meter.kind == "distribution":
        return (f"``{meter.name}.p50 .p95 .p99 .max`` (gauge, {meter.unit}); "
                f"``.count`` (cumulative, event); ``.sum`` (cumulative, {meter.unit})")
    scope = "per host" if meter.kind == "health" else "per zone"
    return f"``{meter.name}`` (cumulative, {meter.unit}, {scope})"


def readme_table():
    """The README's meter table (a reStructuredText list-table), from the catalogue."""
    lines = [".. list-table::", "   :header-rows: 1", "",
             "   * - Samples", "     - What", "     - SmartOS (D)", "     - Linux (D)",
             "     - Linux (bpftrace)", "     - Linux (libbpf)"]
    for meter in CATALOGUE:
        lines.append(f"   * - {_sample_summary(meter)}")
        lines.append(f"     - {meter.description}")
        for pe in PLATFORM_ENGINES:
            src = meter.sources.get(pe)
            if src:
                cell = f"``{src.script}`` ``@{src.aggregation}`` by {src.zone_key}"
            elif meter.kind == "health":
                cell = "engine counters"
            else:
                cell = "not emitted: " + meter.missing.get(pe, "no source")
            lines.append(f"     - {cell}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
