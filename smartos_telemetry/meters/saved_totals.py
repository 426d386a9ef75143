"""The running totals one agent saves for the next: the state file.

An engine counts from zero when it starts, so without this an agent
restart made every cumulative meter of every zone start again from zero
under the same resource id.  After each poll, before any of its samples is
handed on, the agent writes what its totals need to go on
(``[smartos] state_file``); the next agent reads it at start:

* engine meters (``SnapshotReducer``): each zone's running totals, keyed by
  the zone's resource id (a cgroup id or zoneid is new after a reboot; the
  resource id is not).  The new engine starts from zero, so a saved total is
  the base its values add to: nothing is counted twice.  What the old
  engine counted after the last save is lost (at most one poll interval).
* SmartOS kstat counters (``KstatCounters``): the totals *and* the last raw
  reading with the kstat's identity (instance, name, crtime).  The kernel
  kept counting while the agent was away: the same kstat adds what it gained
  over the saved reading, so an agent restart loses nothing; a kstat that was
  re-created meanwhile (zone or host reboot) adds its new value in full, and
  what the zone did between the last poll and its shutdown is lost.
* Linux cgroup counters (``CgroupCounters``): the same, with the cgroup id
  as the identity of what was read: the same cgroup adds what it gained,
  a re-created one (new id under the same zone identity) all of its value.

A zone's ``zone_ttl`` goes on from where the last agent left it (the
downtime does not count), so a zone that is back within the ttl keeps its
totals.

The file is JSON with a format name and version, written atomically
(temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash at any moment leaves the old file or the new one.
A file that cannot be read, does not parse or has another version is one
warning, and the agent starts afresh; it never stops the agent.  One agent
keeps a file at a time (an ``flock`` on ``<file>.lock`` for the agent's
life): a second one polls on without saving, with one warning.
"""

import fcntl
import json
import os
import time

from oslo_log import log as logging

from smartos_telemetry.meters.accumulator import COUNTER, HISTOGRAM, Saved

LOG = logging.getLogger(__name__)

FORMAT = "smartos-telemetry running totals"
VERSION = 1
#: the key engine-health totals are saved under (their zone is the host)
HOST_KEY = "(host)"


class StateFileError(Exception):
    """The state file is not one this version can read."""


class SavedTotals:
    """What a previous agent left: ``zones`` -- ``{resource id: {section:
    (Saved, by)}}`` for the engine meters (``by``: which of the zone's keys the
    section's script records it under, ``"id"`` or ``"zonename"``) --,
    ``kstat``, as :meth:`KstatCounters.export` gives it, and ``cgroup``, as
    :meth:`CgroupCounters.export` gives it."""

    def __init__(self, zones=None, kstat=None, cgroup=None):
        self.zones = zones if zones is not None else {}
        self.kstat = kstat if kstat is not None else {}
        self.cgroup = cgroup if cgroup is not None else {}


# -- the file's layout (version 1) --------------------------------------------------
#
#   {"format": FORMAT, "version": 1, "saved_at": <unix time>,
#    "zones": ["<resource id>", ...],
#    "sections": {"<section>": {"kind": "h"|"c", "by": "id"|"zonename",
#                               "totals": [zone index, total, ...],
#                               "unseen": [zone index, seconds, ...]}},
#    "kstat": {"keys": [key, ...],
#              "counters": {"<meter>": {"totals": [key index, total, raw, ...],
#                                       "unseen": [key index, seconds, ...]}},
#              "kstats": [[module, key index, instance, name, crtime, unseen], ...]},
#    "cgroup": {"keys": [key, ...], "counters": {as in "kstat"},
#               "cgroups": [[key index, cgroup id, unseen], ...]}}
#
# Flat lists of numbers, each name written once: a save runs after every poll,
# and this keeps it cheap for thousands of zones (bench/state_file_cost.py).
# "unseen" lists only zones unseen for a second or more (whole seconds); a
# kstat key is a VM UUID or [VM UUID, interface]; a cgroup key is a zone
# identity, [kind, name] or ["instance", UUID].  A file without "cgroup"
# (written before the cgroup counters) reads as no cgroup totals.

