"""The libbpf engine's histogram decode in C (engines/libbpf/_zone_histograms.c)
and the packed histograms it makes, read without a kernel: rows laid out as
st_common.bpf.h's struct st_hist (bitmap words, then bucket counts) in a
numpy array, as the engine's mmap of a zone array is."""

import random

import numpy as np
import pytest

from smartos_telemetry.engines.libbpf import _zone_histograms
from smartos_telemetry.engines.libbpf.maps import (
    HIGHS,
    HIST_SLOTS,
    HIST_WORDS,
    LOWS,
    NZ_WORDS,
    TABLE,
    bucket_row,
)
from smartos_telemetry.meters.accumulator import HistogramAccumulator, flat_counts
from smartos_telemetry.snapshot import Aggregation, BucketTable, Histogram, PackedHistogram


def rows_of(counts_by_slot, entries=8):
    rows = np.zeros((entries, HIST_WORDS), dtype=np.uint64)
    for slot, counts in counts_by_slot.items():
        rows[slot] = bucket_row(counts)
    return rows


def by_bucket(counts):
    """What reading the buckets one by one gives."""
    triples = [(LOWS[i], HIGHS[i], c) for i, c in enumerate(counts) if c]
    return Histogram(triples) if triples else None


def decode(rows, slots, bits, values, keys=None):
    keys = [(s,) for s in slots] if keys is None else keys
    _zone_histograms.decode(rows, slots, keys, bits, values, TABLE, PackedHistogram)


def random_counts(rng):
    counts = [0] * HIST_SLOTS
    for i in rng.sample(range(HIST_SLOTS), rng.randrange(0, 60)):
        counts[i] = rng.choice((1, rng.randrange(1, 10**6), (1 << 63) + rng.randrange(9)))
    return counts


def test_every_slot_decodes_as_reading_its_buckets_one_by_one():
    rng = random.Random(14)
    entries = 64
    counts = {s: random_counts(rng) for s in range(entries)}
    counts[3] = [0] * HIST_SLOTS  # a zone with no event: no row
    counts[5][0] = counts[5][HIST_SLOTS - 1] = 7  # the first and the overflow bucket
    rows = rows_of(counts, entries)
    bits, values = np.zeros((entries, NZ_WORDS), dtype=np.uint64), {}
    decode(rows, list(range(entries)), bits, values)
    for s in range(entries):
        want = by_bucket(counts[s])
        got = values.get((s,))
        assert got == want, s
        if got is not None:
            assert type(got) is PackedHistogram
            assert got.counts == tuple(c for c in counts[s] if c)
    assert (3,) not in values
    assert (bits == rows[:, :NZ_WORDS]).all()  # every bitmap kept for the next read


def test_a_zone_with_the_same_buckets_keeps_its_layout_objects():
    """Downstream compares layouts poll to poll; unchanged ones must be the
    same objects (its bitmap, and its bounds tuples once made), a bucket
    gained must give new ones."""
    counts = [0] * HIST_SLOTS
    counts[100], counts[200] = 1, 2
    rows = rows_of({0: counts})
    bits, values = np.zeros((8, NZ_WORDS), dtype=np.uint64), {}
    decode(rows, [0], bits, values)
    first = values[(0,)]
    assert first.lows == (LOWS[100], LOWS[200])  # made now, kept by the next read
    rows[0, NZ_WORDS + 200] += 5  # more events in a bucket it had
    decode(rows, [0], bits, values)
    second = values[(0,)]
    assert second.bitmap is first.bitmap
    assert second.lows is first.lows and second.highs is first.highs
    assert second.counts == (1, 7) and first.counts == (1, 2)
    counts[200], counts[300] = 7, 1  # a new bucket
    rows[0] = bucket_row(counts)
    decode(rows, [0], bits, values)
    third = values[(0,)]
    assert third.bitmap is not second.bitmap
    assert third.lows is not second.lows and third.lows == (LOWS[100], LOWS[200], LOWS[300])
    assert third.minus(second) == Histogram([(LOWS[300], HIGHS[300], 1)])


def test_bits_past_the_last_bucket_are_ignored_and_untouched_slots_stay():
    counts = [0] * HIST_SLOTS
    counts[10] = 4
    rows = rows_of({1: counts, 2: counts})
    rows[1, NZ_WORDS - 1] |= np.uint64(1 << 63)  # bit 639: no such bucket
    bits, values = np.zeros((8, NZ_WORDS), dtype=np.uint64), {}
    decode(rows, [1, 2], bits, values)
    kept = values[(2,)]
    rows[2, NZ_WORDS + 10] = 9
    decode(rows, [1], bits, values)  # slot 2 not touched: its value stays
    assert values[(1,)].counts == (4,) and values[(2,)] is kept


