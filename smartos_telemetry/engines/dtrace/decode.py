"""Decode libdtrace aggregation records into typed snapshot values.

One :class:`AggDecoder` per consumer.  For each ``dtrace_aggdata_t`` the walk
hands us, :meth:`AggDecoder.decode` returns ``(name, action, key, value)``.

Where the records live differs by ABI family (``build_binding.py``; the
binding classes of ``binding.py`` hold each family's reading):

* illumos: ``dtagd_rec[0]`` is the variable id, ``dtagd_rec[1..n-2]`` the
  keys and ``dtagd_rec[n-1]`` the value, all at offsets into ``dtada_data``;
  l/llquantize values start with their encoded parameter word; the
  normalization factor is ``dtada_normal``.
* Oracle: ``dtagd_krecs[0]`` is the aggregation id and ``dtagd_krecs[1..]``
  the keys, at offsets into ``dtada_key``; ``dtagd_drecs[1]`` is the value in
  ``dtada_data`` (``drecs[0]`` is a generation counter); l/llquantize
  parameters are in ``dtagd_sig``; normalization is ``dtagd_normal``.

Key records are dispatched on their action first (DIFEXPR, sym, mod, usym,
umod, uaddr, stack), then on size: 1, 2, 4 and 8 bytes are signed integers
(as libdtrace prints them); anything else is a NUL-terminated string bounded
by the record size.  Values keep exact Python ints.
"""

import sys

from smartos_telemetry.engines.dtrace import buckets
from smartos_telemetry.errors import EngineOutputError
from smartos_telemetry.snapshot import Average, Histogram, StdDev

INT_SIZES = (1, 2, 4, 8)
BYTEORDER = sys.byteorder


def c_div(a, b):
    """Integer division truncating toward zero, as C (and libdtrace) does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class AggLayout:
    """What one aggregation's records mean, worked out once per variable."""

    __slots__ = ("name", "action", "keys", "value_offset", "value_size", "bounds",
                 "normal")

    def __init__(self, name, action, keys, value_offset, value_size, bounds, normal):
        self.name = name
        self.action = action
        self.keys = keys  # [(kind, offset, size)]
        self.value_offset = value_offset
        self.value_size = value_size
        self.bounds = bounds  # histogram (low, high) list, or None
        self.normal = normal