def encode(totals, now=None):
    zones, index, sections = [], {}, {}
    for rid, entries in totals.zones.items():
        i = index[rid] = len(zones)
        zones.append(rid)
        for section, (saved, by) in entries.items():
            out = sections.get(section)
            if out is None:
                out = sections[section] = {"kind": saved.kind, "by": by, "totals": [],
                                           "unseen": []}
            out["totals"] += (i, saved.total)
            if saved.unseen >= 1:
                out["unseen"] += (i, int(saved.unseen))
    kstat = totals.kstat
    keys, kindex, counters = _encode_counters(kstat)
    kstats = []
    for (module, key), (ident, unseen) in kstat.get("kstats", {}).items():
        kstats.append([module, _index(keys, kindex, key), *ident, int(unseen)])
    ckeys, cindex, ccounters = _encode_counters(totals.cgroup)
    cgroups = [[_index(ckeys, cindex, key), ident, int(unseen)]
               for key, (ident, unseen) in totals.cgroup.get("cgroups", {}).items()]
    return {"format": FORMAT, "version": VERSION,
            "saved_at": time.time() if now is None else now,
            "zones": zones, "sections": sections,
            "kstat": {"keys": keys, "counters": counters, "kstats": kstats},
            "cgroup": {"keys": ckeys, "counters": ccounters, "cgroups": cgroups}}


def _index(keys, kindex, key):
    i = kindex.get(key)
    if i is None:
        i = kindex[key] = len(keys)
        keys.append(_key_out(key))
    return i


def _encode_counters(section):
    keys, kindex, counters = [], {}, {}
    for name, entries in section.get("counters", {}).items():
        flat, unseen = [], []
        for key, saved in entries.items():
            i = _index(keys, kindex, key)
            flat += (i, saved.total, saved.raw)
            if saved.unseen >= 1:
                unseen += (i, int(saved.unseen))
        counters[name] = {"totals": flat, "unseen": unseen}
    return keys, kindex, counters


