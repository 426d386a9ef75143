"""The libdtrace consumer on a real libdtrace (Oracle DTrace 2.x, this kernel).

Truth is controlled by the test: the test process itself makes an exact
number of getppid()/pread() calls, and the D programs match only this
process's pid (a number the test owns, never an operator string).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from own_process import in_own_process

from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.errors import EngineError, ProbeNotFound, ScriptCompileError, ScriptError
from smartos_telemetry.snapshot import Average, Bucket, StdDev

SETTLE = 1.2  # seconds for the kernel's buffers to reach libdtrace


def consumer(source, **options):
    return DTraceConsumer(source, "test.d", options=options)


def preads(sizes):
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 8192)
        f.flush()
        for size in sizes:
            os.pread(f.fileno(), size, 0)


SIZES = [1, 2, 3, 100, 1000, 4096, 4096]


def pow2_bucket(v):
    low = 1 << (v.bit_length() - 1)
    return low, 2 * low - 1


@in_own_process
def test_every_aggregating_action_matches_the_workload():
    src = f"""
    syscall::pread64:entry /pid == {os.getpid()}/ {{
        @c[execname] = count();
        @s = sum(arg2); @mn = min(arg2); @mx = max(arg2);
        @a = avg(arg2); @sd = stddev(arg2);
        @q = quantize(arg2);
        @lq = lquantize(arg2, 0, 1000, 100);
        @llq = llquantize(arg2, 10, 0, 4, 10);
    }}"""
    with consumer(src) as c:
        preads(SIZES)
        time.sleep(SETTLE)
        snap = c.snapshot()
    n = len(SIZES)
    assert snap["c"].rows == {("python3",): n}
    assert snap["s"].rows == {(): sum(SIZES)}
    assert snap["mn"].rows == {(): min(SIZES)} and snap["mn"].action == "min"
    assert snap["mx"].rows == {(): max(SIZES)} and snap["mx"].action == "max"
    assert snap["a"].rows == {(): Average(n, sum(SIZES))}
    assert snap["sd"].rows == {(): StdDev(n, sum(SIZES), sum(v * v for v in SIZES))}

    expected = {}
    for v in SIZES:
        expected[pow2_bucket(v)] = expected.get(pow2_bucket(v), 0) + 1
    assert {(b.low, b.high): b.count for b in snap["q"].rows[()].buckets} == expected

    lq = {(b.low, b.high): b.count for b in snap["lq"].rows[()].buckets}
    assert lq == {(0, 99): 3, (100, 199): 1, (1000, 2**63 - 1): 3}

    # llquantize(v, 10, 0, 4, 10): order m has buckets of width 10^m
    llq = {(b.low, b.high): b.count for b in snap["llq"].rows[()].buckets}
    assert llq == {(1, 1): 1, (2, 2): 1, (3, 3): 1, (100, 199): 1, (1000, 1999): 1,
                   (4000, 4999): 2}


@in_own_process
def test_llquantize_oracle_layout_small_magnitudes_and_negatives():
    # steps > factor^(m+1) gives fractional widths; negatives mirror positives
    values = [0, 1, 2, 9, 10, 15, 99, 100, 1234, -1, -10, -1000, 10**7]
    # lseek's offset argument carries each value, negatives included
    src = f"""syscall::lseek:entry /pid == {os.getpid()}/ {{
        @ll = llquantize((long)arg1, 10, 0, 6, 20); }}"""
    fd = os.open("/dev/null", os.O_RDONLY)  # accepts any offset
    try:
        with consumer(src) as c:
            for v in values:
                os.lseek(fd, v, os.SEEK_SET)
            time.sleep(SETTLE)
            hist = c.snapshot()["ll"].rows[()]
    finally:
        os.close(fd)
    assert hist.count == len(values)

    def bucket_of(v):
        return next(b for b in hist.buckets if b.low <= v <= b.high)

    for v in values:
        b = bucket_of(v)
        assert b.low <= v <= b.high
    assert (bucket_of(15).low, bucket_of(15).high) == (15, 19)
    assert (bucket_of(1234).low, bucket_of(1234).high) == (1000, 1499)
    assert (bucket_of(-10).low, bucket_of(-10).high) == (-14, -10)
    assert bucket_of(10**7).high == 2**63 - 1


@in_own_process
def test_negative_quantize_and_wide_lquantize_values():
    # quantize: negative bucket i holds (BUCKETVAL(i-1), BUCKETVAL(i)], as
    # on illumos; lquantize: Oracle buckets all 64 bits (illumos truncates
    # to int32_t), so values beyond 32 bits land in the open ends
    values = [-1, -2, -3, -4, -7, -8, -21, 2**32 + 5, 2**31, -(2**32) + 25, 30, 2**40]
    src = f"""syscall::lseek:entry /pid == {os.getpid()}/ {{
        @q = quantize((long)arg1); @l = lquantize((long)arg1, -20, 30, 10); }}"""
    fd = os.open("/dev/null", os.O_RDONLY)  # accepts any offset
    try:
        with consumer(src) as c:
            for v in values:
                try:
                    os.lseek(fd, v, os.SEEK_SET)
                except OSError:  # negative offsets: the probe fired all the same
                    pass
            time.sleep(SETTLE)
            snap = c.snapshot()
    finally:
        os.close(fd)
    for name in ("q", "l"):
        hist = snap[name].rows[()]
        assert hist.count == len(values)
        for v in values:
            assert len([b for b in hist.buckets if b.low <= v <= b.high]) == 1, (name, v)
    q = {(b.low, b.high): b.count for b in snap["q"].rows[()].buckets}
    assert q[(-1, -1)] == 1 and q[(-3, -2)] == 2 and q[(-7, -4)] == 2 and q[(-15, -8)] == 1
    lq = {(b.low, b.high): b.count for b in snap["l"].rows[()].buckets}
    assert lq == {(-(2**63), -21): 2, (-10, -1): 6, (30, 2**63 - 1): 4}


@in_own_process
def test_a_program_longer_than_4_kib_arrives_whole():
    # compiled from a string (dtrace_program_strcompile): the clauses past
    # the first KiBs arrive as well as the first
    # 90 clauses: over 4 KiB whatever the pid's digits
    clauses = [f"syscall::getppid:entry /pid == {os.getpid()}/ {{ @c{i:03d} = count(); }}"
               for i in range(90)]
    src = "\n".join(clauses)
    assert len(src) > 4096
    with consumer(src) as c:
        for _ in range(3):
            os.getppid()
        time.sleep(SETTLE)
        snap = c.snapshot()
    assert {name: agg.rows for name, agg in snap.aggregations.items()} == {
        f"c{i:03d}": {(): 3} for i in range(90)}


@in_own_process
def test_integer_keys_are_signed_by_size_and_strings_bounded():
    src = f"""
    syscall::getppid:entry /pid == {os.getpid()}/ {{
        @k[(char)-1, (short)-2, (int)-3, (long)-1 << 40, "zone-a"] = count();
        @big[(long)1 << 61] = sum((long)1 << 61);
        @t["0123456789abcdefghijklmnopqrstuvwxyz"] = count();
    }}"""
    with consumer(src, strsize="16") as c:
        for _ in range(3):
            os.getppid()
        time.sleep(SETTLE)
        snap = c.snapshot()
    assert snap["k"].rows == {(-1, -2, -3, -(1 << 40), "zone-a"): 3}
    assert snap["big"].rows == {(1 << 61,): 3 << 61}  # past 2^62: exact, not a float
    (key,) = snap["t"].rows
    assert "0123456789abcdefghijklmnopqrstuvwxyz".startswith(key[0])
    assert 0 < len(key[0]) <= 16


@in_own_process
def test_user_symbol_keys_are_text_and_normalize_applies():
    src = f"""
    syscall::getppid:entry /pid == {os.getpid()}/ {{
        @u[usym(uregs[R_PC])] = count(); @m[umod(uregs[R_PC])] = count();
    }}
    BEGIN {{ @s = sum(1000); normalize(@s, 10); }}"""
    with consumer(src) as c:
        for _ in range(3):
            os.getppid()
        time.sleep(SETTLE)
        c.poll()  # normalize() is a record in the principal buffer
        snap = c.snapshot()
    assert snap["u"].rows == {("libc.so.6`getppid",): 3}
    assert snap["m"].rows == {("libc.so.6",): 3}
    assert snap["s"].rows == {(): 100}


@in_own_process
def test_snapshots_are_cumulative_and_deltas_are_per_interval():
    src = f"syscall::getppid:entry /pid == {os.getpid()}/ {{ @n = count(); @h = quantize(5); }}"
    with consumer(src) as c:
        for _ in range(11):
            os.getppid()
        time.sleep(SETTLE)
        first = c.snapshot()
        for _ in range(7):
            os.getppid()
        time.sleep(SETTLE)
        second = c.snapshot()
    assert first["n"].rows == {(): 11}
    assert second["n"].rows == {(): 18}
    delta = second.delta(first)
    assert delta["n"].rows == {(): 7}
    assert delta["h"].rows[()].buckets == (Bucket(4, 7, 7),)


@in_own_process
def test_every_snapshot_holds_every_event_before_it():
    # Oracle 2.0.7's dtrace_aggregate_snap returns what the last dtrace_work
    # read: without dtrace_work in snapshot(), snapshots taken less than a
    # keep-alive round apart repeated old values
    src = f"syscall::getppid:entry /pid == {os.getpid()}/ {{ @n = count(); }}"
    seen = []
    with consumer(src) as c:
        for _ in range(5):
            for _ in range(100):
                os.getppid()
            seen.append(c.snapshot()["n"].rows[()])
            time.sleep(0.2)
    assert seen == [100, 200, 300, 400, 500]


@in_own_process
def test_syntax_error_has_libdtrace_message_and_line():
    with pytest.raises(ScriptCompileError) as info:
        consumer("BEGIN\n{\n  @x = count(;\n}\n").start()
    assert info.value.line == 3
    assert "syntax error" in info.value.engine_message


@in_own_process
def test_missing_probe_is_probe_not_found():
    with pytest.raises(ProbeNotFound, match="does not match any probes"):
        consumer("syscall::no_such_syscall_here:entry { @x = count(); }").start()


@in_own_process
def test_destructive_actions_are_never_enabled():
    with pytest.raises(ScriptError, match="destructive"):
        consumer('#pragma D option destructive\nBEGIN { system("true"); }').start()


@in_own_process
def test_drops_from_a_tiny_buffer_are_counted_and_tracing_goes_on():
    src = (f'syscall::getppid:entry /pid == {os.getpid()}/ '
           '{ printf("%s %d\\n", "a long line that fills the buffer fast", timestamp); '
           '@n = count(); }')
    with consumer(src, bufsize="4k", switchrate="1hz") as c:
        for _ in range(20000):
            os.getppid()
        time.sleep(SETTLE)
        c.poll()
        snap = c.snapshot()
        assert c.is_alive()
    assert snap["n"].rows == {(): 20000}  # aggregations are not lost
    assert snap.health.drops.get("principal", 0) > 0


@in_own_process
def test_printf_output_is_collected():
    src = f'syscall::getppid:entry /pid == {os.getpid()}/ {{ printf("call %d\\n", 7); }}'
    with consumer(src) as c:
        for _ in range(3):
            os.getppid()
        time.sleep(SETTLE)
        c.poll()
        text = "".join(c.output())
    assert text == "call 7\n" * 3


@in_own_process
def test_exit_is_detected_and_data_still_readable():
    with consumer("BEGIN { @x = count(); exit(0); }") as c:
        deadline = time.monotonic() + 10
        while c.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.exited and not c.is_alive()
        assert c.snapshot()["x"].rows == {(): 1}


@in_own_process
def test_concurrent_starts_never_crash_and_one_consumer_per_process_is_enforced():
    # Two threads start consumers at once.  Unserialised, Oracle's
    # dtrace_init aborts the process; serialised, the first runs and the
    # second gets the typed one-consumer-per-process error.
    results, errors = [], []

    def one(i):
        try:
            src = f"syscall::getppid:entry /pid == {os.getpid()}/ {{ @n{i} = count(); }}"
            with consumer(src) as c:
                os.getppid()
                time.sleep(SETTLE)
                results.append(c.snapshot()[f"n{i}"].rows[()])
        except EngineError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and results[0] >= 1
    assert len(errors) == 1 and "one consumer per process" in str(errors[0])


@in_own_process
def test_programs_with_many_clauses_stop_without_corrupting_the_heap():
    # with the error handler registered before the compile, libdtrace 2.0.7
    # corrupts its heap here and the child dies of SIGABRT (see consumer.py)
    src = "\n".join(f"syscall::{name}:entry {{ @{name} = count(); }}"
                    for name in ("getppid", "getpid", "getuid", "getgid"))
    with consumer(src) as c:
        os.getppid()
        time.sleep(SETTLE)
        assert c.snapshot()["getppid"].rows[()] >= 1
    assert not c.is_alive()


@in_own_process
def test_close_is_idempotent():
    c = consumer("BEGIN { @x = count(); }")
    c.start()
    assert c.is_alive()
    c.stop()
    assert not c.is_alive()
    c.stop()
    c.close()


def test_run_script_cli_prints_json(tmp_path):
    script = tmp_path / "calls.d"
    script.write_text("syscall::getppid:entry { @calls[pid] = count(); @q = quantize(3); }\n")
    proc = subprocess.Popen(
        ["smartos-telemetry", "run-script", str(script), "--engine", "dtrace",
         "--duration", "3", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        # the calls go in once it says it is tracing: start-up takes seconds
        # on a loaded machine, and calls made before it would not be counted
        said = []
        while not any("tracing after" in line for line in said):
            line = proc.stderr.readline()
            assert line, f"run-script ended before tracing: {''.join(said)}"
            said.append(line)
        for _ in range(5):
            os.getppid()
        out, rest = proc.communicate(timeout=60)
        err = "".join(said) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    aggs = {a["name"]: a for a in json.loads(out)}
    assert aggs["calls"]["action"] == "count"
    mine = [r for r in aggs["calls"]["rows"] if r["keys"] == [os.getpid()]]
    assert mine == [{"keys": [os.getpid()], "value": 5}]
    assert aggs["q"]["rows"][0]["value"][0] == {"low": 2, "high": 3,
                                                "count": aggs["q"]["rows"][0]["value"][0]["count"]}
    assert "tracing after" in err


def test_version_is_reported():
    version = DTraceConsumer.version()
    assert "D 2." in version or "Oracle" in version, version
    assert sys.version_info >= (3, 10)
