"""The log-linear bucket index the Linux ``.bt`` scripts compute in the kernel.

bpftrace's own ``hist()`` has power-of-two buckets (up to 100% wide) and, in
0.17, lumps every value >= 2^31 into one bucket.  The shipped scripts compute
their own bucket index instead and store ``@name[key..., index] = count()``.
This module turns such a map back into :class:`Histogram` rows.

The index of a value ``v >= 0`` (16 linear sub-buckets per power of two)::

    v < 16:   index = v                              bucket [v, v]
    v >= 16:  e = floor(log2(v))                     (4 <= e <= 63)
              index = (e - 3) * 16 + ((v >> (e - 4)) & 15)
              bucket [(16 + s) << (e - 4), ((17 + s) << (e - 4)) - 1], s = index % 16

so a bucket is at most 1/16 of its low bound wide: any value in it lies within
6.25% of both bounds, and a percentile read from the buckets is within that
relative error.  Index 975 is the last (values up to 2^64 - 1).

The bpftrace form (copy it verbatim; bpftrace 0.17 has no functions)::

    $v = $ns; $e = 0;
    if ($v >> 32) { $v = $v >> 32; $e += 32; }
    if ($v >> 16) { $v = $v >> 16; $e += 16; }
    if ($v >> 8) { $v = $v >> 8; $e += 8; }
    if ($v >> 4) { $v = $v >> 4; $e += 4; }
    if ($v >> 2) { $v = $v >> 2; $e += 2; }
    if ($v >> 1) { $e += 1; }
    $b = $ns;
    if ($ns >= 16) { $b = ($e - 3) * 16 + (($ns >> ($e - 4)) & 15); }

A script marks such maps with a comment line ``// loglinear: @name ...``;
the engine then reports them as ``llquantize`` histograms keyed by every key
but the last.
"""

from smartos_telemetry.errors import EngineOutputError
from smartos_telemetry.snapshot import Histogram

SUB_BUCKETS = 16
SUB_BITS = 4
MAX_INDEX = (63 - 3) * SUB_BUCKETS + SUB_BUCKETS - 1
ACTION = "llquantize"


def bucket_index(value):
    """The index of ``value`` (the Python twin of the in-kernel computation)."""
    if value < 0:
        raise ValueError(f"log-linear buckets hold values >= 0, not {value}")
    if value < SUB_BUCKETS:
        return value
    e = value.bit_length() - 1
    return (e - 3) * SUB_BUCKETS + ((value >> (e - SUB_BITS)) & (SUB_BUCKETS - 1))


def _computed_bounds(index):
    if index < SUB_BUCKETS:
        return index, index
    e, s = divmod(index, SUB_BUCKETS)
    e += 3
    shift = e - SUB_BITS
    return (SUB_BUCKETS + s) << shift, ((SUB_BUCKETS + s + 1) << shift) - 1


#: every bucket's bounds, made once: the histograms of all zones and polls
#: then share the same int objects, which makes the poll's layout
#: comparisons identity checks and keeps a busy host's snapshots small
_BOUNDS = tuple(_computed_bounds(i) for i in range(MAX_INDEX + 1))


def bucket_bounds(index):
    """``(low, high)`` of bucket ``index``, both inclusive."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"log-linear bucket index {index} outside 0..{MAX_INDEX}")
    return _BOUNDS[index]


def histograms(rows, name="map"):
    """``{(k..., index): count}`` -> ``{(k...,): Histogram}``."""
    grouped = {}
    for key, count in rows.items():
        if not key or not isinstance(key[-1], int) or not isinstance(count, int):
            raise EngineOutputError(
                f"@{name}: log-linear rows need an int bucket index as the last key "
                f"and a count, got {key!r}: {count!r}")
        try:
            low, high = bucket_bounds(key[-1])
        except ValueError as exc:
            raise EngineOutputError(f"@{name}: {exc}") from None
        grouped.setdefault(key[:-1], []).append((low, high, count))
    return {key: Histogram.from_counts(triples) for key, triples in grouped.items()}