def decode(data):
    """:class:`SavedTotals` from the parsed JSON; StateFileError if it is not
    a version-1 state file."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError("not a smartos-telemetry state file")
    if data.get("version") != VERSION:
        raise StateFileError(f"format version {data.get('version')!r}; this agent reads "
                             f"version {VERSION}")
    try:
        rids = [_text(rid) for rid in data["zones"]]
        zones = {}
        for section, body in data["sections"].items():
            kind, by = _kind(body["kind"]), "zonename" if body["by"] == "zonename" else "id"
            unseen = _pairs(body["unseen"])
            for i, total in _pairs(body["totals"]).items():
                seconds = _seconds(unseen.get(i, 0))
                zones.setdefault(_at(rids, i), {})[_text(section)] = (
                    Saved(_count(total), kind, seconds), by)
        kstat = data["kstat"]
        keys, counters = _decode_counters(kstat)
        kstats = {}
        for module, i, instance, name, crtime, unseen in kstat["kstats"]:
            kstats[(_text(module), _at(keys, i))] = ((instance, name, crtime), _seconds(unseen))
        cgroup = data.get("cgroup", {"keys": [], "counters": {}, "cgroups": []})
        ckeys, ccounters = _decode_counters(cgroup)
        cgroups = {}
        for i, ident, unseen in cgroup["cgroups"]:
            cgroups[_at(ckeys, i)] = (_count(ident), _seconds(unseen))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise StateFileError(f"malformed ({type(exc).__name__}: {exc})") from None
    return SavedTotals(zones, {"counters": counters, "kstats": kstats},
                       {"counters": ccounters, "cgroups": cgroups})


def _decode_counters(section):
    keys = [_key_in(key) for key in section["keys"]]
    counters = {}
    for name, body in section["counters"].items():
        unseen = _pairs(body["unseen"])
        counters[_text(name)] = {
            _at(keys, i): Saved(_count(total), COUNTER, _seconds(unseen.get(i, 0)),
                           _count(raw))
            for i, total, raw in _triples(body["totals"])}
    return keys, counters


def _pairs(flat):
    if len(flat) % 2:
        raise ValueError("a list of pairs of odd length")
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _triples(flat):
    if len(flat) % 3:
        raise ValueError("a list of triples whose length is not a multiple of 3")
    return zip(flat[::3], flat[1::3], flat[2::3], strict=True)


def _at(items, i):
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(items):
        raise ValueError(f"{i!r} is not an index of the {len(items)} names")
    return items[i]


def _text(value):
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def _count(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or value != value or value == float("inf"):
        raise ValueError(f"{value!r} is not a count")
    return value


def _seconds(value):
    return float(_count(value))


def _kind(value):
    if value not in (HISTOGRAM, COUNTER):
        raise ValueError(f"unknown kind {value!r}")
    return value


def _key_out(key):
    return list(key) if isinstance(key, tuple) else key


def _key_in(key):
    if isinstance(key, list):
        return tuple(key)
    if isinstance(key, (str, int)) and not isinstance(key, bool):
        return key
    raise ValueError(f"{key!r} is not a zone key")


# -- the file ----------------------------------------------------------------------

class StateFile:
    """One agent's state file: :meth:`load` once at start, :meth:`save`
    after every poll.  Never raises: a problem is one warning (again only
    after the file worked in between), and the agent polls on."""

    def __init__(self, path):
        self.path = path
        self._lock_fd = None
        self._warned = False
        self.usable = bool(path)

    def _warn(self, message, *args):
        if not self._warned:
            self._warned = True
            LOG.warning(message, *args)

    def _take_lock(self):
        """Hold ``<file>.lock`` for this process's life; False if another holds it."""
        if self._lock_fd is not None:
            return True
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.usable = False
            self._warn("smartos-telemetry: cannot use the state file %s (%s); running totals "
                       "will start from zero at the next agent restart (fix: make its "
                       "directory writable by the agent, or set [smartos] state_file)",
                       self.path, exc.strerror or exc)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.usable = False
            self._warn("smartos-telemetry: another agent keeps the state file %s; this one's "
                       "totals are not saved (fix: give each agent its own [smartos] "
                       "state_file)", self.path)
            return False
        self._lock_fd = fd
        return True

    def close(self):
        """Let another agent keep the file (at exit)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self):
        """The previous agent's :class:`SavedTotals` (empty if there are none)."""
        if not self.usable or not self._take_lock():
            return SavedTotals()
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
            totals = decode(data)
        except FileNotFoundError:
            return SavedTotals()
        except (OSError, ValueError, StateFileError) as exc:
            # json's errors are ValueErrors, undecodable bytes too
            self._warn("smartos-telemetry: state file %s unusable (%s); the running totals "
                       "start afresh (the file is replaced at the next poll)", self.path, exc)
            return SavedTotals()
        LOG.info("smartos-telemetry: running totals of %d zones and %d kstat meters read "
                 "from %s", len(totals.zones), len(totals.kstat.get("counters", {})),
                 self.path)
        return totals

    def save(self, totals):
        """Write ``totals`` atomically; False if it could not be written."""
        if not self.usable or not self._take_lock():
            return False
        text = json.dumps(encode(totals), separators=(",", ":"))
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                data = memoryview(text.encode())
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)  # the data is on disk before the name points at it
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)  # the rename itself survives a crash
            finally:
                os.close(dfd)
        except OSError as exc:
            self._warn("smartos-telemetry: cannot write the state file %s (%s); running "
                       "totals would start from zero at the next agent restart",
                       self.path, exc.strerror or exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        self._warned = False
        return True
