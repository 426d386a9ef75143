"""Engine faults for real (root, real bpftrace; runs in CI, never skipped): a
hung engine beside healthy ones, an engine killed again and again under
load, a script that ends itself, map-full episodes, and no work files.

Guarantees checked (README "What the agent guarantees"):

* a hung child (SIGSTOP) costs one cycle at most ``snapshot_timeout`` (+1 s)
  and only its own meters; it is killed and replaced, counted in
  ``telemetry.engine.restarts``;
* a death loses at most the events of ``print_interval`` before it plus
  those while the replacement attaches, never more, never double;
* a child that worked restarts after ``backoff_initial`` again.
"""

import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from linux_workloads import (
    cgroup_id,
    loopback_acceptor,
    pid_alive,
    python_in,
    scratch_cgroups,
    stop,
    wait_for,
)
from real_service import cycle, engine_of, real_service

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
from smartos_telemetry.meters.reduce import HOST
from smartos_telemetry.zones.linux_cgroups import unified_root

pytestmark = pytest.mark.root

GETPPID = "tracepoint:syscalls:sys_enter_getppid"
WORK_DIRS = os.path.join(tempfile.gettempdir(), "smartos-telemetry-bt-*")


def connector(path, port):
    """A process in cgroup ``path`` that connects to ``port`` in a loop."""
    return python_in(path, textwrap.dedent(f"""\
        import socket, time
        while True:
            socket.create_connection(("127.0.0.1", {int(port)})).close()
            time.sleep(0.01)
        """))


def by_zone(samples, zone, name):
    return next((s.volume for s in samples if s.zone == zone and s.name == name), None)


def test_a_hung_engine_costs_one_bounded_cycle_and_is_replaced():
    with scratch_cgroups("a") as cg, loopback_acceptor() as port:
        parent = "/" + os.path.relpath(cg[""], unified_root())
        zone = cgroup_id(cg["a"])
        procs = [connector(cg["a"], port),
                 python_in(cg["a"], "import time\nwhile True: time.sleep(0.002)")]
        try:
            with real_service(parent, snapshot_timeout=2.0) as service:
                time.sleep(1)
                cycle(service)
                _, before = cycle(service)
                connects = by_zone(before, zone, "network.tcp.connect.latency.count")
                assert connects and connects > 0
                tcp = engine_of(service, "linux/tcp.bt")
                hung = tcp.pid
                os.kill(hung, signal.SIGSTOP)
                time.sleep(0.5)
                t0 = time.monotonic()
                _, during = cycle(service)
                took = time.monotonic() - t0
                # the healthy engines' meters are in this cycle, which took
                # the hung one's timeout, not the old 10 s per pollster
                assert took < 2.0 + 1.5, took
                assert by_zone(during, zone, "cpu.runqueue.latency.count") > 0
                # the hung engine's meters carry their last values: cumulative,
                # never lower
                assert by_zone(during, zone, "network.tcp.connect.latency.count") >= connects
                assert wait_for(lambda: tcp.health().restarts == 1 and tcp.tracing
                                and tcp.pid not in (None, hung), 30)
                assert not pid_alive(hung)
                time.sleep(1)
                t0 = time.monotonic()
                _, after = cycle(service)
                assert time.monotonic() - t0 < 1.5
                assert by_zone(after, HOST, "telemetry.engine.restarts") == 1
                # the replacement counts on from the carried values
                assert by_zone(after, zone, "network.tcp.connect.latency.count") > connects
        finally:
            stop(*procs)


def test_a_replacement_stuck_before_it_is_ready_is_replaced_again(tmp_path):
    """A replacement that stops before it attaches (here: a wrapper that
    stops itself while a flag file exists) is killed after ready_timeout
    and replaced, not left stopped for good."""
    flag = tmp_path / "stop-next"
    wrapper = tmp_path / "bpftrace"
    wrapper.write_text(f'#!/bin/sh\nif [ -e "{flag}" ]; then rm -f "{flag}"; kill -STOP $$; fi\n'
                       f'exec {shutil.which("bpftrace")} "$@"\n')
    wrapper.chmod(0o755)
    engine = BpftraceEngine(f"{GETPPID} {{ @calls = count(); }}\n", "stuck.bt",
                            {"bpftrace": str(wrapper), "ready_timeout": 3,
                             "backoff_initial": 0.1})
    with engine:
        first = engine.pid
        flag.write_text("")
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: engine.pid not in (None, first) and not engine.tracing, 10)
        stuck = engine.pid
        assert wait_for(lambda: engine.tracing and engine.pid not in (None, first, stuck), 20)
        assert engine.health().restarts == 2
        assert not pid_alive(stuck)


COUNTER = textwrap.dedent("""\
    import os, signal, sys
    n = 0
    done = False
    def finish(*_):
        global done
        done = True
    signal.signal(signal.SIGTERM, finish)
    print("ready", flush=True)
    while not done:
        os.getppid()
        n += 1
    print(n, flush=True)
    """)


