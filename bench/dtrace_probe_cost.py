#!/usr/bin/env python3
"""Kernel cost per event of each shipped Linux D script (Oracle DTrace), and start time.

Run inside the sandbox, as root:
    tools/dtrace-sandbox run -- python3 bench/dtrace_probe_cost.py [--seconds 3]
        [--script FILE.d ...]

For each script in d_scripts/linux/*.d (or each --script: variants under
test; the workload follows the file's stem up to the first '-' or '.'), a
consumer runs the script in a child process (Oracle DTrace allows one
consumer per process) next to two baselines in the same run, under the same
load: a D clause on rawtp:sched::sched_switch whose predicate never holds
(another child: what Oracle's per-probe BPF trampoline costs with no work) and an empty raw BPF
program on raw tracepoint sched_switch (this process: what any tracer pays at
least).  With BPF run-time stats on (BPF_ENABLE_STATS) the kernel counts run
time and runs of every program; Oracle DTrace holds its programs through
bpf_link fds, found in /proc/PID/fdinfo and named by their tracepoint
(bench/bpf_stats.py).  ns/event = delta run_time_ns / delta run_cnt over the
workload.  For the run queue, "per switch" is the cost of all its programs
over the context switches; the issue's target is at most 5x the empty one.
Start is DTraceConsumer.start(): dtrace_init, compile, go.

Figures go to bench/results/dtrace_probe_cost.txt (and stdout), unless
--script is given (then stdout only).
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import results_file  # noqa: E402
from bpf_stats import (  # noqa: E402
    EmptyRawTracepoint,
    cost_lines,
    per_event,
    prog_stats,
    stats_enabled,
)
from probe_workloads import WORKLOADS  # noqa: E402

from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(HERE), "d_scripts", "linux")
RESULTS = os.path.join(HERE, "results", "dtrace_probe_cost.txt")
# a clause with no statements is not free in D: its default action traces
# the probe to the principal buffer; a predicate that never holds (arg0 is
# the preempt flag) leaves only the trampoline and the predicate
EMPTY = "rawtp:sched::sched_switch /arg0 == 0xdead/ { }\n"


def hold(path):
    """Child: run the D program in ``path`` until stdin closes."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    consumer = DTraceConsumer(source, os.path.basename(path))
    t0 = time.monotonic()
    consumer.start()
    try:
        print(f"ready {time.monotonic() - t0:.2f}", flush=True)
        sys.stdin.read()
        snap = consumer.snapshot()
        print(f"drops {snap.health.total_drops} errors {snap.health.total_errors}", flush=True)
    finally:
        consumer.stop()
    return 0


class Holder:
    """A child process holding one consumer; stopped (by PID) on exit."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--hold", path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.health = ""

    def __enter__(self):
        line = self.proc.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.__exit__()
            raise RuntimeError(f"consumer child failed to start: {line}")
        self.start_s = float(line[1])
        return self

    def __exit__(self, *exc):
        try:
            out, _ = self.proc.communicate(timeout=120)
            self.health = out.strip()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


def measure(path, empty_path, seconds):
    stem = os.path.basename(path).split(".")[0].split("-")[0]
    with EmptyRawTracepoint() as raw, Holder(empty_path) as empty, Holder(path) as script:
        before = prog_stats(script.pid), prog_stats(empty.pid), raw.stats()
        WORKLOADS.get(stem, time.sleep)(seconds)
        after = prog_stats(script.pid), prog_stats(empty.pid), raw.stats()
    costs = per_event(before[0], after[0])
    baseline = per_event(before[1], after[1]).get("sched_switch")
    raw_cost = per_event({"raw": before[2]}, {"raw": after[2]}).get("raw")
    return costs, baseline, raw_cost, script


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="workload per script")
    parser.add_argument("--script", action="append", help="a D file to measure instead")
    parser.add_argument("--hold", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold:
        return hold(args.hold)
    paths = args.script or [os.path.join(SCRIPTS, f"{stem}.d") for stem in sorted(WORKLOADS)]
    empty_path = os.path.join("/tmp", f"dtrace-probe-cost-empty-{os.getpid()}.d")
    with open(empty_path, "w") as f:
        f.write(EMPTY)
    lines = [f"Oracle DTrace probe cost, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{DTraceConsumer.version()}, kernel {os.uname().release}, {os.cpu_count()} CPUs",
             "ns/event = BPF run_time_ns / run_cnt (BPF_ENABLE_STATS), over the workload only",
             ""]
    try:
        with stats_enabled():
            for path in paths:
                costs, empty, raw, script = measure(path, empty_path, args.seconds)
                lines.append(f"{os.path.basename(path)}: start {script.start_s:.2f} s; "
                             f"{script.health}")
                baselines = [(label, cost) for label, cost in
                             (("idle D clause sched_switch", empty),
                              ("empty raw BPF sched_switch", raw)) if cost]
                lines += cost_lines(costs, baselines)
                lines.append("")
    finally:
        os.unlink(empty_path)
    text = "\n".join(lines)
    if args.script:
        print(text)
    else:
        results_file.write(RESULTS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