class AggDecoder:
    """Turns aggdata pointers into typed rows for one handle."""

    def __init__(self, binding, handle):
        self.binding = binding
        self.ffi = binding.ffi
        self.lib = binding.lib
        self.handle = handle
        self._layouts = {}
        self._symbols = {}
        self._kinds = {self.lib.DTRACEACT_DIFEXPR: "expr",
                       self.lib.DTRACEACT_STACK: "stack",
                       self.lib.DTRACEACT_USTACK: "ustack",
                       **binding.symbol_actions}

    # -- layout -------------------------------------------------------------
    def _key_spec(self, rec):
        kind = self._kinds.get(rec.dtrd_action)
        if kind is None:
            raise EngineOutputError(
                f"aggregation key of action {rec.dtrd_action:#x} is not supported")
        return (kind, rec.dtrd_offset, rec.dtrd_size)

    def layout(self, aggdata):
        desc = aggdata.dtada_desc
        addr = int(self.ffi.cast("uintptr_t", desc))
        found = self._layouts.get(addr)
        if found is not None:
            return found
        name = self.ffi.string(desc.dtagd_name).decode("utf-8", "replace")
        krecs, vrec, param_word, header, normal = self.binding.agg_records(desc)
        action = self.binding.agg_actions.get(vrec.dtrd_action)
        if action is None:
            raise EngineOutputError(
                f"aggregation @{name}: unknown aggregating action {vrec.dtrd_action:#x}")
        value_offset, value_size = vrec.dtrd_offset, vrec.dtrd_size
        bounds = None
        if action == "quantize":
            bounds = buckets.quantize_bounds()
        elif action in ("lquantize", "llquantize"):
            if param_word is None:  # illumos: the value's first word
                param_word = self._read_uint(aggdata.dtada_data + value_offset, 8)
            value_offset += header
            value_size -= header
            bounds = (self.binding.lquantize_bounds(param_word) if action == "lquantize"
                      else self.binding.llquantize_bounds(param_word))
        if bounds is not None and len(bounds) * 8 != value_size:
            raise EngineOutputError(
                f"aggregation @{name} ({action}): {value_size // 8} buckets recorded but "
                f"the parameters describe {len(bounds)}; unsupported libdtrace encoding")
        keys = [self._key_spec(r) for r in krecs]
        found = AggLayout(name, action, keys, value_offset, value_size, bounds, normal)
        self._layouts[addr] = found
        return found

    # -- raw reads ----------------------------------------------------------
    def _read_uint(self, ptr, size):
        return int.from_bytes(self.ffi.buffer(ptr, size), BYTEORDER, signed=False)

    def _read_int(self, ptr, size):
        return int.from_bytes(self.ffi.buffer(ptr, size), BYTEORDER, signed=True)

    def _read_words(self, ptr, count):
        return self.ffi.unpack(self.ffi.cast("int64_t *", ptr), count)

    def _addr2str(self, addr):
        text = self._symbols.get(addr)
        if text is None:
            buf = self.ffi.new("char[]", 256)
            self.lib.dtrace_addr2str(self.handle, addr, buf, 256)
            text = self.ffi.string(buf).decode("utf-8", "replace")
            self._symbols[addr] = text
        return text

    def _uaddr2str(self, pid, addr):
        buf = self.ffi.new("char[]", 256)
        self.lib.dtrace_uaddr2str(self.handle, pid, addr, buf, 256)
        return self.ffi.string(buf).decode("utf-8", "replace")

    # -- keys ---------------------------------------------------------------
    def _key(self, base, spec):
        kind, offset, size = spec
        ptr = base + offset
        if kind == "expr":
            if size in INT_SIZES:
                return self._read_int(ptr, size)
            raw = bytes(self.ffi.buffer(ptr, size))
            return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        if kind in ("sym", "mod"):
            text = self._addr2str(self._read_uint(ptr, 8))
            if kind == "mod":
                return text.split("`", 1)[0]
            return text.split("+", 1)[0]
        if kind in ("usym", "umod", "uaddr"):
            pid = self._read_uint(ptr, 8)
            addr = self._read_uint(ptr + 8, 8)
            text = self._uaddr2str(pid, addr)
            if kind == "umod":
                return text.split("`", 1)[0]
            if kind == "usym":
                return text.split("+", 1)[0]
            return text
        if kind == "stack":
            frames = [f for f in self.ffi.unpack(self.ffi.cast("uint64_t *", ptr), size // 8)
                      if f]
            return "\n".join(self._addr2str(f) for f in frames)
        raise EngineOutputError(f"{kind}() aggregation keys are not supported")

    # -- values -------------------------------------------------------------
    def _value(self, layout, data, normal):
        action = layout.action
        ptr = data + layout.value_offset
        if action in ("count", "sum", "min", "max"):
            value = self._read_int(ptr, 8)
            return c_div(value, normal) if normal != 1 else value
        if action == "avg":
            count, total = self._read_words(ptr, 2)
            return Average(count, c_div(total, normal) if normal != 1 else total)
        if action == "stddev":
            count, total = self._read_words(ptr, 2)
            low = self._read_uint(ptr + 16, 8)
            high = self._read_uint(ptr + 24, 8)
            sumsq = (high << 64) | low
            if normal != 1:
                total = c_div(total, normal)
                sumsq //= normal * normal
            return StdDev(count, total, sumsq)
        counts = self._read_words(ptr, len(layout.bounds))
        if normal != 1:
            counts = [c_div(c, normal) for c in counts]
        return Histogram.from_counts(
            (lo, hi, c) for (lo, hi), c in zip(layout.bounds, counts, strict=True) if c)

    def decode(self, aggdata):
        """``(name, action, key tuple, value)`` for one aggregation row."""
        layout = self.layout(aggdata)
        key_base, normal = self.binding.row_keys_and_normal(aggdata, layout)
        key = tuple(self._key(key_base, spec) for spec in layout.keys)
        return layout.name, layout.action, key, self._value(layout, aggdata.dtada_data, normal)
