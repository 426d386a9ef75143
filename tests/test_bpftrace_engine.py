"""The bpftrace engine against real bpftrace (root; runs in CI, never skipped)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from linux_workloads import bpftrace_pids, pid_alive, wait_for

from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
from smartos_telemetry.engines.bpftrace.process import parse_version
from smartos_telemetry.errors import EngineDied, ProbeNotFound, ScriptCompileError
from smartos_telemetry.snapshot import INT64_MAX, Average, Bucket

pytestmark = pytest.mark.root

GETPPID = "tracepoint:syscalls:sys_enter_getppid"


def caller():
    """A child that calls getppid() N times for each N written to its stdin."""
    code = ("import os, sys\n"
            "for line in sys.stdin:\n"
            "    for _ in range(int(line)): os.getppid()\n"
            "    print('done', flush=True)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def call(proc, n):
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def counting_script(pid):
    pid = int(pid)  # a validated number is the only thing put into a script
    return textwrap.dedent(f"""\
        {GETPPID} /pid == {pid}/ {{
            @calls[pid, comm] = count();
            @big = hist(3000000000);
            @lat = stats(10);
            @small = lhist(5, 0, 10, 2);
        }}
        """)


@pytest.fixture
def workload():
    proc = caller()
    yield proc
    proc.kill()
    proc.wait()


def test_exact_counts_and_typed_values_cumulative_across_snapshots(workload):
    engine = BpftraceEngine(counting_script(workload.pid), "count.bt")
    with engine:
        call(workload, 250)
        first = engine.snapshot()
        call(workload, 100)
        second = engine.snapshot()
    [(key, calls)] = first["calls"].rows.items()
    assert key[0] == workload.pid and isinstance(key[1], str)
    assert first["calls"].action == "count" and calls == 250
    assert second["calls"].rows == {key: 350}  # cumulative, never cleared
    assert second["lat"].rows == {(): Average(350, 3500)}
    assert second["small"].action == "lquantize"
    assert second["small"].rows[()].buckets == (Bucket(4, 5, 350),)
    if parse_version(BpftraceEngine.version()) < (0, 20):
        # 0.17 lumps >= 2^31 into a bogus bucket: an overflow bucket, counted
        assert second["big"].rows[()].buckets == (Bucket(2**31, INT64_MAX, 350),)
        assert second.health.errors["hist_overflow"] == 350
    else:
        assert second["big"].rows[()].buckets == (Bucket(2**31, 2**32 - 1, 350),)
    assert second.engine == "bpftrace" and second.health.restarts == 0
    assert engine.ready_after < 30


def test_compile_error_carries_line_and_column():
    with pytest.raises(ScriptCompileError) as err:
        BpftraceEngine(f"{GETPPID} {{\n  @x = count() +;\n}}\n", "bad.bt").start()
    assert (err.value.script, err.value.line, err.value.column) == ("bad.bt", 2, 16)
    assert "syntax error" in err.value.engine_message


@pytest.mark.parametrize("probe", ["tracepoint:sched:no_such_tracepoint",
                                   "kprobe:do_nanosleep"])
def test_missing_probe_raises_probe_not_found(probe):
    before = bpftrace_pids()
    with pytest.raises(ProbeNotFound) as err:
        BpftraceEngine(f"// a comment\n{probe} {{ @x = count(); }}\n", "missing.bt").start()
    assert err.value.line == 2
    assert not (bpftrace_pids() - before)


def test_killed_child_is_restarted_and_values_stay_cumulative(workload):
    engine = BpftraceEngine(counting_script(workload.pid), "restart.bt",
                            {"backoff_initial": "0.2"})
    with engine:
        call(workload, 40)
        assert list(engine.snapshot()["calls"].rows.values()) == [40]
        old = engine.pid
        os.kill(old, signal.SIGKILL)
        assert wait_for(lambda: engine.health().restarts == 1 and engine.pid not in (None, old)
                        and engine.tracing, 30)
        call(workload, 7)
        snap = engine.snapshot()
        assert list(snap["calls"].rows.values()) == [47]
        assert snap.health.restarts == 1
        assert not pid_alive(old)
    assert not engine.is_alive()
    with pytest.raises(EngineDied):
        engine.snapshot()


def test_full_map_is_counted_as_drops_not_silent(workload):
    script = f"{GETPPID} /pid == {int(workload.pid)}/ {{ @k[nsecs] = count(); }}\n"
    with BpftraceEngine(script, "full.bt", {"map_keys_max": 8}) as engine:
        call(workload, 50)
        snap = engine.snapshot()
        # helper errors come through bpftrace's perf buffer, on their own time
        assert wait_for(lambda: engine.health().drops.get("map_full") == 42, 10)
    assert len(snap["k"].rows) == 8


def test_stop_leaves_no_bpftrace_behind(workload):
    before = bpftrace_pids()
    engine = BpftraceEngine(counting_script(workload.pid), "stop.bt", {"stop_timeout": 3})
    engine.start()
    pid = engine.pid
    assert pid in bpftrace_pids()
    engine.stop()
    engine.stop()  # idempotent
    assert not pid_alive(pid)
    assert bpftrace_pids() <= before


def test_bpftrace_dies_with_the_agent_even_on_sigkill():
    agent_code = textwrap.dedent("""\
        import sys, time
        from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
        e = BpftraceEngine("tracepoint:sched:sched_switch { @s = count(); }\\n", "agent.bt")
        e.start()
        print(e.pid, flush=True)
        time.sleep(120)
        """)
    agent = subprocess.Popen([sys.executable, "-c", agent_code], stdout=subprocess.PIPE,
                             text=True)
    try:
        child = int(agent.stdout.readline())
        assert pid_alive(child)
        agent.kill()
        agent.wait()
        assert wait_for(lambda: not pid_alive(child), 10)
    finally:
        agent.kill()
        agent.wait()
