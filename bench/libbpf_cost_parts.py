#!/usr/bin/env python3
"""Where the libbpf engine's run-queue and disk I/O programs spend their time.

Run as root:  python bench/libbpf_cost_parts.py [--seconds 2] [--rounds 3] [--before COMMIT]

Each part of bench/libbpf_cost_parts.bpf.c (a program doing one more step
of the shipped program than the one before it) is attached alone beside
the empty tp_btf programs (bench/empty_tp_btf.bpf.c), in alternating
rounds of one run, under the workloads of bench/libbpf_probe_cost.py; the
ratio to the empty program(s) is taken per round (BPF run-time stats).
Run queue per context switch, under 3 CPU hogs and a sleeper (each switch
finds the programs' data out of the cache) and a pipe ping-pong (in it);
disk I/O per I/O (both hooks).  The last four run-queue parts are the
shipped design 1 with its zone slot cached in task storage, the cache
checked against the current cgroup id (the design before the migration
epoch), against st_gen's two words (runqueue.bpf.c now), the same without
the st_touched mark (what that line costs), and the same behind a flag in
.rodata (the design switch runq_switch read at every switch before the
two designs became two programs).  With ``--before COMMIT``, the shipped
run-queue programs themselves: this tree's as the engine loads them, and
COMMIT's runq_switch with st_free filled as the engine fills it (without
free slots every switch of it would find the zones full), in alternating
rounds under both workloads.  Then, over the same workloads, the
run-queue wait read from the kernel's enqueue stamp (no task storage:
``rq clock - sched_info.last_queued`` of the next task) summed over every
task, against the growth of ``sched_info.run_delay`` the shipped program
records: what the stamp misses (the waits ended by a migration).

Figures go to bench/results/libbpf_cost_parts.txt (and stdout).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import results_file  # noqa: E402
from bpf_stats import stats_enabled  # noqa: E402
from libbpf_probe_cost import (  # noqa: E402
    LoadedObject,
    build_before,
    ping_pong,
    ratio_alone,
    started_engine,
)
from probe_workloads import WORKLOADS  # noqa: E402

from smartos_telemetry.engines.libbpf import build_objects  # noqa: E402
from smartos_telemetry.engines.libbpf.engine import LibbpfEngine  # noqa: E402

SOURCE = os.path.join(HERE, "libbpf_cost_parts.bpf.c")
RESULTS = os.path.join(HERE, "results", "libbpf_cost_parts.txt")

RUNQ_PARTS = (
    ("rq_fields", "prev's fields (pid, run_delay)"),
    ("rq_cgroup_id", "+ bpf_get_current_cgroup_id"),
    ("rq_storage", "fields + task storage get/read/write"),
    ("rq_zone_hash", "fields + cgroup id + zone hash histogram"),
    ("rq_zone_slot", "fields + cgroup id + zone slot + array"),
    ("rq_last_queued", "no task storage: next's last_queued"),
    ("rq_cached_cgroup", "slot cached in task storage, checked by cgroup id"),
    ("rq_cached_epoch", "slot cached, checked by st_gen's two words"),
    ("rq_cached_untouched", "the same without the st_touched mark"),
    ("rq_cached_rodata", "st_gen's two words, behind a .rodata flag"),
)
IO_PARTS = (
    ("io_start_nostash", "start: clock + cgroup id, no stash"),
    ("io_start_stash+io_done_stash", "stash by request: update, lookup, delete"),
    ("io_start_stash_np+io_done_stash_np", "the same stash, not preallocated"),
    ("io_done_record", "completion: zone slot, histogram, bytes"),
)


class Parts(LoadedObject):
    """The parts object with some programs loaded (free slots given by
    LoadedObject)."""

    def sink(self):
        ffi, lib = self.b.ffi, self.b.lib
        fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self.obj, b"sink"))
        key, values, out = ffi.new("uint32_t *"), ffi.new("uint64_t[]", self.b.ncpus), []
        for i in range(4):
            key[0] = i
            lib.bpf_map_lookup_elem(fd, key, values)
            out.append(sum(ffi.unpack(values, self.b.ncpus)))
        return out


def compile_parts(workdir):
    header = build_objects.vmlinux_header(build_objects.cache_dir())
    path = os.path.join(workdir, "parts.o")
    subprocess.run(["clang", *build_objects.CFLAGS, "-I", os.path.dirname(header),
                    "-I", build_objects.SOURCE_DIR, "-c", SOURCE, "-o", path], check=True)
    return path


def measure(path, family, parts, workload, seconds, rounds):
    ratios = {}
    for _ in range(rounds):
        for programs, _label in parts:
            load = partial(Parts, path, programs.split("+"))
            ratios.setdefault(programs, []).append(ratio_alone(family, load, workload, seconds))
    return ratios


def measure_shipped(commit, workload, seconds, rounds, workdir):
    """The shipped run-queue programs of this tree (the engine's) and of
    ``commit`` (runq_switch, set up as the engine sets it up: LoadedObject),
    in alternating rounds: ``{label: [ratio]}``."""
    before = build_before(commit, workdir)["runqueue"]
    ratios = {}
    for _ in range(rounds):
        for label in ("this tree", f"before ({commit})"):
            load = partial(started_engine, "runqueue") if label == "this tree" else \
                partial(LoadedObject, before, ["runq_switch"], start_ns=True)
            ratios.setdefault(label, []).append(
                ratio_alone("runqueue", load, workload, seconds))
    return ratios


def compare(path, workload, seconds):
    held = Parts(path, ["rq_compare"])
    try:
        time.sleep(0.5)  # every running task has its baseline
        before = held.sink()
        workload(seconds)
        after = held.sink()
    finally:
        held.close()
    stamp, delay, n_stamp, n_delay = (a - b for a, b in zip(after, before, strict=True))
    return stamp, delay, n_stamp, n_delay


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", metavar="COMMIT",
                        help="also the shipped run-queue programs of this tree and of COMMIT, "
                             "alternating")
    args = parser.parse_args()
    workdir = f"/tmp/libbpf-parts-{os.getpid()}"
    os.makedirs(workdir)
    lines = [f"libbpf program parts, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{LibbpfEngine.version()}, kernel {os.uname().release}, {os.cpu_count()} CPUs, "
             f"load average {os.getloadavg()[0]:.1f} at start",
             f"each part alone beside the empty tp_btf programs, {args.rounds} alternating "
             f"rounds of {args.seconds:g} s; x the empty program per context switch / both "
             "empty programs per I/O", ""]
    try:
        path = compile_parts(workdir)
        with stats_enabled():
            for family, label, workload, parts in (
                    ("runqueue", "run queue, cpu hogs", WORKLOADS["runqueue"], RUNQ_PARTS),
                    ("runqueue", "run queue, pipe ping-pong", ping_pong, RUNQ_PARTS),
                    ("diskio", "disk I/O, direct-I/O writes", WORKLOADS["diskio"], IO_PARTS)):
                ratios = measure(path, family, parts, workload, args.seconds, args.rounds)
                lines.append(f"{label}:")
                for programs, what in parts:
                    xs = sorted(ratios[programs])
                    lines.append(f"  {what:52s} median {statistics.median(xs):5.2f}x "
                                 f"(range {xs[0]:.2f}-{xs[-1]:.2f})")
                lines.append("")
            if args.before:
                lines.append("shipped run-queue programs, alone beside the empty programs:")
                for label, workload in (("cpu hogs", WORKLOADS["runqueue"]),
                                        ("pipe ping-pong", ping_pong)):
                    ratios = measure_shipped(args.before, workload, args.seconds, args.rounds,
                                             workdir)
                    for which, xs in ratios.items():
                        xs = sorted(xs)
                        lines.append(f"  {label:16s} {which:20s} median "
                                     f"{statistics.median(xs):5.2f}x (range {xs[0]:.2f}-"
                                     f"{xs[-1]:.2f}: {', '.join(f'{x:.2f}' for x in xs)})")
                lines.append("")
        lines.append("run-queue wait from last_queued (no task storage) against run_delay's "
                     "growth, every task:")
        for label, workload in (("cpu hogs", WORKLOADS["runqueue"]), ("pipe ping-pong",
                                                                     ping_pong)):
            stamp, delay, n_stamp, n_delay = compare(path, workload, args.seconds)
            lines.append(f"  {label:16s} last_queued {stamp / 1e6:9.1f} ms ({n_stamp} waits), "
                         f"run_delay {delay / 1e6:9.1f} ms ({n_delay} switch-outs): "
                         f"{stamp / delay:.3f}")
    finally:
        subprocess.run(["rm", "-rf", workdir], check=False)
    results_file.write(RESULTS, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
