"""Reading the programs' maps: zone histograms, zone counters, health slots.

Zone maps are ``BPF_MAP_TYPE_HASH`` keyed by the cgroup-v2 id (u64), read
whole with ``bpf_map_lookup_batch`` into buffers made once per map.  A
histogram value is ``HIST_SLOTS`` u64 counts (``d_scripts/linux/st_common.bpf.h``):
slots 0..591 are the log-linear buckets of
:mod:`smartos_telemetry.engines.bpftrace.loglinear`, slot 592 everything
from 2^40 ns up.  Slots only grow (the programs add, nothing subtracts), so
a row whose total is what it was at the last read is unchanged, and its
Histogram from then is handed out again instead of being rebuilt.
"""

import errno

from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.errors import EngineError
from smartos_telemetry.snapshot import INT64_MAX, Histogram

HIST_SLOTS = 593
OVERFLOW_SLOT = 592
OVERFLOW_LOW = 1 << 40

#: every slot's bounds, the same int objects as loglinear's (so layout
#: comparisons between polls are identity checks)
LOWS = tuple(loglinear.bucket_bounds(i)[0] for i in range(OVERFLOW_SLOT)) + (OVERFLOW_LOW,)
HIGHS = tuple(loglinear.bucket_bounds(i)[1] for i in range(OVERFLOW_SLOT)) + (INT64_MAX,)


def histogram(indexes, counts):
    """A Histogram from non-zero slot indexes (ascending) and their counts."""
    return Histogram._of(tuple(map(LOWS.__getitem__, indexes)),
                         tuple(map(HIGHS.__getitem__, indexes)), tuple(counts))


class ZoneMap:
    """One cgroup id -> value hash of a loaded object."""

    def __init__(self, binding, name, bpf_map):
        self.b = binding
        ffi, lib = binding.ffi, binding.lib
        self.name = name
        self.fd = lib.bpf_map__fd(bpf_map)
        self.capacity = lib.bpf_map__max_entries(bpf_map)
        self.value_size = lib.bpf_map__value_size(bpf_map)
        if lib.bpf_map__key_size(bpf_map) != 8:
            raise EngineError("libbpf", f"map {name}: key is not a u64 cgroup id")
        self.slots = self.value_size // 8
        self._keys = ffi.new("uint64_t[]", self.capacity)
        self._values = ffi.new("uint64_t[]", self.capacity * self.slots)
        self._count = ffi.new("uint32_t *")
        self._batch = ffi.new("uint64_t[2]")  # in and out tokens (a hash map's is a u32)
        self._cache = {}  # cgroup id -> (total count, row key, Histogram, bucket indexes)
        if self.slots > 1:  # st_compact's outputs, made once (zeroing them costs)
            self._nonzero = ffi.new("uint32_t[]", self.capacity)
            self._totals = ffi.new("uint64_t[]", self.capacity)
            self._after = ffi.new("uint64_t[]", self.capacity)
            self._index = ffi.new("uint32_t[]", self.capacity * HIST_SLOTS)
            self._counts = ffi.new("uint64_t[]", self.capacity * HIST_SLOTS)

    def read(self):
        """Entries now in the map: their count (keys and values in the buffers)."""
        ffi, lib = self.b.ffi, self.b.lib
        total, token_in = 0, ffi.NULL
        while total < self.capacity:
            self._count[0] = self.capacity - total
            rc = lib.bpf_map_lookup_batch(
                self.fd, token_in, self._batch + 1, self._keys + total,
                self._values + total * self.slots, self._count, ffi.NULL)
            total += self._count[0]
            if rc < 0:
                if -rc == errno.ENOENT:  # the last batch
                    break
                raise EngineError("libbpf", f"reading map {self.name}: "
                                            f"{errno.errorcode.get(-rc, rc)}")
            self._batch[0] = self._batch[1]
            token_in = self._batch
        return total

    def keys(self):
        """The cgroup ids now in the map."""
        return self.b.ffi.unpack(self._keys, self.read())

    def counters(self):
        """``{(cgroup id,): u64}`` of a counter map."""
        n = self.read()
        return dict(zip([(k,) for k in self.b.ffi.unpack(self._keys, n)],
                        self.b.ffi.unpack(self._values, n), strict=True))

    def histograms(self):
        """``{(cgroup id,): Histogram}`` of a histogram map."""
        ffi, lib = self.b.ffi, self.b.lib
        n = self.read()
        if not n:
            self._cache.clear()
            return {}
        index, count = self._index, self._counts
        lib.st_compact(self._values, n, self.slots, HIST_SLOTS, self._nonzero, self._totals,
                       self._after, index, count)
        out, cache, new_cache, at = {}, self._cache, {}, 0
        for key, width, total in zip(ffi.unpack(self._keys, n), ffi.unpack(self._nonzero, n),
                                     ffi.unpack(self._totals, n), strict=True):
            cached = cache.get(key)
            if cached is None:
                indexes = ffi.unpack(index + at, width)
                cached = (total, (key,), histogram(indexes, ffi.unpack(count + at, width)),
                          indexes)
            elif cached[0] != total:
                indexes = ffi.unpack(index + at, width)
                counts = tuple(ffi.unpack(count + at, width))
                old = cached[2]
                # the usual poll: more events in buckets the zone had already;
                # the old bounds tuples then serve again (and layout
                # comparisons downstream stay identity checks)
                hist = Histogram._of(old.lows, old.highs, counts) if indexes == cached[3] \
                    else histogram(indexes, counts)
                cached = (total, cached[1], hist, indexes)
            at += width
            new_cache[key] = cached
            out[cached[1]] = cached[2]
        self._cache = new_cache
        return out

    def take(self, key):
        """Remove zone ``key``; its last value (a list of u64), or None if absent."""
        ffi, lib = self.b.ffi, self.b.lib
        k = ffi.new("uint64_t *", key)
        v = ffi.new("uint64_t[]", self.slots)
        if lib.bpf_map_lookup_and_delete_elem(self.fd, k, v) < 0:
            return None
        self._cache.pop(key, None)
        return ffi.unpack(v, self.slots)


def percpu_sums(binding, bpf_map):
    """Each slot of a u64 per-CPU array, summed over the CPUs."""
    ffi, lib = binding.ffi, binding.lib
    fd = lib.bpf_map__fd(bpf_map)
    out = []
    key = ffi.new("uint32_t *")
    values = ffi.new("uint64_t[]", binding.ncpus)
    for slot in range(lib.bpf_map__max_entries(bpf_map)):
        key[0] = slot
        out.append(sum(ffi.unpack(values, binding.ncpus))
                   if lib.bpf_map_lookup_elem(fd, key, values) == 0 else 0)
    return out
