"""Soak: the agent's service on real bpftrace under zone churn and engine faults.

What a compute node that runs for months meets, compressed: every polling
cycle a wave of new zone cgroups is created and run (short sleepers: a
run-queue wait each; some connect over loopback, some write with direct
I/O), and the previous wave is deleted.  Two long-lived zones run all the
time.  Faults: every ``--kill-every`` cycles one engine's bpftrace is
SIGKILLed, every ``--stop-every`` cycles one is SIGSTOPped (the engine must
see the hang and replace it).

Reported over time (bench/results/soak.txt): cycle (poll) time, the agent's
RSS and the bpftrace children's, map keys in the engines' aggregation maps,
live and ever-seen zones, drops, restarts; and at the end whether the
long-lived zones' cumulative counters ever went backwards.

Root, Linux, bpftrace.  Default 30 minutes; ``--short`` runs 3 minutes.

Run:  $(tools/bootstrap --venv)/bin/python bench/soak.py [--short]
"""

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oslo_config import cfg

from smartos_telemetry.engines.bpftrace import maps
from smartos_telemetry.meters.reduce import HOST
from smartos_telemetry.polling import opts, telemetry_service
from smartos_telemetry.zones.linux_cgroups import unified_root

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "soak.txt")
SCRIPTS = ("linux/runqueue.bt", "linux/diskio.bt", "linux/tcp.bt")
STEADY = "import socket, time\nwhile True:\n" \
         "    socket.create_connection(('127.0.0.1', {port})).close()\n    time.sleep(0.02)\n"
COUNTERS = ("cpu.runqueue.latency.count", "network.tcp.connect.latency.count")


def service_for(parent_rel, snapshot_timeout):
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    conf.register_opt(cfg.StrOpt("host", default="soak"))
    opts.register(conf)
    for name, value in (("platform", "linux"), ("engine", "bpftrace"), ("state_file", ""),
                        ("plain_parents", [parent_rel]),
                        ("snapshot_timeout", snapshot_timeout)):
        conf.set_override(name, value, group="smartos")
    service = telemetry_service.TelemetryService(conf)
    service.ensure_started()
    return service


def rss_kb(pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def map_keys(engine):
    """``(keys of the aggregation maps, keys of the scripts' other maps)``:
    per-zone rows, and per-thread / per-request / per-socket state."""
    pid = engine.pid
    if pid is None:
        return 0, 0
    aggregations = {maps.bpftrace_map_name(n) for n in engine.program.functions}
    state = {maps.bpftrace_map_name(n) for n in engine.program.maps} - aggregations
    rows = other = 0
    for map_id in maps.map_ids(pid):
        try:
            with maps.Map(map_id) as m:
                if m.name in aggregations:
                    rows += len(m.keys())
                elif m.name in state:
                    other += len(m.keys())
        except OSError:
            continue
    return rows, other


def start_in(path, argv, **kw):
    return subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"',
                             path, *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kw)


def wave(parent, n, port, scratch):
    """``n`` new zone cgroups, each running a short workload; returns their paths."""
    paths, procs = [], []
    for i in range(n):
        path = os.path.join(parent, f"w-{uuid.uuid4().hex[:10]}")
        os.mkdir(path)
        paths.append(path)
        if i % 10 == 0:  # a few connects
            code = (f"import socket\nfor _ in range(5): "
                    f"socket.create_connection(('127.0.0.1', {port})).close()")
            procs.append(start_in(path, [sys.executable, "-c", code]))
        elif i % 10 == 1:  # a few direct writes
            target = os.path.join(scratch, os.path.basename(path))
            procs.append(start_in(path, ["dd", "if=/dev/zero", f"of={target}", "bs=64k",
                                         "count=8", "oflag=direct"]))
        else:
            procs.append(start_in(path, ["/bin/sleep", "0.05"]))
    for proc in procs:
        proc.wait(timeout=60)
    for name in os.listdir(scratch):
        os.unlink(os.path.join(scratch, name))
    return paths


def remove(paths):
    for path in paths:
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.02)


