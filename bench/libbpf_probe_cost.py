#!/usr/bin/env python3
"""Kernel cost per event of the libbpf engine's programs beside bpftrace's and DTrace's,
snapshot read time for 1,000 zones, and start-to-ready time.

Run as root:  python bench/libbpf_probe_cost.py [--seconds 3] [--starts 5] [--no-dtrace]
              [--only snapshot]

Per meter family (run queue, disk I/O, TCP), in the SAME run and under the
same workload (bench/probe_workloads.py; the run queue also under a pipe
ping-pong, whose switch rate keeps the programs' data in the caches): the libbpf engine's program
(in this process), the bpftrace engine's script (a child), the Oracle
DTrace consumer's D script (a child in tools/dtrace-sandbox, unless
--no-dtrace), and empty tp_btf programs on every hook the libbpf programs
use (bench/empty_tp_btf.bpf.c, in this process).  With BPF run-time stats
on (BPF_ENABLE_STATS) the kernel counts run time and runs of every program;
ns/event = delta run_time_ns / delta run_cnt over the workload
(bench/bpf_stats.py).  Targets (issue 14): run queue <= 3x the empty
sched_switch program per context switch, all of an engine's programs
summed; disk I/O <= 3x per I/O (its two programs against the two empty ones
on the same hooks); TCP <= 3x per event, hook by hook.

Alone (``--before COMMIT``): each libbpf program of this tree, and the
same program of an earlier commit (its sources compiled now, loaded
without the engine), attached alone beside the empty programs -- no other
tracer on the hook evicting their data from the caches -- in alternating
rounds of one run; the ratio is taken per round, and the range over the
rounds is reported.  This is the cost a node pays with the agent's engine
only.

Snapshot read: the three engines' maps filled from user space with 1,000
zones, every histogram holding 40 non-zero buckets; one snapshot of all
three engines timed (CPU time of this process: on a shared machine wall
time is mostly waiting for a CPU) with every zone changed since the last
one (in new buckets: nothing reusable; or, as from poll to poll, in the
buckets it had) and with none changed, and the kernel's copy of the maps
alone, with the part of it the cyclic garbage collector took.  Target <= 5 ms.
Beside it, what the reducer's accumulators take of those snapshots, their
packed histograms against plain ones of the same buckets: a faster read must
not hand its cost on downstream.

Start to ready: LibbpfEngine.start() (open, load, verify, attach) per
program and for all three.  Target <= 0.5 s.

Figures go to bench/results/libbpf_probe_cost.txt (and stdout).
"""

import argparse
import gc
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import results_file  # noqa: E402
from bpf_stats import per_event, prog_info, prog_stats, stats_enabled  # noqa: E402
from probe_workloads import WORKLOADS  # noqa: E402

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine  # noqa: E402
from smartos_telemetry.engines.libbpf import binding as binding_mod  # noqa: E402
from smartos_telemetry.engines.libbpf import build_objects  # noqa: E402
from smartos_telemetry.engines.libbpf.engine import LibbpfEngine  # noqa: E402
from smartos_telemetry.engines.libbpf.maps import HIST_SLOTS  # noqa: E402
from smartos_telemetry.meters.accumulator import HistogramAccumulator  # noqa: E402
from smartos_telemetry.snapshot import Histogram  # noqa: E402

SCRIPTS = os.path.join(REPO, "d_scripts", "linux")
RESULTS = os.path.join(HERE, "results", "libbpf_probe_cost.txt")
EMPTY_SOURCE = os.path.join(HERE, "empty_tp_btf.bpf.c")
FAMILIES = ("runqueue", "diskio", "tcp")
#: libbpf program -> the empty program on the same hook
SAME_HOOK = {"runq_switch": "empty_switch", "runq_wakeup": None, "runq_wakeup_new": None,
             "io_begin": "empty_io_start", "io_done": "empty_rq_done",
             "tcp_state": "empty_sk_state", "tcp_ack": "empty_tcp_probe",
             "tcp_retransmit": None}


def fd_stats(fds):
    """``{name: (run_time_ns, run_cnt)}`` of the programs behind this process's ``fds``."""
    out = {}
    for fd in fds:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        name, _, t, n = prog_info(int(fields["prog_id"]))
        out[name] = (t, n)
    return out


