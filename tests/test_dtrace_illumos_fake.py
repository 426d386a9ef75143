"""The illumos ABI path of the libdtrace binding, against a fake libdtrace.

tests/fake_libdtrace/ holds an illumos-layout dtrace.h (its static asserts pin
the offsets of shared/reference/libdtrace.md section 3) and a C library that
hands out canned aggregations of every action.  The binding is built against
them exactly as setup.py builds it against a real header, so the illumos
decoding runs on Linux.
"""

import importlib.util
import os
import subprocess

import pytest

from smartos_telemetry.engines.dtrace import binding as binding_mod
from smartos_telemetry.engines.dtrace import build_binding
from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.errors import (
    EngineDied,
    ProbeNotFound,
    ScriptCompileError,
    ScriptError,
)
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Average, Bucket, StdDev

FAKE_DIR = os.path.join(os.path.dirname(__file__), "fake_libdtrace")


@pytest.fixture(scope="module")
def fake_binding(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake_libdtrace")
    subprocess.run(
        ["gcc", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(out / "libdtrace.so"),
         "-I", FAKE_DIR, os.path.join(FAKE_DIR, "fake_libdtrace.c")],
        check=True)
    builder = build_binding.make_ffibuilder(
        "_fake_illumos_libdtrace", include=[FAKE_DIR], libdirs=[str(out)])
    path = builder.compile(tmpdir=str(out))
    spec = importlib.util.spec_from_file_location("_fake_illumos_libdtrace", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return binding_mod.binding_from_module(module)


def run(binding, source="fake aggregations"):
    with DTraceConsumer(source, "fake.d", binding=binding, keepalive=0.05) as consumer:
        return consumer.snapshot(), consumer


def test_binding_detects_illumos_family(fake_binding):
    assert fake_binding.family == "illumos"
    assert fake_binding.agg_actions[0x709] == "llquantize"
    assert fake_binding.agg_actions[0x701] == "count"


def test_every_key_kind_is_typed(fake_binding):
    snap, _ = run(fake_binding)
    keys = snap["keys"]
    assert keys.action == "count"
    assert keys.rows == {(-1, -2, -3, -(1 << 40), "zone-a"): (1 << 40) + 7}


def test_scalars_are_exact_and_normalized(fake_binding):
    snap, _ = run(fake_binding)
    assert snap["total"].rows == {("big",): -(1 << 62) - 5}
    assert snap["normalized"].rows == {(): 123}  # 123456 / normal 1000
    assert snap["smallest"].action == "min" and snap["smallest"].rows == {(): -42}
    assert snap["largest"].action == "max" and snap["largest"].rows == {(): INT64_MAX}
    assert snap["mean"].rows == {(): Average(4, 10)}
    assert snap["spread"].rows == {(): StdDev(3, 6, (1 << 64) + 14)}


def test_quantize_buckets(fake_binding):
    snap, _ = run(fake_binding)
    hist = snap["pow2"].rows[(7,)]
    assert hist.buckets == (
        Bucket(-7, -4, 1), Bucket(0, 0, 2), Bucket(1, 1, 3), Bucket(64, 127, 5))


def test_lquantize_buckets_read_the_leading_parameter_word(fake_binding):
    snap, _ = run(fake_binding)
    hist = snap["linear"].rows[()]
    assert hist.buckets == (
        Bucket(INT64_MIN, -21, 1), Bucket(-20, -11, 2), Bucket(30, INT64_MAX, 3))


def test_llquantize_buckets_use_the_illumos_encoding(fake_binding):
    snap, _ = run(fake_binding)
    hist = snap["loglinear"].rows[()]
    assert hist.buckets == (
        Bucket(INT64_MIN, 0, 1), Bucket(1, 1, 2), Bucket(9, 9, 3), Bucket(10, 19, 4),
        Bucket(1000, INT64_MAX, 5))


def test_symbol_keys_are_text(fake_binding):
    snap, _ = run(fake_binding)
    assert snap["syms"].rows == {("genunix`fop_read", "zfs", "libc.so.1`read", "libumem.so.1"): 9}


def test_compile_errors_carry_libdtrace_message_and_line(fake_binding):
    with pytest.raises(ScriptCompileError) as info:
        run(fake_binding, "syntax-error")
    assert info.value.line == 2
    assert 'syntax error near "}"' in str(info.value)
    with pytest.raises(ProbeNotFound, match="does not match any probes"):
        run(fake_binding, "no-probe")


def test_destructive_programs_are_refused(fake_binding):
    with pytest.raises(ScriptError, match="destructive"):
        run(fake_binding, "#pragma D option destructive")
    with pytest.raises(ScriptError, match="never enabled"):
        DTraceConsumer("x", binding=fake_binding, options={"destructive": ""})


def test_drops_and_errors_are_counted_and_do_not_stop_the_consumer(fake_binding):
    with DTraceConsumer("drops printf", "fake.d", binding=fake_binding,
                        keepalive=3600) as consumer:
        # each snapshot runs dtrace_work first, so its health is current
        first = consumer.snapshot()
        second = consumer.snapshot()
        assert consumer.is_alive()
        assert consumer.output() == ["hello from fake\n", "hello from fake\n"]
    assert first.health.drops == {"aggregation": 7}
    assert second.health.drops == {"aggregation": 14}
    assert second.health.errors == {"invalid_address": 2}
    assert second["keys"].rows  # data still read


def test_a_dead_consumer_is_detected(fake_binding):
    consumer = DTraceConsumer("die", "fake.d", binding=fake_binding, keepalive=3600)
    consumer.start()
    try:
        consumer.poll()  # dtrace_work fails as for a killed consumer
        with pytest.raises(EngineDied, match="systemic unresponsiveness"):
            consumer.snapshot()
        assert not consumer.is_alive()
        assert "systemic" in consumer.death_reason
    finally:
        consumer.stop()
        consumer.stop()  # idempotent
    with pytest.raises(EngineDied):
        consumer.snapshot()
    # its owner starts a new one (on illumos, in the same process)
    snap, _ = run(fake_binding)
    assert snap["keys"].rows
