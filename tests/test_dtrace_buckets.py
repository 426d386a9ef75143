"""Bucket bounds of quantize/lquantize/llquantize, checked against first principles."""

from smartos_telemetry.engines.dtrace import buckets
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN


def contiguous(bounds):
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    return all(hi + 1 == lo for (_, hi), (lo, _) in pairs if lo <= hi)


def kernel_quantize_bucket(value):
    """The bucket illumos puts ``value`` in: dtrace_aggregate_quantize
    (uts/common/dtrace/dtrace.c), loop for loop."""
    zero, nbuckets = 63, 127
    if value < 0:
        for i in range(zero):
            if value <= buckets.quantize_bucket_value(i):
                return i
        raise AssertionError("unreachable in the kernel (ASSERT(0))")
    for i in range(zero + 1, nbuckets):
        if value < buckets.quantize_bucket_value(i):
            return i - 1
    return nbuckets - 1


def test_quantize_covers_int64_in_power_of_two_steps():
    b = buckets.quantize_bounds()
    assert len(b) == 127 and b[0][0] == INT64_MIN and b[-1][1] == INT64_MAX
    assert b[63] == (0, 0) and b[64] == (1, 1) and b[65] == (2, 3) and b[62] == (-1, -1)
    assert contiguous(b)


def test_negative_quantize_buckets_hold_what_the_kernel_puts_there():
    # bucket i below zero holds (BUCKETVAL(i-1), BUCKETVAL(i)]
    b = buckets.quantize_bounds()
    assert b[61] == (-3, -2) and b[60] == (-7, -4) and b[0] == (INT64_MIN, -(2**62))
    assert b[1] == (-(2**62) + 1, -(2**61))
    values = [INT64_MIN, -(2**62) - 1, -(2**62), -(2**62) + 1, INT64_MAX, 2**62, 2**62 - 1]
    for k in range(63):
        values += [-(2**k) - 1, -(2**k), -(2**k) + 1, 2**k - 1, 2**k, 2**k + 1]
    for v in values:
        low, high = b[kernel_quantize_bucket(v)]
        assert low <= v <= high, (v, kernel_quantize_bucket(v), low, high)


def test_lquantize_parameters_and_bounds():
    word = (10 << 48) | (5 << 32) | ((-20) & 0xFFFFFFFF)
    assert buckets.lquantize_params(word) == (-20, 10, 5)
    b = buckets.lquantize_bounds(-20, 10, 5, value_bits=64)
    assert b[0] == (INT64_MIN, -21) and b[1] == (-20, -11) and b[-1] == (30, INT64_MAX)
    assert len(b) == 7 and contiguous(b)


def test_illumos_lquantize_ends_are_int32_limited():
    # the illumos kernel buckets (int32_t)value (dtrace_aggregate_lquantize):
    # nothing it counted lies beyond the int32 limits
    b = buckets.lquantize_bounds(-20, 10, 5, value_bits=32)
    assert b[0] == (-(2**31), -21) and b[-1] == (30, 2**31 - 1)
    assert b[1:-1] == buckets.lquantize_bounds(-20, 10, 5, value_bits=64)[1:-1]
    assert contiguous(b)


def test_llquantize_encodings_differ_between_families():
    illumos = (10 << 48) | (2 << 32) | (4 << 16) | 20
    oracle = (20 << 48) | (4 << 32) | (2 << 16) | 10
    assert buckets.llquantize_params_illumos(illumos) == (10, 2, 4, 20)
    assert buckets.llquantize_params_oracle(oracle) == (10, 2, 4, 20)


def test_illumos_llquantize_bounds():
    b = buckets.llquantize_bounds(10, 0, 2, 10)
    assert len(b) == 1 + 9 + 9 + 9 + 1
    assert b[1] == (1, 1) and b[10] == (10, 19) and b[19] == (100, 199)
    assert b[-1] == (1000, INT64_MAX) and contiguous(b)


def test_oracle_llquantize_bounds_are_symmetric_with_fractional_widths():
    b = buckets.llquantize_bounds_oracle(10, 0, 6, 20)
    assert len(b) == 255 and b[127] == (0, 0)
    assert b[128] == (1, 1) and b[129] == (2, 1)  # width 1/2: an empty bucket
    assert b[146] == (10, 14) and b[164] == (100, 149) and b[254] == (10**7, INT64_MAX)
    assert b[126] == (-1, -1) and b[0] == (INT64_MIN, -(10**7))
    nonempty = [x for x in b if x[0] <= x[1]]
    assert contiguous(nonempty)


def test_log_linear_buckets_bound_percentile_error_to_ten_percent():
    # the relative width of every bounded bucket above 100 is at most 10%
    for lo, hi in buckets.llquantize_bounds_oracle(10, 0, 9, 100)[128:-1]:
        if lo >= 100:
            assert (hi - lo + 1) / lo <= 0.10
