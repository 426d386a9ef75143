"""Benchmark: what the bpftrace engine's fault handling costs and loses.

* background read: bpftrace's CPU time per print round (SIGUSR1) with a map
  of N keys, and our side's (reading the lines, no decoding);
* forget: deleting the rows of gone cgroups from a running child's map with
  bpf(2) (maps.py), per key walked and per key deleted;
* death: events lost per SIGKILL of the child, against a workload calling
  getppid() as fast as it can, with the default print_interval and
  backoff, in seconds of the workload's events;
* hang: how long a snapshot takes when the child is SIGSTOPped.

Root, Linux, bpftrace.  Writes bench/results/engine_faults.txt.

Run:  $(tools/bootstrap --venv)/bin/python bench/engine_faults.py
"""

import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "engine_faults.txt")
GETPPID = "tracepoint:syscalls:sys_enter_getppid"
COUNTER = ("import os, signal\nn = 0\ndone = False\n"
           "def finish(*_):\n    global done\n    done = True\n"
           "signal.signal(signal.SIGTERM, finish)\nprint('ready', flush=True)\n"
           "while not done:\n    os.getppid()\n    n += 1\nprint(n, flush=True)\n")
FILLER = ("import os, sys\nfor line in sys.stdin:\n    for _ in range(int(line)): os.getppid()\n"
          "    print('done', flush=True)\n")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def filled_engine(keys):
    """An engine whose map @m holds ``keys`` keys (cgroup-like first key, bucket second)."""
    filler = subprocess.Popen([sys.executable, "-c", FILLER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    script = (f"{GETPPID} /pid == {int(filler.pid)}/ {{ @n = @n + 1; "
              f"@m[@n / 100 + 1000, @n % 100] = count(); }}\n")
    engine = BpftraceEngine(script, "fill.bt", {"map_keys_max": keys + 10,
                                                "print_interval": 0})
    engine.start()
    filler.stdin.write(f"{keys}\n")
    filler.stdin.flush()
    filler.stdout.readline()
    return engine, filler


def read_cost(keys, rounds=20):
    engine, filler = filled_engine(keys)
    try:
        engine.snapshot()
        before, ours = cpu_s(engine.pid), time.process_time()
        t0 = time.monotonic()
        for _ in range(rounds):
            with engine._cond:
                target = engine._request_round()
                while engine._rounds < target:
                    engine._cond.wait(10)
        wall = (time.monotonic() - t0) / rounds
        theirs = (cpu_s(engine.pid) - before) / rounds
        ours = (time.process_time() - ours) / rounds
        t0 = time.process_time()
        snap = engine.snapshot()
        decode = time.process_time() - t0
        assert len(snap["m"].rows) == keys, len(snap["m"].rows)
    finally:
        engine.stop()
        filler.kill()
        filler.wait()
    return wall, theirs, ours, decode


def forget_cost(keys, gone_fraction=0.5):
    engine, filler = filled_engine(keys)
    try:
        engine.snapshot()
        first = sorted({k[0] for k in engine.snapshot()["m"].rows})
        gone = set(first[:int(len(first) * gone_fraction)])
        t0 = time.monotonic()
        deleted = engine.forget(gone)
        took = time.monotonic() - t0
        left = len(engine.snapshot()["m"].rows)
    finally:
        engine.stop()
        filler.kill()
        filler.wait()
    return took, deleted, left


def death_loss(deaths=5):
    work = subprocess.Popen([sys.executable, "-c", COUNTER], stdout=subprocess.PIPE, text=True)
    work.stdout.readline()
    engine = BpftraceEngine(f"{GETPPID} /pid == {int(work.pid)}/ {{ @calls = count(); }}\n",
                            "kills.bt")
    gaps = []
    try:
        with engine:
            t0 = time.monotonic()
            for death in range(deaths):
                time.sleep(2.0 + 0.6 * death)
                old = engine.pid
                killed = time.monotonic()
                os.kill(old, signal.SIGKILL)
                while not (engine.tracing and engine.pid not in (None, old)):
                    time.sleep(0.02)
                gaps.append(time.monotonic() - killed)
            time.sleep(1)
            work.send_signal(signal.SIGTERM)
            called = int(work.communicate(timeout=10)[0].split()[-1])
            elapsed = time.monotonic() - t0
            counted = engine.snapshot()["calls"].rows[()]
    finally:
        work.kill()
        work.wait()
    rate = called / elapsed
    return engine.opts, rate, called - counted, gaps


def hang_snapshot(timeout=3.0):
    engine = BpftraceEngine("tracepoint:sched:sched_switch { @s = count(); }\n", "hang.bt",
                            {"snapshot_timeout": timeout})
    with engine:
        engine.snapshot()
        os.kill(engine.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        engine.snapshot()
        took = time.monotonic() - t0
        t0 = time.monotonic()
        while not (engine.tracing and engine.health().restarts == 1):
            time.sleep(0.02)
        replaced = time.monotonic() - t0
    return took, replaced


def main():
    lines = [f"bpftrace engine faults, {time.strftime('%Y-%m-%d %H:%M')}, shared 2-CPU VM, "
             f"bpftrace 0.17; command: bench/engine_faults.py", ""]
    lines.append("background read (one print round of one map; default every 2 s):")
    for keys in (1000, 10000, 50000):
        wall, theirs, ours, decode = read_cost(keys)
        lines.append(f"  {keys:6d} keys: {wall * 1000:7.1f} ms wall, bpftrace CPU "
                     f"{theirs * 1000:7.1f} ms, agent CPU {ours * 1000:6.2f} ms per round; "
                     f"decoding them at a snapshot {decode * 1000:6.1f} ms")
    lines.append("forget (rows of half the first keys deleted from a running child):")
    for keys in (1000, 10000, 50000):
        took, deleted, left = forget_cost(keys)
        lines.append(f"  {keys:6d} keys: {took * 1000:7.1f} ms ({deleted} deleted, {left} left; "
                     f"{took / keys * 1e6:.1f} us per key walked)")
    opts, rate, lost, gaps = death_loss()
    per = lost / len(gaps)
    lines += [
        f"death (SIGKILL x{len(gaps)}; print_interval {opts['print_interval']:g} s, "
        f"backoff_initial {opts['backoff_initial']:g} s):",
        f"  workload {rate:,.0f} events/s; lost {lost:,} events, {per:,.0f} per death = "
        f"{per / rate:.2f} s of events per death (never negative: nothing counted twice)",
        f"  kill -> replacement attached: median {statistics.median(gaps):.2f} s, "
        f"max {max(gaps):.2f} s; so the events of {per / rate - statistics.median(gaps):.2f} s "
        f"before a death are lost on average (the last read is at most "
        f"{opts['print_interval']:g} s old)",
    ]
    took, replaced = hang_snapshot()
    lines += ["hang (SIGSTOP; snapshot_timeout 3 s):",
              f"  the snapshot returned the last values after {took:.2f} s; the child was "
              f"replaced and attached {replaced:.2f} s later"]
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