def libbpf_stats(engine):
    lib = engine._b.lib
    ffi = engine._b.ffi
    fds, prog = [], lib.bpf_object__next_program(engine._obj, ffi.NULL)
    while prog != ffi.NULL:
        if lib.bpf_program__autoload(prog):
            fds.append(lib.bpf_program__fd(prog))
        prog = lib.bpf_object__next_program(engine._obj, prog)
    return fd_stats(fds)


class EmptyPrograms:
    """bench/empty_tp_btf.bpf.c, compiled now against this kernel's BTF, attached."""

    def __enter__(self):
        self.b = binding_mod.load_binding()
        ffi, lib = self.b.ffi, self.b.lib
        header = build_objects.vmlinux_header(build_objects.cache_dir())
        self.path = f"/tmp/empty_tp_btf-{os.getpid()}.o"
        subprocess.run(["clang", *build_objects.CFLAGS, "-I", os.path.dirname(header),
                        "-c", EMPTY_SOURCE, "-o", self.path], check=True)
        self.obj = lib.bpf_object__open_file(self.path.encode(), ffi.NULL)
        if self.obj == ffi.NULL or lib.bpf_object__load(self.obj):
            raise RuntimeError("empty programs: " + self.b.take_log())
        self.links, self.fds = [], []
        prog = lib.bpf_object__next_program(self.obj, ffi.NULL)
        while prog != ffi.NULL:
            self.links.append(lib.bpf_program__attach(prog))
            self.fds.append(lib.bpf_program__fd(prog))
            prog = lib.bpf_object__next_program(self.obj, prog)
        return self

    def stats(self):
        return fd_stats(self.fds)

    def __exit__(self, *exc):
        for link in self.links:
            self.b.lib.bpf_link__destroy(link)
        self.b.lib.bpf_object__close(self.obj)
        os.unlink(self.path)


