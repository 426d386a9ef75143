"""BPF run-time statistics for the probe-cost benchmarks (stdlib only: runs on the
host and inside tools/dtrace-sandbox).

With BPF run-time stats on (``stats_enabled``) the kernel counts run time and runs of
every BPF program; a process's programs are found through its fds
(``/proc/PID/fdinfo``: prog_id), read with BPF_OBJ_GET_INFO_BY_FD (name,
run_time_ns, run_cnt).  ns/event = delta run_time_ns / delta run_cnt.

``EmptyRawTracepoint`` is the baseline: a two-instruction program
(``r0 = 0; exit``) attached to a raw tracepoint -- what any tracer pays at
least per event.
"""

import contextlib
import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 5, 13, 15
BPF_RAW_TRACEPOINT_OPEN, BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 17, 32, 0
BPF_PROG_TYPE_RAW_TRACEPOINT = 17


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = _libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


@contextlib.contextmanager
def stats_enabled():
    """BPF run-time stats on for the block (BPF_ENABLE_STATS).

    The kernel keeps them on while any such fd is open or the sysctl
    ``kernel.bpf_stats_enabled`` is 1: unlike writing the sysctl and restoring
    it, this never switches them off under another benchmark running at the
    same time, and a killed benchmark leaves nothing behind.
    """
    fd = _bpf(BPF_ENABLE_STATS, struct.pack("I", BPF_STATS_RUN_TIME))
    try:
        yield
    finally:
        os.close(fd)


def prog_info(prog_id):
    """``(name, type, run_time_ns, run_cnt)`` of BPF program ``prog_id`` (None if gone)."""
    try:
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("III", prog_id, 0, 0))
    except OSError:
        return None
    try:
        info = ctypes.create_string_buffer(256)
        _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, 256, ctypes.addressof(info)))
        raw = info.raw
        name = raw[64:80].split(b"\0")[0].decode()
        prog_type, = struct.unpack_from("<I", raw, 0)
        run_time_ns, run_cnt = struct.unpack_from("<QQ", raw, 192)
        return name, prog_type, run_time_ns, run_cnt
    finally:
        os.close(fd)


def prog_stats(pid):
    """``{name: (run_time_ns, run_cnt)}`` of the BPF programs process ``pid`` holds.

    Found through its program fds (bpftrace) and link fds (Oracle DTrace
    holds only bpf_link fds; its programs have no name, so a raw-tracepoint
    link's ``tp_name`` names them).  Each program is counted once however
    many fds refer to it; programs of the same name are summed.
    """
    labels = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "prog_id" not in fields:
            continue
        prog_id = int(fields["prog_id"])
        labels[prog_id] = labels.get(prog_id) or fields.get("tp_name", "").strip()
    stats = {}
    for prog_id, label in labels.items():
        info = prog_info(prog_id)
        if info is None:
            continue
        name, _, t, n = info
        name = name or label or f"prog {prog_id}"
        old_t, old_n = stats.get(name, (0, 0))
        stats[name] = (old_t + t, old_n + n)
    return stats


def per_event(before, after):
    """``{name: (ns_per_event, events)}`` between two ``prog_stats``."""
    out = {}
    for name, (t, n) in after.items():
        t0, n0 = before.get(name, (0, 0))
        if n - n0 > 0:
            out[name] = ((t - t0) / (n - n0), n - n0)
    return out


class EmptyRawTracepoint:
    """``r0 = 0; exit`` on raw tracepoint ``name``, held by this process."""

    def __init__(self, name="sched_switch"):
        self.name = name
        self.prog_fd = self.link_fd = None

    def __enter__(self):
        insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
        insns_buf = ctypes.create_string_buffer(insns, len(insns))
        license_buf = ctypes.create_string_buffer(b"GPL")
        attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_RAW_TRACEPOINT, 2,
                           ctypes.addressof(insns_buf), ctypes.addressof(license_buf),
                           0, 0, 0, 0, 0, b"empty_rawtp")
        self.prog_fd = _bpf(BPF_PROG_LOAD, attr)
        name_buf = ctypes.create_string_buffer(self.name.encode())
        self.link_fd = _bpf(BPF_RAW_TRACEPOINT_OPEN,
                            struct.pack("<QI", ctypes.addressof(name_buf), self.prog_fd))
        return self

    def stats(self):
        """``(run_time_ns, run_cnt)`` of the program so far."""
        with open(f"/proc/self/fdinfo/{self.prog_fd}") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return prog_info(int(fields["prog_id"]))[2:]

    def __exit__(self, *exc):
        for fd in (self.link_fd, self.prog_fd):
            if fd is not None:
                os.close(fd)
        self.prog_fd = self.link_fd = None


def cost_lines(costs, baselines):
    """Report lines: each ``(label, (ns, events))`` baseline, each program's
    ``per_event`` cost, and for a run-queue script (it has sched_switch) all
    its programs' cost per context switch over each baseline -- the issue's
    target is at most 5x an empty tracepoint."""
    lines = [f"  {label:32s} {ns:8.0f} ns/event  ({n} events)"
             for label, (ns, n) in baselines]
    lines += [f"  {name:32s} {ns:8.0f} ns/event  ({n} events)"
              for name, (ns, n) in sorted(costs.items())]
    if "sched_switch" in costs:
        total = sum(ns * n for ns, n in costs.values()) / costs["sched_switch"][1]
        ratios = ", ".join(f"{total / ns:.1f}x the {label}" for label, (ns, _) in baselines)
        lines.append(f"  {'all programs per context switch':32s} {total:8.0f} ns"
                     + (f"  = {ratios}" if ratios else ""))
    return lines