def test_repeated_kills_under_load_lose_at_most_the_read_interval_each(caplog):
    """A workload calls getppid() as fast as it can; the child is SIGKILLed
    five times.  Each death loses at most the events since the last
    background read (print_interval) and those while the replacement
    starts; nothing is counted twice."""
    backoff = 0.3
    work = subprocess.Popen([sys.executable, "-c", COUNTER], stdout=subprocess.PIPE, text=True)
    try:
        assert work.stdout.readline().strip() == "ready"
        script = f"{GETPPID} /pid == {int(work.pid)}/ {{ @calls = count(); }}\n"
        engine = BpftraceEngine(script, "kills.bt", {"backoff_initial": backoff})
        interval = engine.opts["print_interval"]  # the default: what the agent runs
        caplog.set_level(logging.INFO)
        with engine:
            t0 = time.monotonic()
            first = engine.snapshot()["calls"].rows[()]
            rate = first / (time.monotonic() - engine.started_at)
            gaps = []
            for death in range(5):
                time.sleep(1.0 + 0.7 * death)  # anywhere in a read interval
                old = engine.pid
                killed_at = time.monotonic()
                os.kill(old, signal.SIGKILL)
                assert wait_for(lambda n=death + 1, old=old: engine.health().restarts == n
                                and engine.tracing and engine.pid != old, 20)
                gaps.append(time.monotonic() - killed_at)
            time.sleep(0.5)
            work.send_signal(signal.SIGTERM)
            called = int(work.communicate(timeout=10)[0].split()[-1])
            counted = engine.snapshot()["calls"].rows[()]
            elapsed = time.monotonic() - t0
    finally:
        stop(work)
    rate = max(rate, called / elapsed)
    lost = called - counted
    assert lost >= 0, "counted twice"
    # per death: up to one read interval (+ a round's print) before it, and
    # the restart gap after it
    bound = sum(rate * (interval + 0.25 + gap) for gap in gaps)
    assert lost <= bound, (lost, bound, gaps, rate)
    # a child that worked restarts after backoff_initial again, never
    # doubling (without the reset the fifth would wait 16x)
    assert max(gaps) < backoff + 1.5, gaps
    assert sum("ready again after restart" in r.getMessage() for r in caplog.records) == 5


def test_a_script_that_calls_exit_ends_keeps_its_maps_and_is_not_restarted(tmp_path):
    caller = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\nsys.stdin.readline()\nfor _ in range(20): os.getppid()\n"
         "sys.stdin.readline()"], stdin=subprocess.PIPE, text=True)
    try:
        script = (f"{GETPPID} /pid == {int(caller.pid)}/ {{ @calls = count(); "
                  f"@n = @n + 1; if (@n == 10) {{ exit(); }} }}\n")
        path = tmp_path / "ends.bt"
        path.write_text(script)
        engine = BpftraceEngine(script, "ends.bt")
        with engine:
            caller.stdin.write("go\n")
            caller.stdin.flush()
            assert wait_for(lambda: engine.finished, 20)
            time.sleep(1.5)  # a restart would have happened by now
            snap = engine.snapshot()
            assert not engine.is_alive() and engine.pid is None
        assert snap.health.restarts == 0
        assert snap["calls"].rows[()] >= 10
        # run-script prints the maps the script ended with, and says so soon
        caller.stdin.write("x\n")
        caller.stdin.flush()
        caller.wait(10)
        caller = subprocess.Popen(
            [sys.executable, "-c",
             "import os, time\ntime.sleep(3)\nfor _ in range(20): os.getppid()\n"
             "time.sleep(5)"])
        path.write_text(f"{GETPPID} /pid == {int(caller.pid)}/ {{ @calls = count(); "
                        f"@n = @n + 1; if (@n == 10) {{ exit(); }} }}\n")
        t0 = time.monotonic()
        out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "smartos-telemetry"),
                              "run-script", str(path), "--json", "--duration", "60"],
                             capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr
        assert time.monotonic() - t0 < 30
        rows = {agg["name"]: agg["rows"] for agg in json.loads(out.stdout)}
        assert rows["calls"][0]["value"] >= 10
    finally:
        caller.kill()
        caller.wait()


def test_a_full_map_is_logged_once_per_episode(caplog):
    caller = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\nfor line in sys.stdin:\n    for _ in range(int(line)): os.getppid()\n"
         "    print('done', flush=True)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(n):
        caller.stdin.write(f"{n}\n")
        caller.stdin.flush()
        assert caller.stdout.readline().strip() == "done"

    caplog.set_level(logging.INFO)
    script = f"{GETPPID} /pid == {int(caller.pid)}/ {{ @k[nsecs] = count(); }}\n"
    try:
        with BpftraceEngine(script, "full.bt", {"map_keys_max": 8,
                                                "print_interval": 0.3}) as engine:
            call(50)
            assert wait_for(lambda: engine.health().drops.get("map_full") == 42, 10)
            call(50)  # the same episode: still full
            assert wait_for(lambda: engine.health().drops.get("map_full") == 92, 10)
            time.sleep(1)  # rounds without new drops: the episode ends
    finally:
        caller.kill()
        caller.wait()
    messages = [r.getMessage() for r in caplog.records]
    full = [m for m in messages if "a map is full" in m]
    assert len(full) == 1 and "full.bt" in full[0] and "map_keys_max" in full[0]
    assert sum("take new keys again" in m for m in messages) == 1


AGENT = textwrap.dedent("""\
    import os, sys
    from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
    e = BpftraceEngine("tracepoint:sched:sched_switch { @s = count(); }\\n", "agent.bt")
    e.start()
    with open(f"/proc/{e.pid}/cmdline", "rb") as f:
        print(f.read().split(b"\\0")[-2].decode(), flush=True)
    os._exit(0)  # as cotyledon ends ceilometer-polling's workers: no atexit, no finally
    """)


def test_no_work_files_even_when_the_agent_ends_by_os_exit(tmp_path):
    before = set(glob.glob(WORK_DIRS))
    out = subprocess.run([sys.executable, "-c", AGENT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("/dev/fd/")  # the script is an inherited memfd
    bad = tmp_path / "bad.bt"
    bad.write_text(f"{GETPPID} {{ @x = count() +; }}\n")
    failed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "smartos-telemetry"),
                             "run-script", str(bad), "--duration", "1"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "bad.bt:1" in failed.stderr
    assert set(glob.glob(WORK_DIRS)) <= before