def test_bad_layouts_and_slots_are_refused_with_what_is_wrong():
    rows = rows_of({})
    bits, values = np.zeros((8, NZ_WORDS), dtype=np.uint64), {}
    with pytest.raises(IndexError, match="slot 8 is not below 8"):
        decode(rows, [8], bits, values)
    with pytest.raises(ValueError, match="layout mismatch"):
        decode(rows, [0], np.zeros((4, NZ_WORDS), dtype=np.uint64), values)
    with pytest.raises(ValueError, match="layout mismatch"):
        _zone_histograms.decode(rows, [0], [(0,)], bits, values,
                                BucketTable(LOWS[:-1], HIGHS[:-1]), PackedHistogram)
    with pytest.raises(ValueError, match="differ in length"):
        decode(rows, [0, 1], bits, values, keys=[(0,)])
    with pytest.raises(TypeError, match="packed"):
        _zone_histograms.decode(rows, [0], [(0,)], bits, values, TABLE, Histogram)


SMALL = BucketTable((1, 2, 4, 8), (1, 3, 7, 15))


def packed(triples, table=SMALL):
    """The PackedHistogram of (low, high, count) triples of table's buckets."""
    index = {(lo, hi): i for i, (lo, hi) in enumerate(zip(table.lows, table.highs, strict=True))}
    return PackedHistogram.of_buckets(table, {index[lo, hi]: c for lo, hi, c in triples})


def test_a_packed_histogram_is_the_histogram_of_its_buckets():
    a = [(1, 1, 2), (2, 3, 5), (4, 7, 1)]
    b = [(1, 1, 3), (2, 3, 5), (8, 15, 2)]
    pa, ha, pb, hb = packed(a), Histogram(a), packed(b), Histogram(b)
    assert pa == ha and hash(pa) == hash(ha) and pa.count == 8
    assert pa.buckets == ha.buckets and pa.as_list() == ha.as_list()
    assert pb.minus(pa) == hb.minus(ha) and pa.plus(pb) == ha.plus(hb)
    assert packed([(1, 1, 2), (2, 3, 7)]).minus(packed([(1, 1, 2), (2, 3, 5)])).counts == (0, 2)
    agg = Aggregation("lat", "llquantize", {("z",): pb}).delta(
        Aggregation("lat", "llquantize", {("z",): pa}))
    assert agg.rows == Aggregation("lat", "llquantize", {("z",): hb}).delta(
        Aggregation("lat", "llquantize", {("z",): ha})).rows


def test_the_accumulator_reads_packed_and_plain_histograms_alike():
    """Poll by poll the same deltas, totals and layout from packed
    histograms as from plain ones: zones gaining buckets (the layout
    widens), a zone appearing late, one absent for a poll, a poll where one
    zone's histogram is plain (no longer one table: the general path), and
    polls where nothing moved (the steady path)."""
    rng = random.Random(3)
    zones = ("a", "b", "c", "d")
    cumulative = {zone: {} for zone in zones}
    plain, mixed = HistogramAccumulator("p"), HistogramAccumulator("m")
    for n in range(9):
        present = [z for z in zones if not (z == "c" and n < 2) and not (z == "d" and n == 4)]
        for zone in present:
            if n in (6, 7):  # the same buckets as before: more events in them
                picks = list(cumulative[zone]) or [300]
            else:
                picks = rng.sample(range(150, 450), rng.randrange(1, 12))
            for i in picks:
                cumulative[zone][i] = cumulative[zone].get(i, 0) + rng.randrange(1, 1000)
        rows = {z: cumulative[z] for z in present}
        want = plain.update({z: Histogram(sorted((LOWS[i], HIGHS[i], c) for i, c in r.items()))
                             for z, r in rows.items()})
        got = mixed.update({z: Histogram(sorted((LOWS[i], HIGHS[i], c) for i, c in r.items()))
                            if z == "b" and n == 3 else PackedHistogram.of_buckets(TABLE, r)
                            for z, r in rows.items()})
        assert got.zones == want.zones and got.lows == want.lows and got.highs == want.highs
        assert (got.deltas == want.deltas).all() and (got.totals == want.totals).all()
        assert (got.added == want.added).all()


def test_flat_counts_joins_packed_counts_and_refuses_past_int64():
    hists = [packed([(1, 1, 2), (2, 3, 5)]), packed([(4, 7, 9)])]
    assert flat_counts(hists, 3).tolist() == [2, 5, 9]
    assert flat_counts(hists + [Histogram([(1, 1, 4)])], 4).tolist() == [2, 5, 9, 4]
    with pytest.raises(OverflowError):
        flat_counts([packed([(1, 1, 1 << 63)])], 1)


def test_without_the_compiled_decode_the_engine_says_why(monkeypatch):
    import importlib

    from smartos_telemetry.engines.libbpf import binding
    from smartos_telemetry.engines.libbpf.engine import LibbpfEngine

    real = importlib.import_module

    def no_decode(name):
        if name.endswith("_zone_histograms"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name)

    binding._binding.cache_clear()
    monkeypatch.setattr(binding.importlib, "import_module", no_decode)
    try:
        assert "without its histogram decode" in LibbpfEngine.available()
    finally:
        monkeypatch.undo()
        binding._binding.cache_clear()
    assert LibbpfEngine.available() is None