def acceptor():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    server.settimeout(0.2)
    done = threading.Event()

    def run():
        while not done.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                continue

    threading.Thread(target=run, daemon=True).start()
    return server, done


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--short", action="store_true", help="3 minutes")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    p.add_argument("--wave", type=int, default=40, help="zones created per cycle")
    p.add_argument("--kill-every", type=int, default=7)
    p.add_argument("--stop-every", type=int, default=11)
    p.add_argument("--snapshot-timeout", type=float, default=3.0)
    p.add_argument("--keys-every", type=int, default=6, help="count map keys every N cycles")
    p.add_argument("--out", default=OUT)
    args = p.parse_args()
    minutes = 3.0 if args.short else args.minutes
    # SIGTERM ends the run like Ctrl-C: the cgroups and files are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rng = random.Random(17)

    top = os.path.join(unified_root(), f"st-soak-{os.getpid()}")
    os.mkdir(top)
    scratch = f"/var/tmp/st-soak-{os.getpid()}"
    os.makedirs(scratch, exist_ok=True)
    server, done = acceptor()
    port = server.getsockname()[1]
    steady_paths = [os.path.join(top, f"steady-{i}") for i in range(2)]
    for path in steady_paths:
        os.mkdir(path)
    steady = [start_in(path, [sys.executable, "-c", STEADY.format(port=port)])
              for path in steady_paths]
    steady_ids = [os.stat(path).st_ino for path in steady_paths]
    service = service_for("/" + os.path.relpath(top, unified_root()), args.snapshot_timeout)
    rows, last_totals, backwards, seen = [], {}, 0, set()
    previous = []
    t0 = time.monotonic()
    cycles = 0
    keys = state = 0
    try:
        while time.monotonic() - t0 < minutes * 60:
            due = time.monotonic() + args.interval
            cycles += 1
            fault = ""
            engines = service._engines._by_script
            if cycles % args.kill_every == 0:
                rel = rng.choice(SCRIPTS)
                pid = engines[rel].pid
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    fault = f"kill {rel.split('/')[1]}"
            elif cycles % args.stop_every == 0:
                rel = rng.choice(SCRIPTS)
                pid = engines[rel].pid
                if pid:
                    os.kill(pid, signal.SIGSTOP)
                    fault = f"stop {rel.split('/')[1]}"
            runq = engines["linux/runqueue.bt"]
            runq_before = (runq._generation, runq.tracing)
            paths = wave(top, args.wave, port, scratch)
            seen.update(os.stat(p).st_ino for p in paths)
            remove(previous)
            previous = paths
            c0, w0 = time.process_time(), time.monotonic()
            service.zones()
            samples = service.samples_for_cycle({})
            took, cpu = time.monotonic() - w0, time.process_time() - c0
            health = {s.name: s.volume for s in samples if s.zone is HOST}
            for s in samples:
                if s.zone in steady_ids and s.name in COUNTERS:
                    key = (s.zone, s.name)
                    if s.volume < last_totals.get(key, 0):
                        backwards += 1
                    last_totals[key] = s.volume
            measured = {s.zone for s in samples if s.name == "cpu.runqueue.latency.count"
                        and s.volume > 0}
            new_measured = sum(1 for p in paths if os.stat(p).st_ino in measured)
            # a wave that ran while runqueue.bt was down or being replaced is
            # not measured: what a death or a hang loses
            runq_down = (runq_before != (runq._generation, True) or "runqueue" in fault
                         or not runq.tracing)
            if cycles % args.keys_every == 1 or args.keys_every == 1:
                # walking the maps costs this process thousands of small
                # objects a time: not every cycle, so that its RSS is the agent's
                counted = [map_keys(e) for e in service._engines.engines]
                keys, state = sum(k for k, _ in counted), sum(s for _, s in counted)
            child_rss = sum(rss_kb(e.pid) for e in service._engines.engines if e.pid)
            rows.append({
                "t": time.monotonic() - t0, "took": took, "cpu": cpu, "rss": rss_kb(),
                "child_rss": child_rss, "keys": keys, "state": state,
                "zones": len(service._live), "seen": len(seen) + len(steady_ids),
                "new_measured": new_measured / len(paths),
                "drops": health.get("telemetry.engine.drops", 0),
                "restarts": health.get("telemetry.engine.restarts", 0), "fault": fault,
                "runq_down": runq_down})
            r = rows[-1]
            print(f"{r['t']:7.0f}s poll {took:6.3f}s rss {r['rss'] / 1024:6.1f}M "
                  f"bpftrace {child_rss / 1024:6.1f}M keys {keys:6d}+{state:5d} "
                  f"live {r['zones']:4d} "
                  f"seen {r['seen']:6d} new measured {r['new_measured']:4.0%} drops "
                  f"{r['drops']:.0f} restarts {r['restarts']:.0f} {fault}", flush=True)
            time.sleep(max(0.0, due - time.monotonic()))
    finally:
        service.stop()
        for proc in steady:
            proc.kill()
            proc.wait()
        done.set()
        server.close()
        remove(previous)
        remove(steady_paths)
        remove([top])
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)
    report(args, minutes, rows, backwards)


