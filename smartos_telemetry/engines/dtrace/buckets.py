"""Bucket bounds of DTrace's quantize, lquantize and llquantize.

Each function returns the list of ``(low, high)`` bounds, both inclusive,
one per bucket in the order libdtrace stores them.  Open ends use the int64
limits.  The decoder zips them with the bucket counts and checks that the
lengths agree, so a wrong encoding is an error, never a silent mis-read.

Parameter encodings differ between the two libdtrace families
(``shared/reference/libdtrace.md`` section 3):

* lquantize: ``step << 48 | levels << 32 | base`` (base a signed 32-bit
  value) in both families;
* llquantize: illumos ``factor << 48 | low << 32 | high << 16 | nsteps``;
  Oracle ``nsteps << 48 | high << 32 | low << 16 | factor``.

The llquantize bucket layouts differ too (see ``llquantize_bounds_oracle``).
Which family reads which encoding is the binding's
(``binding.py``: ``IllumosBinding``, ``OracleBinding``).
"""


from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN

QUANTIZE_NBUCKETS = 127
QUANTIZE_ZEROBUCKET = 63


def quantize_bucket_value(bucket):
    """``DTRACE_QUANTIZE_BUCKETVAL(bucket)`` of illumos <sys/dtrace.h>.

    For the zero bucket and above it is the lowest value the bucket holds;
    below zero it is the value of the bucket nearest zero, its *highest*.
    """
    if bucket < QUANTIZE_ZEROBUCKET:
        return -(1 << (QUANTIZE_ZEROBUCKET - 1 - bucket))
    if bucket == QUANTIZE_ZEROBUCKET:
        return 0
    return 1 << (bucket - QUANTIZE_ZEROBUCKET - 1)


def quantize_bounds():
    """Bounds of the 127 buckets of ``quantize()``.

    The kernel's rule (illumos uts/common/dtrace/dtrace.c,
    dtrace_aggregate_quantize): a negative value goes into the first bucket
    i with ``value <= BUCKETVAL(i)``, so negative bucket i holds
    ``(BUCKETVAL(i-1), BUCKETVAL(i)]`` -- bucket 62 is -1, bucket 61 is
    -3..-2, bucket 60 is -7..-4 and bucket 0 everything at or below -2^62;
    a value >= 0 goes into the last bucket i with ``BUCKETVAL(i) <= value``,
    so bucket 63 + k holds ``[2^(k-1), 2^k - 1]`` and the last holds 2^62
    and above.
    """
    bounds = []
    for b in range(QUANTIZE_NBUCKETS):
        if b < QUANTIZE_ZEROBUCKET:
            low = INT64_MIN if b == 0 else quantize_bucket_value(b - 1) + 1
            high = quantize_bucket_value(b)
        else:
            low = quantize_bucket_value(b)
            high = (INT64_MAX if b == QUANTIZE_NBUCKETS - 1
                    else quantize_bucket_value(b + 1) - 1)
        bounds.append((low, high))
    return bounds


def _ceil_div(a, b):
    return -(-a // b)


def _u16(word, shift):
    return (word >> shift) & 0xFFFF


def lquantize_params(word):
    """``(base, step, levels)`` from the lquantize encoding (both families)."""
    base = word & 0xFFFFFFFF
    if base >= 1 << 31:
        base -= 1 << 32
    return base, _u16(word, 48), _u16(word, 32)


def lquantize_bounds(base, step, levels, value_bits=64):
    """Bounds of ``lquantize(v, base, base + step * levels, step)``.

    One underflow bucket (below base), ``levels`` buckets of width ``step``,
    one overflow bucket (``base + levels * step`` and above).

    ``value_bits``: the width of the value the kernel buckets.  The illumos
    kernel truncates it to ``int32_t`` (uts/common/dtrace/dtrace.c,
    dtrace_aggregate_lquantize), so its buckets count the value's low 32
    bits: the open ends stop at the int32 limits, and a value beyond 32 bits
    is counted in the bucket of its truncation -- any bucket, an in-range one
    included.  Oracle DTrace 2.x buckets the whole 64-bit value
    (tests/libdtrace_real: 2^32 + 5 and -2^32 + 25 land in the open ends).
    """
    low, high = -(1 << (value_bits - 1)), (1 << (value_bits - 1)) - 1
    bounds = [(low, base - 1)]
    for i in range(levels):
        first = base + i * step
        bounds.append((first, first + step - 1))
    bounds.append((base + levels * step, high))
    return bounds


def llquantize_params_illumos(word):
    """``(factor, low, high, nsteps)`` from illumos' llquantize encoding."""
    return _u16(word, 48), _u16(word, 32), _u16(word, 16), _u16(word, 0)


def llquantize_params_oracle(word):
    """``(factor, low, high, nsteps)`` from Oracle DTrace's llquantize encoding."""
    return _u16(word, 0), _u16(word, 16), _u16(word, 32), _u16(word, 48)


def llquantize_bounds(factor, low, high, nsteps):
    """Bounds of ``llquantize(v, factor, low, high, nsteps)``.

    Bucket 0 holds values below factor^low.  Each order of magnitude m in
    low..high, covering [factor^m, factor^(m+1)), is cut into buckets of
    width factor^(m+1) / min(nsteps, factor^(m+1)); the part below factor^m
    has no buckets (it belongs to the order below).  The last bucket holds
    factor^(high+1) and above.
    """
    if factor < 2 or nsteps < 1 or high < low:
        raise ValueError(f"invalid llquantize parameters factor={factor} low={low} "
                         f"high={high} nsteps={nsteps}")
    this = factor**low
    bounds = [(INT64_MIN, this - 1)]
    for _ in range(low, high + 1):
        nxt = this * factor
        width = nxt // min(nsteps, nxt)
        value = this
        while value < nxt:
            bounds.append((value, min(value + width, nxt) - 1))
            value += width
        this = nxt
    bounds.append((this, INT64_MAX))
    return bounds


def llquantize_bounds_oracle(factor, low, high, nsteps):
    """Bounds of Oracle DTrace 2.x ``llquantize(v, factor, low, high, nsteps)``.

    Oracle DTrace 2.x's layout (tests/libdtrace_real pin it down):
    the histogram is symmetric around a centre bucket holding
    ``|v| < factor^low``.  Each order of magnitude m in low..high has
    ``nsteps - nsteps / factor`` buckets of width ``factor^(m+1) / nsteps``
    -- a width that may be fractional, so for small magnitudes some buckets
    can hold no integer (they stay empty) -- then one overflow bucket for
    ``v >= factor^(high+1)``.  Negative values mirror the positive side.
    """
    if factor < 2 or nsteps < 1 or high < low:
        raise ValueError(f"invalid llquantize parameters factor={factor} low={low} "
                         f"high={high} nsteps={nsteps}")
    positive = []
    for m in range(low, high + 1):
        start, span = factor**m, factor ** (m + 1)
        for i in range(nsteps - nsteps // factor):
            # integers v with i <= (v - start) * nsteps / span < i + 1
            positive.append((start + _ceil_div(i * span, nsteps),
                             start + _ceil_div((i + 1) * span, nsteps) - 1))
    positive.append((factor ** (high + 1), INT64_MAX))
    negative = [(INT64_MIN if hi == INT64_MAX else -hi, -lo) for lo, hi in reversed(positive)]
    centre = factor**low - 1
    return negative + [(-centre, centre)] + positive
