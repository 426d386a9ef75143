#!/usr/bin/env python3
"""Kernel cost per event of each shipped bpftrace program, and engine start-to-ready time.

Run as root:  python bench/bpftrace_probe_cost.py [--seconds 3] [--starts 3]

For each script in d_scripts/linux/*.bt, the script runs on the bpftrace
engine next to an *empty* program on tracepoint:sched:sched_switch and an
empty raw BPF program on raw tracepoint sched_switch (same run, same load:
the baselines), while a workload drives its probes.  With BPF run-time stats
on (BPF_ENABLE_STATS) the kernel counts run time and runs of every BPF
program; they are read through bpftrace's program fds (bench/bpf_stats.py)
before and after the workload, and ns/event = delta run_time_ns / delta
run_cnt.  For the run queue, "per switch" is the cost of all its programs
over the context switches: the issue's target is at most 5x the empty one.
A third program, one hash-map lookup per switch, shows what the least
per-task state costs on this machine.
Start-to-ready is the time from start() to the moment every probe is
attached (BEGIN ran).

Figures go to bench/results/bpftrace_probe_cost.txt (and stdout).
"""

import argparse
import os
import statistics
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

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(HERE), "d_scripts", "linux")
RESULTS = os.path.join(HERE, "results", "bpftrace_probe_cost.txt")
EMPTY = "tracepoint:sched:sched_switch { }\n"
# the least any per-task state costs: one hash-map lookup per switch
ONE_LOOKUP = ("BEGIN { @m[0] = 0; }\n"
              "tracepoint:sched:sched_switch { $t = @m[args->next_pid]; }\n")


def measure(script, seconds, starts):
    with open(os.path.join(SCRIPTS, script), encoding="utf-8") as f:
        source = f.read()
    ready = []
    for _ in range(starts - 1):
        with BpftraceEngine(source, script) as e:
            ready.append(e.ready_after)
    with EmptyRawTracepoint() as raw, BpftraceEngine(EMPTY, "empty.bt") as empty, \
            BpftraceEngine(ONE_LOOKUP, "lookup.bt") as lookup, \
            BpftraceEngine(source, script) as engine:
        ready.append(engine.ready_after)
        before = (prog_stats(engine.pid), prog_stats(empty.pid), raw.stats(),
                  prog_stats(lookup.pid))
        WORKLOADS.get(script.rsplit(".", 1)[0], time.sleep)(seconds)
        costs = per_event(before[0], prog_stats(engine.pid))
        baseline = per_event(before[1], prog_stats(empty.pid))
        raw_cost = per_event({"raw": before[2]}, {"raw": raw.stats()})
        one_lookup = per_event(before[3], prog_stats(lookup.pid))
    return (costs, baseline.get("sched_switch"), raw_cost.get("raw"),
            one_lookup.get("sched_switch"), ready)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="workload per script")
    parser.add_argument("--starts", type=int, default=3, help="starts timed per script")
    args = parser.parse_args()
    lines = [f"bpftrace probe cost, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{BpftraceEngine.version()}, kernel {os.uname().release}, "
             f"{os.cpu_count()} CPUs",
             "ns/event = BPF run_time_ns / run_cnt (BPF_ENABLE_STATS), "
             "over the workload only", ""]
    with stats_enabled():
        for script in sorted(f"{stem}.bt" for stem in WORKLOADS):
            costs, empty, raw, lookup, ready = measure(script, args.seconds, args.starts)
            lines.append(f"{script}: start-to-ready median {statistics.median(ready):.2f} s "
                         f"(min {min(ready):.2f}, max {max(ready):.2f}, n={len(ready)})")
            baselines = [(label, cost) for label, cost in
                         (("empty sched_switch (baseline)", empty),
                          ("empty raw BPF sched_switch", raw),
                          ("one map lookup per sched_switch", lookup)) if cost]
            lines += cost_lines(costs, baselines)
            lines.append("")
    results_file.write(RESULTS, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
