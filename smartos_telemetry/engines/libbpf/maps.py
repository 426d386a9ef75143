"""Reading the programs' maps: zone slots, their histograms and counters, health slots.

Each object gives its zones slots (``d_scripts/linux/st_common.bpf.h``):
``st_slot`` (hash, cgroup-v2 id -> slot) and ``st_free`` (the queue of free
slots) in the kernel, and every aggregation an mmap-able array indexed by
slot.  :class:`ZoneSlots` maps those arrays (``st_owner``, ``st_touched`` and
the aggregations) into this process as numpy views: a read needs no system
call, and decodes only the slots ``st_touched`` marks, keeping every other
zone's value from the read before.  Histograms are decoded in C
(``_zone_histograms.c``) into :class:`~smartos_telemetry.snapshot.PackedHistogram`
values.

A histogram value is ``HIST_WORDS`` u64: a bitmap of its non-zero buckets
(``NZ_WORDS`` words), then ``HIST_SLOTS`` counts: slots 0..591 are the
log-linear buckets of :mod:`smartos_telemetry.engines.bpftrace.loglinear`,
slot 592 everything from 2^40 ns up.  Counts and bits only grow (the
programs add, nothing subtracts) while a zone holds its slot, so a zone
whose bitmap is the last read's has the same buckets, and only those
counts are read.

A zone whose cgroup is gone gives its slot back in two steps
(:meth:`ZoneSlots.release`): at once out of ``st_slot`` (so its next event,
if any, takes a new slot) with its values handed to the caller; and a
``HOLD`` later, zeroed, into ``st_free`` -- with whatever late events a
program still holding the slot added in between -- so no program writes a
gone zone's event into the next zone of that slot.
"""

import mmap
import time

import numpy as np

from smartos_telemetry.engines.bpftrace import loglinear
from smartos_telemetry.errors import EngineError
from smartos_telemetry.snapshot import INT64_MAX, BucketTable, Histogram, PackedHistogram

HIST_SLOTS = 593
NZ_WORDS = 10
HIST_WORDS = NZ_WORDS + HIST_SLOTS
OVERFLOW_SLOT = 592
OVERFLOW_LOW = 1 << 40
#: seconds a released slot stays out of use: well past the end of any
#: program run that looked it up before its release (they run under RCU)
HOLD = 1.0

#: every slot's bounds, the same int objects as loglinear's (so layout
#: comparisons between polls are identity checks)
LOWS = tuple(loglinear.bucket_bounds(i)[0] for i in range(OVERFLOW_SLOT)) + (OVERFLOW_LOW,)
HIGHS = tuple(loglinear.bucket_bounds(i)[1] for i in range(OVERFLOW_SLOT)) + (INT64_MAX,)
#: the buckets every histogram of the engine indexes (PackedHistogram.table)
TABLE = BucketTable(LOWS, HIGHS)

#: maps every object has (st_common.bpf.h), sized by max_zones
SLOT_MAPS = ("st_slot", "st_free", "st_owner", "st_touched")


def histogram(indexes, counts):
    """A Histogram from non-zero slot indexes (ascending) and their counts."""
    return Histogram._of(tuple(map(LOWS.__getitem__, indexes)),
                         tuple(map(HIGHS.__getitem__, indexes)), tuple(counts))


def row_value(row):
    """The typed value of one zone's row of u64 (a counter: an int), None if empty."""
    if len(row) == 1:
        return int(row[0]) or None
    counts = row[NZ_WORDS:]
    indexes = np.flatnonzero(counts)
    if not indexes.size:
        return None
    return histogram(indexes.tolist(), counts[indexes].tolist())


def bucket_row(counts):
    """A histogram value (bitmap, then counts) from ``HIST_SLOTS`` counts."""
    row = np.zeros(HIST_WORDS, dtype=np.uint64)
    row[NZ_WORDS:] = counts
    bits = np.zeros(NZ_WORDS * 64, dtype=bool)
    bits[:HIST_SLOTS] = row[NZ_WORDS:] != 0
    row[:NZ_WORDS] = np.packbits(bits, bitorder="little").view(np.uint64)
    return row


