#!/usr/bin/env python3
"""Kernel cost per event of each shipped bpftrace program, and engine start-to-ready time.

Run as root:  python bench/bpftrace_probe_cost.py [--seconds 3] [--starts 3]

For each script in d_scripts/linux/*.bt, the script runs on the bpftrace
engine next to an *empty* program on tracepoint:sched:sched_switch (same run,
same load: the baseline), while a workload drives its probes.  With
``kernel.bpf_stats_enabled=1`` the kernel counts run time and runs of every
BPF program; they are read from ``/proc/PID/fdinfo`` of bpftrace's program
fds (names from BPF_OBJ_GET_INFO_BY_FD) before and after the workload, and
ns/event = delta run_time_ns / delta run_cnt.  Start-to-ready is the time
from start() to the moment every probe is attached (BEGIN ran).

Figures go to bench/results/bpftrace_probe_cost.txt (and stdout).
"""

import argparse
import ctypes
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(HERE), "d_scripts", "linux")
RESULTS = os.path.join(HERE, "results", "bpftrace_probe_cost.txt")
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
EMPTY = "tracepoint:sched:sched_switch { }\n"

_libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 321, 13, 15


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = _libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def prog_name(prog_id):
    """The (15-character) kernel name of BPF program ``prog_id``."""
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("III", prog_id, 0, 0))
    try:
        info = ctypes.create_string_buffer(256)
        _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, 256, ctypes.addressof(info)))
        return info.raw[64:80].split(b"\0")[0].decode()
    finally:
        os.close(fd)


def prog_stats(pid):
    """``{name: (run_time_ns, run_cnt)}`` of the BPF programs process ``pid`` holds."""
    stats = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "prog_id" not in fields:
            continue
        name = prog_name(int(fields["prog_id"]))
        t, n = int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0))
        old_t, old_n = stats.get(name, (0, 0))
        stats[name] = (old_t + t, old_n + n)
    return stats


def per_event(before, after):
    out = {}
    for name, (t, n) in after.items():
        t0, n0 = before.get(name, (0, 0))
        if n - n0 > 0:
            out[name] = ((t - t0) / (n - n0), n - n0)
    return out


# -- workloads: each runs for `seconds` and cleans up after itself -------------

def cpu_load(seconds):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    sleeper = subprocess.Popen([sys.executable, "-c",
                                "import time\nwhile True: time.sleep(0.001)"])
    time.sleep(seconds)
    for p in (*hogs, sleeper):
        p.kill()
        p.wait()


def disk_load(seconds):
    path = os.path.join("/var/tmp", f"bpftrace-bench-{os.getpid()}.img")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k", "count=200",
                            "oflag=direct", "conv=notrunc", "status=none"], check=True)
    finally:
        os.unlink(path)


def tcp_load(seconds):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    server.settimeout(0.2)
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            s = socket.create_connection(server.getsockname())
            s.send(b"x")
            s.close()
    finally:
        done.set()
        t.join()
        server.close()


WORKLOADS = {"runqueue.bt": cpu_load, "diskio.bt": disk_load, "tcp.bt": tcp_load}


def measure(script, seconds, starts):
    with open(os.path.join(SCRIPTS, script), encoding="utf-8") as f:
        source = f.read()
    ready = []
    for _ in range(starts - 1):
        with BpftraceEngine(source, script) as e:
            ready.append(e.ready_after)
    with BpftraceEngine(EMPTY, "empty.bt") as empty, BpftraceEngine(source, script) as engine:
        ready.append(engine.ready_after)
        before = prog_stats(engine.pid), prog_stats(empty.pid)
        WORKLOADS.get(script, time.sleep)(seconds)
        costs = per_event(before[0], prog_stats(engine.pid))
        baseline = per_event(before[1], prog_stats(empty.pid))
    return costs, baseline.get("sched_switch"), ready


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="workload per script")
    parser.add_argument("--starts", type=int, default=3, help="starts timed per script")
    args = parser.parse_args()
    with open(STATS_SYSCTL) as f:
        saved = f.read().strip()
    lines = [f"bpftrace probe cost, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{BpftraceEngine.version()}, kernel {os.uname().release}, "
             f"{os.cpu_count()} CPUs",
             "ns/event = BPF run_time_ns / run_cnt (kernel.bpf_stats_enabled), "
             "over the workload only", ""]
    try:
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        for script in sorted(WORKLOADS):
            costs, empty, ready = measure(script, args.seconds, args.starts)
            lines.append(f"{script}: start-to-ready median {statistics.median(ready):.2f} s "
                         f"(min {min(ready):.2f}, max {max(ready):.2f}, n={len(ready)})")
            if empty:
                lines.append(f"  {'empty sched_switch (baseline)':32s} {empty[0]:8.0f} ns/event"
                             f"  ({empty[1]} events)")
            for name, (ns, n) in sorted(costs.items()):
                lines.append(f"  {name:32s} {ns:8.0f} ns/event  ({n} events)")
            lines.append("")
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(saved)
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