def report(args, minutes, rows, backwards):
    def at(fraction):
        return rows[min(len(rows) - 1, int(fraction * len(rows)))]

    lines = [
        f"soak, {time.strftime('%Y-%m-%d %H:%M')}, {minutes:g} min, a cycle every "
        f"{args.interval:g} s, {args.wave} new zones per cycle (the previous wave deleted), "
        f"2 long-lived zones; a bpftrace SIGKILLed every {args.kill_every} cycles, one "
        f"SIGSTOPped every {args.stop_every} (snapshot_timeout {args.snapshot_timeout:g} s); "
        f"shared 2-CPU VM, bpftrace 0.17",
        f"command: bench/soak.py {'--short' if args.short else f'--minutes {minutes:g}'}",
        "",
        "map keys: rows of the aggregation maps (per zone); state: keys of the scripts' "
        "other maps (per thread, request, socket)",
        "",
        "      t  poll s  agent RSS MB  bpftrace RSS MB  map keys  state  live zones  "
        "zones seen  new measured  drops  restarts  fault",
    ]
    step = max(1, len(rows) // 24)
    for r in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
        lines.append(f"{r['t']:6.0f}s  {r['took']:6.3f}  {r['rss'] / 1024:12.1f}  "
                     f"{r['child_rss'] / 1024:15.1f}  {r['keys']:8d}  {r['state']:5d}  "
                     f"{r['zones']:10d}  "
                     f"{r['seen']:10d}  {r['new_measured']:12.0%}  {r['drops']:5.0f}  "
                     f"{r['restarts']:8.0f}  {r['fault']}")
    polls = [r["took"] for r in rows]
    faulty = [r["took"] for r in rows if r["fault"].startswith("stop")]
    lines += [
        "",
        f"cycles: {len(rows)}; zones seen: {rows[-1]['seen']}; restarts: "
        f"{rows[-1]['restarts']:.0f} (kills and hangs); drops: {rows[-1]['drops']:.0f}",
        f"poll time: median {statistics.median(polls):.3f} s, max {max(polls):.3f} s; "
        f"with a hung engine: max {max(faulty, default=0):.3f} s",
        f"poll time, first tenth vs last tenth (median): "
        f"{statistics.median(polls[:max(1, len(polls) // 10)]):.3f} s vs "
        f"{statistics.median(polls[-max(1, len(polls) // 10):]):.3f} s",
        f"agent RSS: {at(0.1)['rss'] / 1024:.1f} MB at 10%, {rows[-1]['rss'] / 1024:.1f} MB "
        f"at the end, max {max(r['rss'] for r in rows) / 1024:.1f} MB",
        f"map keys: {at(0.1)['keys']} at 10%, {rows[-1]['keys']} at the end, max "
        f"{max(r['keys'] for r in rows)}; state keys: {at(0.1)['state']} at 10%, "
        f"{rows[-1]['state']} at the end, max {max(r['state'] for r in rows)}",
        f"new zones measured in their first cycle: min "
        f"{min((r['new_measured'] for r in rows if not r['runq_down']), default=0):.0%} "
        f"({sum(r['runq_down'] for r in rows)} cycles whose wave ran while runqueue.bt was "
        f"down or being replaced left out)",
        f"long-lived zones' cumulative counters went backwards: {backwards} times",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
