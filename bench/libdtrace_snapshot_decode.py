"""Benchmark: snapshot + decode rate of the libdtrace consumer on a real libdtrace.

Builds an aggregation of 10,000 keys, each holding a quantize() value, in
the kernel (one getppid() call per key from this process), then times
consumer.snapshot() -- dtrace_status, dtrace_work (which may block for up to
the switchrate, 100 ms), dtrace_aggregate_snap, the walk and our decoding --
several times, every key updated between snapshots, and checks that every
snapshot holds every event.  Writes the figures to
bench/results/libdtrace_snapshot_decode.txt.  BENCH_KEYS and BENCH_AGGSIZE
change the number of keys (10000) and the aggregation buffer (64m).

Run inside the sandbox:  tools/dtrace-sandbox run -- python3 bench/libdtrace_snapshot_decode.py
"""

import os
import platform
import statistics
import sys
import time

from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer

KEYS = int(os.environ.get("BENCH_KEYS", "10000"))
AGGSIZE = os.environ.get("BENCH_AGGSIZE", "64m")
ROUNDS = 5
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                   "libdtrace_snapshot_decode.txt")


def main():
    src = ("long n;\n"
           f"syscall::getppid:entry /pid == {os.getpid()}/ "
           f"{{ @lat[n % {KEYS}] = quantize(n * 7919 % 1000000); n++; }}")
    with DTraceConsumer(src, "bench.d", options={"aggsize": AGGSIZE}) as c:
        for _ in range(KEYS):
            os.getppid()
        time.sleep(1.5)
        times, snaps, walks, stale = [], [], [], []
        calls = KEYS
        for _ in range(ROUNDS):
            for _ in range(KEYS):  # every key changes between snapshots
                os.getppid()
            calls += KEYS
            t0 = time.perf_counter()
            snap = c.snapshot()
            times.append(time.perf_counter() - t0)
            events = sum(h.count for h in snap["lat"].rows.values())
            if events != calls:
                stale.append(f"{events} of {calls} events")
        # the two halves: libdtrace reading the kernel (status, work,
        # dtrace_aggregate_snap) and our walk + decode into typed values
        for _ in range(ROUNDS):
            for _ in range(KEYS):
                os.getppid()
            with c._lock:
                t0 = time.perf_counter()
                c._snap_locked()
                t1 = time.perf_counter()
                c._walk_locked()
                t2 = time.perf_counter()
            snaps.append(t1 - t0)
            walks.append(t2 - t1)
        rows = len(snap["lat"].rows)
        cpu = time.process_time()
    best, median = min(times), statistics.median(times)
    lines = [
        f"libdtrace snapshot+decode benchmark ({time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"libdtrace: {DTraceConsumer.version()}; python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs",
        f"keys (quantize values): {rows}",
        f"snapshot+decode seconds over {ROUNDS} rounds: best {best:.3f}, median {median:.3f}",
        f"records decoded per second (median): {rows / median:,.0f}",
        f"snapshot+decode per key (median): {median / rows * 1e6:.1f} us",
        f"  libdtrace status + work + aggregate_snap (median): "
        f"{statistics.median(snaps) / rows * 1e6:.1f} us/key",
        f"  dtrace_aggregate_walk + decode into typed values (median): "
        f"{statistics.median(walks) / rows * 1e6:.1f} us/key",
        f"process CPU time total: {cpu:.2f} s",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    if rows < KEYS:
        sys.exit(f"only {rows} keys reached the snapshot (expected {KEYS})")
    if stale:
        sys.exit(f"stale snapshots: {', '.join(stale)}")


if __name__ == "__main__":
    main()