def descendants(pid):
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class DTraceHolder:
    """The family's D script held by a consumer in tools/dtrace-sandbox (a child tree)."""

    def __init__(self, family):
        self.proc = subprocess.Popen(
            [os.path.join(REPO, "tools", "dtrace-sandbox"), "run", "--", "python3",
             os.path.join(HERE, "dtrace_probe_cost.py"), "--hold",
             os.path.join(SCRIPTS, f"{family}.d")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def __enter__(self):
        line = self.proc.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.__exit__()
            raise RuntimeError(f"D consumer did not start: {line}")
        return self

    def stats(self):
        out = {}
        for pid in descendants(self.proc.pid):
            try:
                for name, (t, n) in prog_stats(pid).items():
                    old = out.get(name, (0, 0))
                    out[name] = (old[0] + t, old[1] + n)
            except OSError:
                continue
        return out

    def __exit__(self, *exc):
        try:
            self.proc.communicate(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


def engine(family, **options):
    rel = f"linux/{family}.bpf.c"
    with open(os.path.join(SCRIPTS, f"{family}.bpf.c"), encoding="utf-8") as f:
        return LibbpfEngine(f.read(), rel, options)


def summary(label, costs, per, baseline):
    """One line: all of ``costs``' run time over ``per`` events, and x ``baseline``."""
    total = sum(ns * n for ns, n in costs.values()) / per
    ratio = f" = {total / baseline:.1f}x the empty tp_btf" if baseline else ""
    return f"  {label:44s} {total:8.0f} ns{ratio}"


PING_PONG = """
import os, sys, time
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w1)
    while os.read(r1, 1):
        os.write(w2, b"x")
    os._exit(0)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(1000):
        os.write(w1, b"x")
        os.read(r2, 1)
os.close(w1)
os.waitpid(pid, 0)
"""


def ping_pong(seconds):
    """Two processes passing a byte through pipes: a context switch per hop,
    at a rate that keeps the programs' data in the caches."""
    subprocess.run([sys.executable, "-c", PING_PONG, str(seconds)], check=True,
                   timeout=seconds + 60)


def measure_family(family, seconds, with_dtrace, workload=None):
    with open(os.path.join(SCRIPTS, f"{family}.bt"), encoding="utf-8") as f:
        bt_source = f.read()
    holder = DTraceHolder(family) if with_dtrace else None
    with EmptyPrograms() as empty, engine(family) as lb, \
            BpftraceEngine(bt_source, f"{family}.bt") as bt:
        if holder:
            holder.__enter__()
        try:
            before = (libbpf_stats(lb), prog_stats(bt.pid), empty.stats(),
                      holder.stats() if holder else {})
            (workload or WORKLOADS[family])(seconds)
            after = (libbpf_stats(lb), prog_stats(bt.pid), empty.stats(),
                     holder.stats() if holder else {})
        finally:
            if holder:
                holder.__exit__()
    lib, btc, emp, dt = (per_event(b, a) for b, a in zip(before, after, strict=True))
    lines = [f"{family}{' (pipe ping-pong)' if workload else ''}: "
             + (f"libbpf design {lb.design}" if lb.design else "")]
    for label, costs in (("libbpf", lib), ("bpftrace", btc), ("empty tp_btf", emp),
                         ("dtrace", dt)):
        for name, (ns, n) in sorted(costs.items()):
            lines.append(f"  {label:12s} {name:20s} {ns:8.0f} ns/event  ({n} events)")
    if family == "runqueue":
        switches = emp["empty_switch"][1]
        base = emp["empty_switch"][0]
        lines.append(summary("libbpf, all programs per context switch", lib, switches, base))
        lines.append(summary("bpftrace, all programs per context switch", btc, switches, base))
        if dt:
            lines.append(summary("dtrace, all programs per context switch", dt, switches, base))
    elif family == "diskio":
        ios = emp["empty_rq_done"][1]
        base = (emp["empty_io_start"][0] * emp["empty_io_start"][1]
                + emp["empty_rq_done"][0] * emp["empty_rq_done"][1]) / ios
        lines.append(f"  {'empty tp_btf, both hooks per I/O':44s} {base:8.0f} ns")
        lines.append(summary("libbpf, both programs per I/O", lib, ios, base))
        lines.append(summary("bpftrace, both programs per I/O", btc, ios, base))
        if dt:
            lines.append(summary("dtrace, all programs per I/O", dt, ios, base))
    else:
        for name, (ns, _) in sorted(lib.items()):
            hook = SAME_HOOK.get(name)
            if hook in emp:
                lines.append(f"  {'libbpf ' + name + ' per event':44s} {ns:8.0f} ns = "
                             f"{ns / emp[hook][0]:.1f}x the empty tp_btf on its hook")
    return lines


class LoadedObject:
    """A BPF object of an earlier commit, loaded and attached without the
    engine, but set up as the engine sets it up: every slot in ``st_free``
    and, for a run-queue object (``start_ns``), the load time in
    ``st_config.start_ns`` (the first word of its .rodata, in every
    version) -- without them the run-queue program finds no free slot at
    every event and counts each task's whole run_delay once, neither of
    which the engine's programs do."""

    def __init__(self, path, programs, start_ns=False):
        self.b = binding_mod.load_binding()
        ffi, lib = self.b.ffi, self.b.lib
        self.obj = lib.bpf_object__open_file(path.encode(), ffi.NULL)
        prog = lib.bpf_object__next_program(self.obj, ffi.NULL)
        while prog != ffi.NULL:
            name = ffi.string(lib.bpf_program__name(prog)).decode()
            lib.bpf_program__set_autoload(prog, name in programs)
            prog = lib.bpf_object__next_program(self.obj, prog)
        rodata = lib.bpf_object__find_map_by_name(self.obj, b".rodata")
        if start_ns and rodata != ffi.NULL:
            size = ffi.new("size_t *")
            data = bytearray(ffi.buffer(lib.bpf_map__initial_value(rodata, size), size[0]))
            if len(data) >= 8:
                data[0:8] = time.monotonic_ns().to_bytes(8, "little")
                lib.bpf_map__set_initial_value(rodata, bytes(data), len(data))
        if lib.bpf_object__load(self.obj):
            raise RuntimeError(f"{path}: " + self.b.take_log())
        free = lib.bpf_object__find_map_by_name(self.obj, b"st_free")
        if free != ffi.NULL:
            slot = ffi.new("uint32_t *")
            for n in range(lib.bpf_map__max_entries(free)):
                slot[0] = n
                lib.bpf_map_update_elem(lib.bpf_map__fd(free), ffi.NULL, slot, 0)
        self.links, self.fds = [], []
        prog = lib.bpf_object__next_program(self.obj, ffi.NULL)
        while prog != ffi.NULL:
            if lib.bpf_program__autoload(prog):
                self.links.append(lib.bpf_program__attach(prog))
                self.fds.append(lib.bpf_program__fd(prog))
            prog = lib.bpf_object__next_program(self.obj, prog)

    def stats(self):
        return fd_stats(self.fds)

    def close(self):
        for link in self.links:
            self.b.lib.bpf_link__destroy(link)
        self.b.lib.bpf_object__close(self.obj)


def build_before(commit, workdir):
    """``{family: object path}`` of the libbpf programs at ``commit``."""
    header = build_objects.vmlinux_header(build_objects.cache_dir())
    out = {}
    for name in ("st_common.bpf.h", *(f"{f}.bpf.c" for f in FAMILIES)):
        text = subprocess.run(["git", "-C", REPO, "show", f"{commit}:d_scripts/linux/{name}"],
                              check=True, capture_output=True).stdout
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(text)
    for family in ("runqueue", "diskio"):
        out[family] = os.path.join(workdir, f"{family}.o")
        subprocess.run(["clang", *build_objects.CFLAGS, "-I", os.path.dirname(header),
                        "-I", workdir, "-c", os.path.join(workdir, f"{family}.bpf.c"),
                        "-o", out[family]], check=True)
    return out


ALONE = (("runqueue", "cpu hogs", WORKLOADS["runqueue"], ("runq_switch",)),
         ("runqueue", "pipe ping-pong", ping_pong, ("runq_switch",)),
         ("diskio", "direct-I/O writes", WORKLOADS["diskio"], ("io_begin", "io_done")))


def alone_ratio(family, emp, costs):
    """All of ``costs``' run time per switch (run queue) or I/O, over the empty programs'."""
    if family == "runqueue":
        per, base = emp["empty_switch"][1], emp["empty_switch"][0]
    else:
        per = emp["empty_rq_done"][1]
        base = (emp["empty_io_start"][0] * emp["empty_io_start"][1]
                + emp["empty_rq_done"][0] * emp["empty_rq_done"][1]) / per
    return sum(ns * n for ns, n in costs.values()) / per / base


def ratio_alone(family, load, workload, seconds):
    """One round: what ``load()`` attaches (an object with ``stats()`` and
    ``close()``) alone beside the empty programs under ``workload``; its
    cost over theirs (:func:`alone_ratio`)."""
    with EmptyPrograms() as empty:
        held = load()
        try:
            before = (held.stats(), empty.stats())
            workload(seconds)
            after = (held.stats(), empty.stats())
        finally:
            held.close()
    mine, emp = (per_event(b, a) for b, a in zip(before, after, strict=True))
    return alone_ratio(family, emp, mine)


def started_engine(family):
    """This tree's programs of ``family`` as the engine runs them, with
    ``stats()`` and ``close()``."""
    held = engine(family)
    held.start()
    held.stats, held.close = partial(libbpf_stats, held), held.stop
    return held


def measure_alone(commit, rounds, seconds):
    workdir = f"/tmp/libbpf-before-{os.getpid()}"
    os.makedirs(workdir)
    try:
        before = build_before(commit, workdir)
        ratios = {}
        for _ in range(rounds):
            for family, label, workload, programs in ALONE:
                for which in ("this tree", f"before ({commit})"):
                    load = partial(started_engine, family) if which == "this tree" else \
                        partial(LoadedObject, before[family], programs,
                                start_ns=family == "runqueue")
                    ratios.setdefault((family, label, which), []).append(
                        ratio_alone(family, load, workload, seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"alone beside the empty programs ({rounds} alternating rounds; x the empty "
             "tp_btf per context switch / per I/O):"]
    for (family, label, which), xs in ratios.items():
        xs = sorted(xs)
        lines.append(f"  {family:9s} {label:18s} {which:22s} median {statistics.median(xs):.2f}x"
                     f"  (range {xs[0]:.2f}-{xs[-1]:.2f}x: {', '.join(f'{x:.2f}' for x in xs)})")
    return lines


def fill(engine, zones, rng, seed_keys, same_buckets=False):
    """Give ``zones`` zones values in every map of an engine from user space,
    as its programs would (histograms: 40 buckets each: new ones, or more
    events in the same ones)."""
    for n, cg in enumerate(seed_keys[:zones]):
        rows = {}
        for name, mapped in engine._zones.maps.items():
            row = [0] * (1 if mapped.width == 1 else HIST_SLOTS)
            if mapped.width == 1:
                row[0] = rng.randrange(1, 10**6)
            else:
                buckets = range(200 + n % 60, 440 + n % 60, 6) if same_buckets else \
                    rng.sample(range(200, 500), 40)
                for i in buckets:
                    row[i] = rng.randrange(1, 10**4)
            rows[name] = row
        engine._zones.inject(cg, rows)


class _CollectorTime:
    """CPU time the cyclic garbage collector takes between start() and
    stop(): the snapshot's new objects are what it walks."""

    def __init__(self):
        self.times = {}
        self._began = self._total = None
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if self._total is None:
            return
        if phase == "start":
            self._began = time.process_time()
        else:
            self._total += time.process_time() - self._began

    def start(self):
        self._total = 0.0

    def stop(self, label):
        self.times.setdefault(label, []).append(self._total)
        self._total = None


def snapshot_read(zones, rounds):
    rng = random.Random(14)
    keys = [10**12 + i for i in range(zones)]  # ids no cgroup has
    engines = [engine(f, max_zones=zones + 200, reclaim_interval=1e9) for f in FAMILIES]
    for e in engines:
        e.start()
    try:
        maps = [m for e in engines for m in e._zones.maps.values()]
        hists = sum(1 for m in maps if m.width > 1)
        counters = sum(1 for m in maps if m.width == 1)
        changed, more, unchanged = [], [], []
        folded = {"packed": [], "plain": []}
        accumulators = {"packed": {}, "plain": {}}
        collector = _CollectorTime()
        for _ in range(rounds):
            for e in engines:
                fill(e, zones, rng, keys)
            collector.start()
            t0 = time.process_time()
            snaps = [e.snapshot() for e in engines]
            changed.append(time.process_time() - t0)
            collector.stop("changed")
            for kind, t in accumulate(snaps, accumulators).items():
                folded[kind].append(t)
            for e in engines:
                fill(e, zones, rng, keys, same_buckets=True)
            [e.snapshot() for e in engines]
            for e in engines:
                fill(e, zones, rng, keys, same_buckets=True)
            collector.start()
            t0 = time.process_time()
            [e.snapshot() for e in engines]
            more.append(time.process_time() - t0)
            collector.stop("more")
            t0 = time.process_time()
            [e.snapshot() for e in engines]
            unchanged.append(time.process_time() - t0)
        rows = sum(len(a.rows) for s in snaps for a in s.aggregations.values())
    finally:
        for e in engines:
            e.stop()
    ms = lambda xs: f"median {statistics.median(xs) * 1e3:.2f} ms (min {min(xs) * 1e3:.2f}, " \
                    f"max {max(xs) * 1e3:.2f}, n={len(xs)})"  # noqa: E731
    return [f"snapshot of the three engines, {zones} zones x {hists} histograms "
            f"(40 buckets each) + {counters} counters, {rows} rows; CPU time "
            f"(time.process_time) of this process:",
            f"  every zone changed, new buckets              {ms(changed)}",
            f"    of which the cyclic collector              {ms(collector.times['changed'])}",
            f"  every zone changed, events in its buckets    {ms(more)}",
            f"    of which the cyclic collector              {ms(collector.times['more'])}",
            f"  no zone changed                             {ms(unchanged)}",
            "what the reducer's accumulators then take of each 'every zone changed, new "
            "buckets' snapshot (HistogramAccumulator.update, every histogram map):",
            f"  the engine's packed histograms              {ms(folded['packed'])}",
            f"  the same histograms as plain ones           {ms(folded['plain'])}"]


def _plain(hist):
    """The plain Histogram of a PackedHistogram's buckets, made without
    making (and leaving cached on it) its own bounds and counts tuples --
    which the engine would then free at its next snapshot."""
    bits, indexes = int.from_bytes(hist.bitmap, "little"), []
    while bits:
        lowest = bits & -bits
        indexes.append(lowest.bit_length() - 1)
        bits ^= lowest
    counts = struct.unpack(f"={len(indexes)}Q", hist.packed)
    return Histogram((hist.table.lows[i], hist.table.highs[i], c)
                     for i, c in zip(indexes, counts, strict=True))


def accumulate(snaps, accumulators):
    """CPU seconds HistogramAccumulator.update takes of every histogram of
    ``snaps``: as the engine gave them (packed) and as plain Histograms of
    the same buckets (what the reducer took before they were packed); each
    kind keeps its own accumulators from snapshot to snapshot."""
    rows = {(s.engine, name): agg.rows for s in snaps for name, agg in s.aggregations.items()
            if agg.action == "llquantize"}
    plain = {key: {zone: _plain(h) for zone, h in hists.items()} for key, hists in rows.items()}
    out = {}
    was_enabled = gc.isenabled()
    gc.disable()  # as the reducer runs (meters/reduce.py)
    try:
        for kind, by_key in (("packed", rows), ("plain", plain)):
            t0 = time.process_time()
            for key, hists in by_key.items():
                accumulators[kind].setdefault(key, HistogramAccumulator(key[1])).update(hists)
            out[kind] = time.process_time() - t0
    finally:
        if was_enabled:
            gc.enable()
    return out


def start_times(starts):
    lines = ["start to ready (LibbpfEngine.start: open, load, verify, attach):"]
    totals = []
    per = {f: [] for f in FAMILIES}
    for _ in range(starts):
        total = 0.0
        for f in FAMILIES:
            with engine(f) as e:
                per[f].append(e.ready_after)
                total += e.ready_after
        totals.append(total)
    for f in FAMILIES:
        lines.append(f"  {f + '.bpf.c':16s} median {statistics.median(per[f]):.3f} s "
                     f"(max {max(per[f]):.3f}, n={starts})")
    lines.append(f"  {'all three':16s} median {statistics.median(totals):.3f} s "
                 f"(max {max(totals):.3f})")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="workload per family")
    parser.add_argument("--starts", type=int, default=5, help="starts timed per program")
    parser.add_argument("--zones", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20, help="snapshots timed")
    parser.add_argument("--no-dtrace", action="store_true", help="leave Oracle DTrace out")
    parser.add_argument("--before", metavar="COMMIT",
                        help="also measure this commit's libbpf programs alone beside this "
                             "tree's")
    parser.add_argument("--alone-rounds", type=int, default=5)
    parser.add_argument("--only", choices=("snapshot",),
                        help="run only this part and print it; the results file is "
                             "left as it is (it holds a whole run)")
    args = parser.parse_args()
    if args.only == "snapshot":
        print("\n".join(snapshot_read(args.zones, args.rounds)))
        return 0
    lines = [f"libbpf engine probe cost, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{LibbpfEngine.version()}, {BpftraceEngine.version()}, "
             f"kernel {os.uname().release}, {os.cpu_count()} CPUs",
             "ns/event = BPF run_time_ns / run_cnt (BPF_ENABLE_STATS), over the workload "
             "only; every engine and the empty programs in the same run", ""]
    with stats_enabled():
        for family in FAMILIES:
            lines += measure_family(family, args.seconds, not args.no_dtrace)
            lines.append("")
        lines += measure_family("runqueue", args.seconds, not args.no_dtrace, ping_pong)
        lines.append("")
        if args.before:
            lines += measure_alone(args.before, args.alone_rounds, args.seconds)
            lines.append("")
    lines += snapshot_read(args.zones, args.rounds)
    lines.append("")
    lines += start_times(args.starts)
    results_file.write(RESULTS, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
