"""Decode one line of ``bpftrace -f json`` output into a typed event.

Pure: no I/O, no state.  The line formats (bpftrace 0.17, ``src/output.cpp``;
see shared/reference/linux-tracing.md section 2a)::

    {"type": "attached_probes", "data": {"probes": 7}}
    {"type": "map", "data": {"@n": {"1,abc": 4}}}          count/sum/min/max
    {"type": "map", "data": {"@n": 4}}                      key-less
    {"type": "stats", "data": {"@s": {"x": {"count": 2, "average": 15, "total": 30}}}}
    {"type": "hist", "data": {"@h": {"63": [{"min": 32, "max": 63, "count": 9}]}}}
    {"type": "hist", "data": {"@h": [{"max": -1, "count": 1}, {"min": 100, "count": 1}]}}
    {"type": "lost_events", "data": {"events": 51}}
    {"type": "helper_error", "helper": "map_update_elem", "retcode": -7, "line": 1, "col": 54}
    {"type": "printf", "data": "text\\n"}

The JSON does not say which function filled a ``map`` (count, sum, min or
max) nor whether a ``hist`` is ``hist`` or ``lhist``: the caller passes
``functions`` (map name -> bpftrace function, read from the script).

bpftrace 0.17 bug: ``hist()`` puts every value >= 2^31 in one bucket printed
as ``{"min": -2147483648, "max": 0}``.  It is decoded as an explicit overflow
bucket ``[2^31, INT64_MAX]`` and its count is reported in ``overflow``.
Newer bpftrace (>= 0.20) prints true bounds, which decode as they are.
``avg()`` prints a truncated mean only; the engine rewrites ``avg`` to
``stats`` so that it never reaches this decoder.
"""

import dataclasses
import json
import re

from smartos_telemetry.errors import EngineOutputError
from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Aggregation, Average, Histogram

#: bpftrace 0.17's bounds for the bucket of values >= 2^31
BOGUS_HIST_BOUNDS = (-(2**31), 0)
OVERFLOW_BOUNDS = (2**31, INT64_MAX)

#: bpftrace function -> snapshot action
FUNCTION_ACTIONS = {
    "count": "count", "sum": "sum", "min": "min", "max": "max",
    "avg": "avg", "stats": "avg", "hist": "quantize", "lhist": "lquantize",
}
#: output type -> action assumed when the function is not known
DEFAULT_ACTIONS = {"map": "sum", "hist": "quantize", "stats": "avg"}

_INT = re.compile(r"-?[0-9]+\Z")


@dataclasses.dataclass(frozen=True)
class Attached:
    """Probes are being attached (not yet ready: attaching can still fail)."""

    probes: int


@dataclasses.dataclass(frozen=True)
class MapPrint:
    """One or more maps printed in full (cumulative values).

    ``aggregations`` maps the name without ``@`` to an Aggregation;
    ``overflow`` counts events in 0.17's bogus >= 2^31 hist bucket.
    """

    aggregations: dict
    overflow: int = 0


@dataclasses.dataclass(frozen=True)
class LostEvents:
    events: int


@dataclasses.dataclass(frozen=True)
class HelperError:
    """A BPF helper failed in the kernel (printed with ``-k``)."""

    helper: str
    retcode: int
    line: int = None
    column: int = None


@dataclasses.dataclass(frozen=True)
class Printf:
    text: str


@dataclasses.dataclass(frozen=True)
class Other:
    """A line of a type this decoder has no use for (time, join, value, ...)."""

    type: str
    data: object


class _Bad(Exception):
    pass


def decode_line(line, functions=None):
    """The event on one output line, or None for a blank line.

    Raises EngineOutputError naming the line when it is not what bpftrace
    prints.
    """
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise _Bad("not an object with a \"type\"")
        return _decode(obj, functions or {})
    except (ValueError, _Bad, TypeError, KeyError) as exc:
        shown = text.strip()
        if len(shown) > 200:
            shown = shown[:200] + "..."
        raise EngineOutputError(f"cannot decode bpftrace output line {shown!r}: {exc}") from None


def _decode(obj, functions):
    kind = obj["type"]
    data = obj.get("data")
    if kind == "attached_probes":
        return Attached(_int(data["probes"]))
    if kind == "lost_events":
        return LostEvents(_int(data["events"]))
    if kind == "helper_error":
        return HelperError(str(obj["helper"]), _int(obj["retcode"]),
                           _opt_int(obj.get("line")), _opt_int(obj.get("col")))
    if kind == "printf":
        return Printf(data if isinstance(data, str) else json.dumps(data))
    if kind in DEFAULT_ACTIONS:
        if not isinstance(data, dict) or not data:
            raise _Bad("\"data\" is not a non-empty object of maps")
        aggregations, overflow = {}, 0
        for map_name, value in data.items():
            name = map_name[1:] if map_name.startswith("@") else map_name
            action = FUNCTION_ACTIONS.get(functions.get(name), DEFAULT_ACTIONS[kind])
            rows, over = _rows(kind, value)
            aggregations[name] = Aggregation(name, action, rows)
            overflow += over
        return MapPrint(aggregations, overflow)
    return Other(kind, data)


def _rows(kind, value):
    """``({key: value}, overflow)`` for one printed map."""
    if kind == "map":
        if not isinstance(value, dict):
            return {(): _int(value)}, 0
        return {split_key(k): _int(v) for k, v in value.items()}, 0
    if kind == "hist":
        if isinstance(value, list):
            hist, over = _histogram(value)
            return {(): hist}, over
        rows, overflow = {}, 0
        for k, buckets in value.items():
            rows[split_key(k)], over = _histogram(buckets)
            overflow += over
        return rows, overflow
    # stats
    if _is_stats(value):
        return {(): _average(value)}, 0
    if not isinstance(value, dict):
        raise _Bad("avg() prints only a truncated mean; use stats()")
    return {split_key(k): _average(v) for k, v in value.items()}, 0


def split_key(text):
    """``"1,abc"`` -> ``(1, "abc")``; ints become int.

    bpftrace joins multi-part keys with commas and does not escape them, so a
    string key part that contains a comma splits too (keep commas out of keys).
    """
    if isinstance(text, list):  # tolerate a structured key
        return tuple(_key_part(str(p)) for p in text)
    return tuple(_key_part(p) for p in str(text).split(","))


def _key_part(part):
    return int(part) if _INT.match(part) else part


def _is_stats(value):
    return isinstance(value, dict) and "count" in value and "total" in value and not any(
        isinstance(v, dict) for v in value.values())


def _average(value):
    if not _is_stats(value):
        raise _Bad("avg() prints only a truncated mean; use stats()")
    return Average(_int(value["count"]), _int(value["total"]))


def _histogram(buckets):
    if not isinstance(buckets, list):
        raise _Bad("histogram is not a list of buckets")
    triples, overflow = [], 0
    for b in buckets:
        count = _int(b["count"])
        low = _int(b["min"]) if "min" in b else INT64_MIN
        high = _int(b["max"]) if "max" in b else INT64_MAX
        if (low, high) == BOGUS_HIST_BOUNDS:
            low, high = OVERFLOW_BOUNDS
            overflow += count
        if low > high:
            raise _Bad(f"bucket bounds {low}..{high} are reversed")
        triples.append((low, high, count))
    return Histogram.from_counts(triples), overflow


def _int(value):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Bad(f"expected an integer, got {value!r}")
    return int(value)


def _opt_int(value):
    return None if value is None else _int(value)
