"""The illumos ABI path of the libdtrace binding, against a fake libdtrace.

tests/fake_libdtrace/ holds a dtrace.h that declares what illumos' headers
declare (each block citing its line; no Oracle-only names) and a C library
that takes programs as illumos does (a string of any length, line numbers in
messages only from a FILE), understands a small subset of D, and aggregates
the raw values a test fires at its probes by the kernel's rules
(dtrace_aggregate_* in illumos dtrace.c).  The binding is built against them
exactly as setup.py builds it against a real header, so the illumos path --
compile, bucketing, decoding -- runs on Linux and is checked against
illumos' rules rather than against numbers written for the decoder.
"""

import collections
import ctypes
import importlib.util
import os
import re
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
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Average, StdDev

FAKE_DIR = os.path.join(os.path.dirname(__file__), "fake_libdtrace")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """(binding, fire): the binding built against the fake, and fire(probe,
    *args) firing fake:::probe in the running consumer."""
    out = tmp_path_factory.mktemp("fake_libdtrace")
    library = out / "libdtrace.so"
    subprocess.run(
        ["gcc", "-Wall", "-Werror", "-shared", "-fPIC", "-pthread", "-o", str(library),
         "-I", FAKE_DIR, os.path.join(FAKE_DIR, "fake_libdtrace.c")],
        check=True)
    builder = build_binding.make_ffibuilder(
        "_fake_illumos_libdtrace", include=[FAKE_DIR], libdirs=[str(out)])
    path = builder.compile(tmpdir=str(out))
    spec = importlib.util.spec_from_file_location("_fake_illumos_libdtrace", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the same file the extension links against: the same loaded library
    fake_fire = ctypes.CDLL(str(library)).fake_fire
    fake_fire.argtypes = [ctypes.c_char_p] + [ctypes.c_int64] * 4
    fake_fire.restype = ctypes.c_int

    def fire(probe, *args):
        args = [*args, 0, 0, 0, 0][:4]
        assert fake_fire(probe.encode(), *args) == 1, "no consumer is tracing"

    return binding_mod.binding_from_module(module), fire


@pytest.fixture(scope="module")
def fake_binding(fake):
    return fake[0]


def consumer(binding, source, **kwargs):
    kwargs.setdefault("keepalive", 0.05)
    return DTraceConsumer(source, "fake.d", binding=binding, **kwargs)


def fired(fake, source, firings):
    """The snapshot after firing ``(probe, args)`` pairs at ``source``."""
    binding, fire = fake
    with consumer(binding, source) as c:
        for probe, args in firings:
            fire(probe, *args)
        return c.snapshot()


def contains(bounds, v):
    return [b for b in bounds if b[0] <= v <= b[1]]


def check_bucketing(hist, values):
    """Every value lies in exactly one decoded bucket, and each bucket's
    count is the number of values inside its bounds."""
    buckets = [(b.low, b.high) for b in hist.buckets]
    per_bucket = collections.Counter()
    for v in values:
        (where,) = contains(buckets, v)
        per_bucket[where] += 1
    assert {(b.low, b.high): b.count for b in hist.buckets} == dict(per_bucket)


def test_binding_detects_illumos_family(fake_binding):
    assert fake_binding.family == "illumos"
    assert fake_binding.agg_actions[0x709] == "llquantize"
    assert fake_binding.agg_actions[0x701] == "count"


#: names the binding's cdef takes from the C library, not from <dtrace.h>;
#: fmemopen is not one of them: SmartOS images before illumos' 2020 libc
#: have none
LIBC_NAMES = frozenset({
    "FILE", "size_t", "pid_t", "uint16_t", "uint32_t", "uint64_t", "int64_t",
    "fclose", "fflush", "fwrite", "free", "open_memstream", "rewind", "tmpfile",
})


def cdef_names(cdef):
    """Every name a cdef takes from headers: macros, types, struct tags and
    fields, enum constants and functions (not parameter names)."""
    names = set(re.findall(r"^#define\s+(\w+)", cdef, re.M))
    names |= set(re.findall(r"\bstruct\s+(\w+)", cdef))
    names |= set(re.findall(r"^typedef\s+[^;{]*?\b(\w+);", cdef, re.M))
    names |= set(re.findall(r"^}\s*(\w+);", cdef, re.M))
    for body in re.findall(r"{(.*?)}", cdef, re.S):
        names |= set(re.findall(r"^\s*(DTRACE\w+)", body, re.M))  # enum constants
        names |= set(re.findall(r"\b(\w+)(?:\[\d*\])?;", body))  # struct fields
    for line in cdef.splitlines():
        m = re.match(r"[A-Za-z_][\w\s\*]*?\b(\w+)\(", line)
        if m and not line.startswith("extern \"Python\""):
            names.add(m.group(1))
    return {n for n in names if not n.startswith(("st_", "ST_"))} - LIBC_NAMES


def header_code_words(path):
    """The identifiers a header declares or uses, comments left out."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return set(re.findall(r"\w+", text))


def test_illumos_binding_names_only_what_the_illumos_header_declares():
    # the fake header declares what illumos' <dtrace.h> and <sys/dtrace.h>
    # declare (each block cites its line); a name missing from it is a name
    # the real illumos header lacks, and the binding would not build there
    names = cdef_names(build_binding.COMMON_CDEF + build_binding.ILLUMOS_CDEF)
    assert {"dtrace_open", "dtagd_rec", "DTRACE_STATUS_OKAY", "dtrace_aggdata",
            "DTRACEDROP_DBLERROR", "dtrace_program_strcompile"} <= names
    missing = sorted(names - header_code_words(os.path.join(FAKE_DIR, "dtrace.h")))
    assert missing == [], f"the illumos binding names {missing}, which illumos does not declare"


def test_the_fake_build_fails_on_an_oracle_only_name(tmp_path, capfd):
    builder = build_binding.make_ffibuilder(
        "_fake_oracle_name", include=[FAKE_DIR], libdirs=[str(tmp_path)])
    builder.cdef("#define DTRACE_STATUS_ERROR ...")
    with pytest.raises(Exception, match="CompileError"):
        builder.compile(tmpdir=str(tmp_path))
    assert "DTRACE_STATUS_ERROR\u2019 undeclared" in capfd.readouterr().err


def test_every_key_kind_is_typed(fake):
    src = """
    fake:::keys { @keys[(char)arg0, (short)arg1, (int)arg2, (long)arg3, "zone-a"] = count(); }
    fake:::syms { @syms[sym(arg0), mod(arg1), usym(arg2), umod(arg3)] = count(); }
    """
    snap = fired(fake, src, [("keys", (-1, -2, -3, -(1 << 40)))] * 3 +
                 [("syms", (0x1000, 0x2000, 0x3000, 0x4000))])
    assert snap["keys"].action == "count"
    assert snap["keys"].rows == {(-1, -2, -3, -(1 << 40), "zone-a"): 3}
    assert snap["syms"].rows == {("genunix`fop_read", "zfs", "libc.so.1`read",
                                  "libumem.so.1"): 1}


def test_scalars_are_exact_and_normalized(fake):
    src = """
    fake:::v { @total["big"] = sum(arg0); @smallest = min(arg0); @largest = max(arg0);
               @mean = avg(arg0); @spread = stddev(arg0); @normalized = sum(arg0); }
    BEGIN { normalize(@normalized, 1000); }
    """
    values = [3, -(1 << 40), 123456, (1 << 62) + 7]
    snap = fired(fake, src, [("v", (v,)) for v in values])
    total = sum(values)
    assert snap["total"].rows == {("big",): total}
    assert snap["smallest"].action == "min" and snap["smallest"].rows == {(): -(1 << 40)}
    assert snap["largest"].action == "max" and snap["largest"].rows == {(): (1 << 62) + 7}
    assert snap["mean"].rows == {(): Average(4, total)}
    # sum of squares past 2^64: the kernel's 128-bit words, decoded exactly
    assert snap["spread"].rows == {(): StdDev(4, total, sum(v * v for v in values))}
    assert snap["normalized"].rows == {(): total // 1000}  # positive: truncation


def test_quantize_decodes_the_kernel_s_buckets_negatives_included(fake):
    values = [0, 0, 1, INT64_MIN, INT64_MAX, -(2**62), -(2**62) - 1, 2**62]
    for k in range(0, 63, 3):
        values += [-(2**k) - 1, -(2**k), -(2**k) + 1, 2**k - 1, 2**k, 2**k + 1]
    snap = fired(fake, "fake:::q { @pow2[arg1] = quantize(arg0); }",
                 [("q", (v, 7)) for v in values])
    hist = snap["pow2"].rows[(7,)]
    assert hist.count == len(values)
    check_bucketing(hist, values)
    assert contains([(b.low, b.high) for b in hist.buckets], -3) == [(-3, -2)]


def test_lquantize_buckets_the_low_32_bits_as_the_kernel_does(fake):
    # illumos truncates to int32_t before bucketing (dtrace_aggregate_lquantize):
    # 2^32 + 5 is counted as 5, 2^31 as INT32_MIN (below the base), 2^32 - 1 as -1
    values = [-21, -20, -11, -10, 29, 30, 1000, 2**32 + 5, 2**31, 2**32 - 1,
              -(2**32) + 25, INT64_MAX, INT64_MIN]
    snap = fired(fake, "fake:::l { @linear = lquantize(arg0, -20, 30, 10); }",
                 [("l", (v,)) for v in values])
    hist = snap["linear"].rows[()]
    truncated = [(v + 2**31) % 2**32 - 2**31 for v in values]
    check_bucketing(hist, truncated)
    # what the decoder says is true of what the kernel counted: the open
    # ends stop at the int32 limits, no value beyond them was ever bucketed
    assert hist.lows[0] == -(2**31) and hist.highs[-1] == 2**31 - 1
    counts = {(b.low, b.high): b.count for b in hist.buckets}
    # 2^32 + 5 and INT64_MIN (low bits 0); -10, 2^32 - 1 and INT64_MAX (low bits -1)
    assert counts[(0, 9)] == 2 and counts[(-10, -1)] == 3 and counts[(20, 29)] == 2


@pytest.mark.parametrize("params", [(10, 0, 2, 10), (10, 3, 9, 100), (2, 0, 10, 4)])
def test_llquantize_decodes_the_kernel_s_buckets(fake, params):
    factor, low, high, nsteps = params
    values = [INT64_MIN, -5, 0, 1, INT64_MAX, 10**12, factor ** (high + 1),
              factor ** (high + 1) - 1]
    for m in range(low, high + 2):
        values += [factor**m - 1, factor**m, factor**m + 1, 3 * factor**m // 2]
    src = f"fake:::ll {{ @loglinear = llquantize(arg0, {factor}, {low}, {high}, {nsteps}); }}"
    hist = fired(fake, src, [("ll", (v,)) for v in values])["loglinear"].rows[()]
    assert hist.count == len(values)
    check_bucketing(hist, values)


def test_a_program_longer_than_4_kib_arrives_whole(fake):
    # as a string (dtrace_program_strcompile), every clause of a long program
    # reaches libdtrace -- the last ones included
    clauses = [f"fake:::tick {{ @clause_{i:03d} = count(); }}  /* clause {i} */"
               for i in range(120)]
    src = "\n".join(clauses)
    assert len(src) > 4096
    snap = fired(fake, src, [("tick", ())] * 2)
    assert {name: agg.rows for name, agg in snap.aggregations.items()} == {
        f"clause_{i:03d}": {(): 2} for i in range(120)}


def test_the_fake_words_string_compile_errors_as_illumos_does(fake_binding):
    # illumos names a line only when it read the program from a FILE
    # (dt_parser.c xyvwarn), so the consumer must find the line itself
    b = fake_binding
    err = b.ffi.new("int *")
    handle = b.lib.dtrace_open(b.lib.DTRACE_VERSION, 0, err)
    try:
        prog = b.lib.dtrace_program_strcompile(
            handle, b"fake:::a {\n  oops;\n}\n", b.lib.DTRACE_PROBESPEC_NAME, 0, 0, b.ffi.NULL)
        assert prog == b.ffi.NULL
        assert b.errmsg(handle) == 'syntax error near "oops"'
    finally:
        b.lib.dtrace_close(handle)


def test_compile_errors_carry_libdtrace_message_and_line(fake_binding):
    with pytest.raises(ScriptCompileError) as info:
        consumer(fake_binding, "fake:::a {\n  @x = count();\n  syntax-error;\n}\n").start()
    assert info.value.line == 3
    assert 'syntax error near "syntax-error"' in str(info.value)
    with pytest.raises(ProbeNotFound, match="does not match any probes"):
        consumer(fake_binding, "nosuch:::probe { @x = count(); }").start()


def test_destructive_programs_are_refused(fake_binding):
    with pytest.raises(ScriptError, match="destructive"):
        consumer(fake_binding, "#pragma D option destructive\nBEGIN { exit(0); }").start()
    with pytest.raises(ScriptError, match="never enabled"):
        DTraceConsumer("x", binding=fake_binding, options={"destructive": ""})


def test_drops_and_errors_are_counted_and_do_not_stop_the_consumer(fake):
    binding, fire = fake
    src = 'fake:::drop { @n = count(); }\nfake:::say { printf("hello from fake\\n"); }'
    with consumer(binding, src, keepalive=3600) as c:
        # each snapshot runs dtrace_work first, so its health is current
        fire("drop", 7)
        fire("say")
        first = c.snapshot()
        fire("drop", 7)
        fire("say")
        second = c.snapshot()
        assert c.is_alive()
        assert c.output() == ["hello from fake\n", "hello from fake\n"]
    assert first.health.drops == {"aggregation": 7}
    assert second.health.drops == {"aggregation": 14}
    assert second.health.errors == {"invalid_address": 2}
    assert second["n"].rows == {(): 2}  # data still read


def test_a_dead_consumer_is_detected(fake):
    binding, fire = fake
    c = consumer(binding, "fake:::die { }", keepalive=3600)
    c.start()
    try:
        fire("die")
        c.poll()  # dtrace_work fails as for a consumer the kernel aborted
        with pytest.raises(EngineDied, match="systemic unresponsiveness"):
            c.snapshot()
        assert not c.is_alive()
        assert "systemic" in c.death_reason
    finally:
        c.stop()
        c.stop()  # idempotent
    with pytest.raises(EngineDied):
        c.snapshot()
    # its owner starts a new one (on illumos, in the same process)
    snap = fired(fake, "fake:::n { @n = count(); }", [("n", ())])
    assert snap["n"].rows == {(): 1}


def test_a_failing_dtrace_status_is_a_dead_consumer(fake):
    # illumos' dtrace_status returns a bare -1 (dt_work.c), no named constant
    binding, fire = fake
    with consumer(binding, "fake:::status-fails { }", keepalive=3600) as c:
        fire("status-fails")
        with pytest.raises(EngineDied, match="dtrace_status failed"):
            c.snapshot()
        assert not c.is_alive()


def test_exit_is_seen(fake_binding):
    with consumer(fake_binding, "BEGIN { @x = count(); exit(0); }") as c:
        c.poll()
        assert c.exited and not c.is_alive()
        assert c.snapshot()["x"].rows == {(): 1}
