"""bpftrace JSON lines -> typed events; log-linear buckets; script preparation.  Pure."""

import pytest

from smartos_telemetry.engines.bpftrace import json_output as jo
from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.engines.bpftrace.program import READY_MARKER, prepare
from smartos_telemetry.errors import EngineOutputError
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Average, Bucket, Histogram


def test_scalar_maps_take_their_action_from_the_script_and_split_keys():
    ev = jo.decode_line('{"type": "map", "data": {"@c": {"1,abc": 4, "63,x y": 2}}}',
                        {"c": "count"})
    agg = ev.aggregations["c"]
    assert agg.action == "count"
    assert agg.rows == {(1, "abc"): 4, (63, "x y"): 2}
    ev = jo.decode_line('{"type": "map", "data": {"@m": 9}}', {"m": "max"})
    assert ev.aggregations["m"].rows == {(): 9} and ev.aggregations["m"].action == "max"
    # unknown function: a plain map, decoded as sum
    assert jo.decode_line('{"type": "map", "data": {"@t": {"-5": 1}}}').aggregations[
        "t"].rows == {(-5,): 1}


def test_stats_decode_to_exact_averages_keyed_and_keyless():
    ev = jo.decode_line('{"type": "stats", "data": {"@sk": {"x": {"count": 2, "average": 15,'
                        ' "total": 30}}}}', {"sk": "stats"})
    assert ev.aggregations["sk"].action == "avg"
    assert ev.aggregations["sk"].rows == {("x",): Average(2, 30)}
    ev = jo.decode_line('{"type": "stats", "data": {"@s": {"count": 53, "average": 7, '
                        '"total": 371}}}')
    assert ev.aggregations["s"].rows == {(): Average(53, 371)}


def test_avg_only_output_is_refused_not_guessed():
    with pytest.raises(EngineOutputError, match="stats"):
        jo.decode_line('{"type": "stats", "data": {"@av": {"x": 3}}}', {"av": "avg"})


def test_hist_buckets_become_inclusive_low_high_with_open_ends():
    line = ('{"type": "hist", "data": {"@h": {"63": [{"max": -1, "count": 1}, '
            '{"min": 0, "max": 0, "count": 2}, {"min": 32, "max": 63, "count": 5}]}}}')
    ev = jo.decode_line(line, {"h": "hist"})
    agg = ev.aggregations["h"]
    assert agg.action == "quantize"
    assert agg.rows[(63,)].buckets == (Bucket(INT64_MIN, -1, 1), Bucket(0, 0, 2),
                                       Bucket(32, 63, 5))
    ev = jo.decode_line('{"type": "hist", "data": {"@l": [{"min": 2, "max": 3, "count": 53},'
                        ' {"min": 100, "count": 1}]}}', {"l": "lhist"})
    assert ev.aggregations["l"].action == "lquantize"
    assert ev.aggregations["l"].rows[()].buckets == (Bucket(2, 3, 53), Bucket(100, INT64_MAX, 1))


def test_bpftrace_0_17_bogus_2g_bucket_becomes_counted_overflow_bucket():
    ev = jo.decode_line('{"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 1}, '
                        '{"min": -2147483648, "max": 0, "count": 68}]}}', {"h": "hist"})
    assert ev.aggregations["h"].rows[()].buckets == (Bucket(4, 7, 1),
                                                     Bucket(2**31, INT64_MAX, 68))
    assert ev.overflow == 68
    # newer bpftrace prints true bounds: taken as they are, no overflow
    ev = jo.decode_line('{"type": "hist", "data": {"@h": [{"min": 4294967296, '
                        '"max": 8589934591, "count": 3}]}}')
    assert ev.overflow == 0 and ev.aggregations["h"].rows[()].count == 3


def test_control_lines():
    assert jo.decode_line('{"type": "attached_probes", "data": {"probes": 7}}') == \
        jo.Attached(7)
    assert jo.decode_line('{"type": "lost_events", "data": {"events": 51}}') == \
        jo.LostEvents(51)
    assert jo.decode_line('{"type": "helper_error", "helper": "map_update_elem", '
                          '"retcode": -7, "line": 1, "col": 54}') == \
        jo.HelperError("map_update_elem", -7, 1, 54)
    assert jo.decode_line('{"type": "printf", "data": "hi\\n"}') == jo.Printf("hi\n")
    assert jo.decode_line('{"type": "time", "data": "12:00:00\\n"}').type == "time"
    assert jo.decode_line("") is None and jo.decode_line(b"  \n") is None


@pytest.mark.parametrize("line", [
    '{"type": "value", "data": unified:/,blkio:/}',      # 0.17 cgroup_path()
    '{"type": "map", "data": {"@c": {"1": "x"}}}',
    '{"type": "hist", "data": {"@h": [{"min": 9, "max": 1, "count": 1}]}}',
    '{"type": "map", "data": {}}',
    '[1, 2]',
    '{"type": "map", "data": {"@c": {"1,abc": 4',       # truncated
])
def test_malformed_lines_raise_naming_the_line(line):
    with pytest.raises(EngineOutputError) as err:
        jo.decode_line(line)
    assert line[:20] in str(err.value)


def test_loglinear_index_and_bounds_agree_and_stay_within_a_sixteenth():
    previous_high = -1
    for index in range(loglinear.MAX_INDEX + 1):
        low, high = loglinear.bucket_bounds(index)
        assert low == previous_high + 1  # contiguous, no gaps
        assert loglinear.bucket_index(low) == index == loglinear.bucket_index(high)
        if low >= 16:
            assert (high - low + 1) * 16 <= low
        previous_high = high
    assert previous_high == 2**64 - 1
    for v in (0, 15, 16, 17, 1000, 123456789, 2**40 + 5):
        low, high = loglinear.bucket_bounds(loglinear.bucket_index(v))
        assert low <= v <= high


def test_loglinear_rows_fold_into_histograms_keyed_without_the_index():
    i = loglinear.bucket_index
    rows = {(63, i(5000)): 3, (63, i(6000)): 1, (44, i(3_000_000)): 2}
    hists = loglinear.histograms(rows, "runq_ns")
    assert set(hists) == {(63,), (44,)}
    assert hists[(63,)].count == 4 and isinstance(hists[(63,)], Histogram)
    with pytest.raises(EngineOutputError, match="runq_ns"):
        loglinear.histograms({(63, "x"): 1}, "runq_ns")


def test_prepare_reads_functions_adds_sentinel_and_marker_keeping_line_numbers():
    src = ("// loglinear: @runq_ns\n"
           "tracepoint:a:b { @runq_ns[cgroup, 3] = count(); @m = avg(1); @h = hist(2); }\n"
           "BEGIN { @n = sum(1); }\n"
           "END { }\n")
    p = prepare(src)
    assert p.functions == {"runq_ns": "count", "m": "stats", "h": "hist", "n": "sum"}
    assert p.loglinear == {"runq_ns"}
    assert p.sentinel > "runq_ns" and set(p.sentinel) == {"z"}
    lines = p.text.splitlines()
    assert len(lines) == 4 and "stats(1)" in lines[1]
    assert lines[2].startswith("BEGIN {") and f"@{p.sentinel} = count()" in lines[2]
    assert READY_MARKER in lines[2]
    q = prepare("tracepoint:a:b { @x = count(); }\n")
    assert q.text.splitlines()[0] == "tracepoint:a:b { @x = count(); }"
    assert q.text.splitlines()[1].startswith("BEGIN {")