class _Mapped:
    """One mmap-able BPF array as a (max_entries, u64 per value) numpy view."""

    def __init__(self, binding, obj, name):
        ffi, lib = binding.ffi, binding.lib
        m = lib.bpf_object__find_map_by_name(obj, name.encode())
        if m == ffi.NULL:
            raise EngineError("libbpf", f"the object has no map {name}")
        self.name = name
        self.fd = lib.bpf_map__fd(m)
        self.entries = lib.bpf_map__max_entries(m)
        value_size = lib.bpf_map__value_size(m)
        if value_size % 8 or lib.bpf_map__key_size(m) != 4:
            raise EngineError("libbpf", f"map {name}: not an array of u64 values")
        self.width = value_size // 8
        length = -(-self.entries * value_size // mmap.PAGESIZE) * mmap.PAGESIZE
        try:
            self._mmap = mmap.mmap(self.fd, length, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise EngineError("libbpf", f"map {name} cannot be mapped (BPF_F_MMAPABLE): "
                                        f"{exc}") from None
        self.view = np.frombuffer(self._mmap, dtype=np.uint64,
                                  count=self.entries * self.width).reshape(
                                      self.entries, self.width)

    def close(self):
        self.view = None
        try:
            self._mmap.close()
        except BufferError:  # a view still exported: the mapping goes with it
            pass


class ZoneSlots:
    """The zones of one loaded object and its aggregations' values, by slot."""

    def __init__(self, binding, obj, names):
        self.b = binding
        ffi, lib = binding.ffi, binding.lib
        self._fds = {}
        for name in ("st_slot", "st_free", "st_gen"):
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m == ffi.NULL:
                raise EngineError("libbpf", f"the object has no map {name}")
            self._fds[name] = lib.bpf_map__fd(m)
        self._owner = _Mapped(binding, obj, "st_owner")
        self._touched = _Mapped(binding, obj, "st_touched")
        self.capacity = self._owner.entries
        self.maps = {name: _Mapped(binding, obj, name) for name in names}
        for mapped in (self._touched, *self.maps.values()):
            if mapped.entries != self.capacity:
                raise EngineError("libbpf", f"map {mapped.name} has {mapped.entries} slots, "
                                            f"st_owner {self.capacity}")
        self.zones = {}      # slot -> cgroup id, of the slots the programs gave out
        # slot -> its rows' key (cgroup id,): one tuple a zone, not one a read
        self._row_keys = {}
        # name -> {row key: int or PackedHistogram}
        self._values = {name: {} for name in names}
        # name -> the bitmaps of every slot at the last read
        self._bits = {name: np.zeros((self.capacity, NZ_WORDS), dtype=np.uint64)
                      for name, mapped in self.maps.items() if mapped.width > 1}
        self._held = []      # (release time, slot, cgroup id, {name: row}, keep late events)
        self._gen = 0
        self._k64 = ffi.new("uint64_t *")
        self._k32 = ffi.new("uint32_t *")
        self._v32 = ffi.new("uint32_t *")
        self._v64 = ffi.new("uint64_t *")

    def fill_free(self):
        """Every slot into st_free (before the programs attach)."""
        for slot in range(self.capacity):
            self._push_free(slot)

    def _push_free(self, slot):
        self._v32[0] = slot
        rc = self.b.lib.bpf_map_update_elem(self._fds["st_free"], self.b.ffi.NULL, self._v32, 0)
        if rc < 0:
            raise EngineError("libbpf", f"st_free: cannot give slot {slot} back ({-rc})")

    def close(self):
        for mapped in (self._owner, self._touched, *self.maps.values()):
            mapped.close()
        self.maps = {}

    # -- reading ---------------------------------------------------------------------

    def read(self):
        """``{name: {(cgroup id,): value}}`` of every zone with events; only
        the slots touched since the last read are decoded."""
        touched_view = self._touched.view[:, 0]
        touched = np.flatnonzero(touched_view)
        if touched.size:
            # cleared before the values are read: an event after this marks
            # the slot again, so the next read sees it
            touched_view[touched] = 0
            held = {h[1] for h in self._held}
            slots = [s for s in touched.tolist() if s not in held]
            owner = self._owner.view[:, 0]
            for s in slots:
                if s not in self.zones:
                    self.zones[s] = int(owner[s])
                    self._row_keys[s] = (self.zones[s],)
            if slots:
                self._decode(np.asarray(slots, dtype=np.intp))
        return {name: dict(values) for name, values in self._values.items()}

    def _decode(self, slots):
        slot_list = slots.tolist()
        keys = list(map(self._row_keys.__getitem__, slot_list))
        for name, mapped in self.maps.items():
            values = self._values[name]
            if mapped.width == 1:
                counts = mapped.view[slots, 0]
                filled = np.flatnonzero(counts)
                values.update(zip(map(keys.__getitem__, filled.tolist()),
                                  counts[filled].tolist(), strict=True))
                continue
            # in C (_zone_histograms.c): the objects of a whole map's zones at once
            self.b.histograms.decode(mapped.view, slot_list, keys, self._bits[name], values,
                                     TABLE, PackedHistogram)

    def kernel_keys(self, name):
        """Cgroup ids st_slot holds now whose ``name`` value is not zero."""
        view = self.maps[name].view
        return {cg for cg, slot in self._kernel_slots().items() if view[slot].any()}

    def _kernel_slots(self):
        ffi, lib = self.b.ffi, self.b.lib
        fd, out = self._fds["st_slot"], {}
        key, nxt = self._k64, ffi.new("uint64_t *")
        prev = ffi.NULL
        while lib.bpf_map_get_next_key(fd, prev, nxt) == 0:
            key[0] = nxt[0]
            if lib.bpf_map_lookup_elem(fd, key, self._v32) == 0:
                out[int(key[0])] = int(self._v32[0])
            prev = key
        return out

    # -- giving slots back -------------------------------------------------------------

    def slot_of(self, cg):
        for s, owner in self.zones.items():
            if owner == cg:
                return s
        return None

    def release(self, slot, keep_late=True):
        """Take ``slot``'s zone out of st_slot; its last values ``{name: value}``
        (empty ones left out).  The slot goes back to st_free ``HOLD``
        seconds later (:meth:`return_held`); events written into it until
        then are handed out by that call if ``keep_late``."""
        cg = self.zones.pop(slot)
        key = self._row_keys.pop(slot)
        self._k64[0] = cg
        self.b.lib.bpf_map_delete_elem(self._fds["st_slot"], self._k64)
        self._raise_generation()
        rows = {name: mapped.view[slot].copy() for name, mapped in self.maps.items()}
        last = {}
        for name, row in rows.items():
            self._values[name].pop(key, None)
            if name in self._bits:
                self._bits[name][slot] = 0
            value = row_value(row)
            if value is not None:
                last[name] = value
        self._held.append((time.monotonic() + HOLD, slot, cg, rows, keep_late))
        return last

    def forget_late(self, cg):
        """Late events of a released ``cg`` are not wanted (forgotten zone)."""
        self._held = [h if h[2] != cg else h[:4] + (False,) for h in self._held]

    def return_held(self, now=None):
        """Zero and free the slots released ``HOLD`` ago; ``[(cgroup id,
        {name: value})]`` of the late events found in them."""
        now = time.monotonic() if now is None else now
        late, keep = [], []
        for held in self._held:
            at, slot, cg, rows, keep_late = held
            if at > now:
                keep.append(held)
                continue
            extra = {}
            for name, mapped in self.maps.items():
                row = mapped.view[slot]
                if keep_late:
                    value = row_value(row - rows[name])
                    if value is not None:
                        extra[name] = value
                row[:] = 0
            self._owner.view[slot, 0] = 0
            self._touched.view[slot, 0] = 0
            self._push_free(slot)
            if extra:
                late.append((cg, extra))
        self._held = keep
        return late

    def _raise_generation(self):
        self._gen += 1
        self._k32[0] = 0
        self._v64[0] = self._gen
        self.b.lib.bpf_map_update_elem(self._fds["st_gen"], self._k32, self._v64, 0)

    # -- for tests and benchmarks -------------------------------------------------------

    def inject(self, cg, rows):
        """What a program's events do, from user space: zone ``cg`` gets a slot
        (if it has none) and ``rows`` (``{name: sequence of u64}``) as its
        values (a histogram's as its ``HIST_SLOTS`` counts).  For tests and
        benchmarks that need many zones."""
        ffi, lib = self.b.ffi, self.b.lib
        self._k64[0] = cg
        if lib.bpf_map_lookup_elem(self._fds["st_slot"], self._k64, self._v32) == 0:
            slot = int(self._v32[0])
        else:
            if lib.bpf_map_lookup_and_delete_elem(self._fds["st_free"], ffi.NULL,
                                                  self._v32) < 0:
                raise EngineError("libbpf", "no free slot")
            slot = int(self._v32[0])
            self._owner.view[slot, 0] = cg
            if lib.bpf_map_update_elem(self._fds["st_slot"], self._k64, self._v32, 1) < 0:
                raise EngineError("libbpf", f"cannot publish zone {cg}")
        for name, row in rows.items():
            mapped = self.maps[name]
            mapped.view[slot] = bucket_row(row) if mapped.width == HIST_WORDS else row
        self._touched.view[slot, 0] = 1
        return slot


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
