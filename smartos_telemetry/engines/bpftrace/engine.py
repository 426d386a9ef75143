"""BpftraceEngine: a bpftrace script as an Engine (start, snapshot, health, stop).

bpftrace runs as a long-lived child (``bpftrace -k -f json /dev/fd/N``, see
:mod:`.process`).  Its maps are never cleared, so they are cumulative.  A
print round is asked for with SIGUSR1 -- bpftrace prints every map, in name
order, without clearing -- and ends with the sentinel map (see
:mod:`.program`).  SIGUSR1 is driven from user space because timer probes
(``interval``) can stall on some virtual machines.

**Reads in the background.**  Every ``print_interval`` seconds the engine
asks for a round and keeps the printed lines (decoded only when a snapshot
or a death needs them, so a background read costs bpftrace's printing and
a pipe read, not Python decoding).  A child that dies is restarted with
exponential backoff; its last read values are carried into every later
snapshot, so values stay cumulative for the engine's life and a death loses
only the events between the last read and the death: at most
``print_interval`` plus one print round.  A child that exits on SIGINT or
SIGTERM prints its maps first and loses nothing.  A child that worked (it
got ready and answered a round) restarts after ``backoff_initial`` again.

**Hangs.**  A round not printed within ``snapshot_timeout`` of its SIGUSR1
(a stopped or wedged child) marks the child hung: it is killed and replaced
like a dead one (counted in ``restarts``), and a snapshot waiting on it
returns the last read values instead of failing.

**Ends.**  A script that calls ``exit()`` and exits 0 has ended: it is not
restarted, and snapshots keep returning its final maps.

**Pruning.**  :meth:`forget` deletes the rows of given first keys (cgroup
ids of zones that are gone) from the child's maps (:mod:`.maps`) and from
the carried values, so maps, reads and memory follow live zones.

Health counters: ``drops["lost_events"]`` (perf buffer overruns),
``drops["map_full"]`` (map updates refused with E2BIG: the map hit
``BPFTRACE_MAP_KEYS_MAX``, silent without ``-k``; logged once per episode),
``errors["helper"]`` (other failed helpers), ``errors["output"]`` (lines
that did not decode) and ``errors["hist_overflow"]`` (events in bpftrace
0.17's single >= 2^31 hist bucket, reported as one overflow bucket).

Options (``-x NAME=VALUE`` on run-script):

=================  =====================================================
zones, buckets     map keys to allow: zones x buckets per zone (64 x 512)
map_keys_max       BPFTRACE_MAP_KEYS_MAX itself, overriding the product
perf_rb_pages      BPFTRACE_PERF_RB_PAGES (output ring pages per CPU)
ready_timeout      seconds to wait for attach (60); a replacement child not
                   ready by then is replaced again
snapshot_timeout   seconds a print round may take before the child is
                   taken as hung and replaced (10)
stop_timeout       seconds between SIGINT and SIGKILL (5)
print_interval     seconds between background reads (2; 0: off)
backoff_initial,   restart delays: initial, doubling up to max (0.25, 60)
backoff_max
max_restarts       give up after this many restarts (-1: never)
bpftrace           the executable (found on PATH)
=================  =====================================================
"""

import collections
import os
import re
import signal
import threading
import time

from oslo_log import log as logging

from smartos_telemetry.engines.base import Engine
from smartos_telemetry.engines.bpftrace import json_output, loglinear, maps, process
from smartos_telemetry.engines.bpftrace.program import READY_MARKER, prepare
from smartos_telemetry.errors import (
    ConfigError,
    EngineDied,
    EngineError,
    EngineOutputError,
    EngineUnavailable,
    ProbeNotFound,
    ScriptCompileError,
)
from smartos_telemetry.snapshot import (
    Aggregation,
    EngineHealth,
    Snapshot,
    merge_values,
    without_first_keys,
)

LOG = logging.getLogger(__name__)

OPTIONS = {
    "zones": (int, 64),
    "buckets": (int, 512),
    "map_keys_max": (int, None),
    "perf_rb_pages": (int, None),
    "ready_timeout": (float, 60.0),
    "snapshot_timeout": (float, 10.0),
    "stop_timeout": (float, 5.0),
    "print_interval": (float, 2.0),
    "backoff_initial": (float, 0.25),
    "backoff_max": (float, 60.0),
    "max_restarts": (int, -1),
    "bpftrace": (str, "bpftrace"),
}

E2BIG, ENOENT = 7, 2

# "FILE:LINE[-LINE][:COL[-COL]]: ERROR: message"
_LOCATED = re.compile(r"^(?P<file>.*?):(?P<line>\d+)(?:-\d+)?(?::(?P<col>\d+)(?:-\d+)?)?: "
                      r"(?:ERROR|FATAL): (?P<msg>.*)$")
_UNLOCATED = re.compile(r"^(?:ERROR|FATAL): (?P<msg>.*)$")
_PROBE_MISSING = re.compile(
    r"tracepoint not found|not available for your kernel|Error attaching probe|"
    r"No probes to attach|Invalid probe type|Could not resolve symbol|probe_events|"
    r"not traceable|Unknown probe type|does not exist", re.IGNORECASE)
_NAMED_PROBE = re.compile(r"'([a-z]+:[^']+)'|tracepoint not found: (\S+)")
_HARMLESS = re.compile(r"RLIMIT_MEMLOCK")
# a printed map's line, as src/output.cpp (0.17) writes it: its name is all
# a background read needs (decoding waits until a snapshot wants it)
_MAP_LINE = re.compile(rb'^\{"type": "(?:map|hist|stats)", "data": \{"@(\w*)": ')


def parse_options(options):
    """Typed engine options from a dict of values or ``-x`` strings."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"unknown bpftrace engine option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(OPTIONS))}")
    parsed = {}
    for name, (kind, default) in OPTIONS.items():
        value = options.get(name, default)
        try:
            parsed[name] = value if value is None else kind(value)
        except ValueError:
            raise ConfigError(f"bpftrace option {name}={value!r}: expected {kind.__name__}") \
                from None
    return parsed


def merge_aggregations(base, current):
    """A dead child's last cumulative rows and the live child's, added up."""
    out = dict(base)
    for name, agg in current.items():
        old = out.get(name)
        if old is None:
            out[name] = agg
            continue
        rows = dict(old.rows)
        for key, value in agg.rows.items():
            rows[key] = merge_values(agg.action, rows[key], value) if key in rows else value
        out[name] = Aggregation(name, agg.action, rows)
    return out


class BpftraceEngine(Engine):
    name = "bpftrace"
    options_known = frozenset(OPTIONS)

    def __init__(self, source, script_name=None, options=None):
        super().__init__(source, script_name, options)
        self.opts = parse_options(self.options)
        self.program = prepare(source)
        kernel_names = collections.Counter(
            maps.bpftrace_map_name(n) for n in self.program.maps)
        # maps whose kernel name (cut to 15 characters) is theirs alone
        self._prunable = sorted(n for n in self.program.functions
                                if kernel_names[maps.bpftrace_map_name(n)] == 1)
        self._cond = threading.Condition()
        self._supervisor = None
        self._script_fd = None
        self._script_path = None
        self._ready = threading.Event()
        self._failure = None         # exception of a child that never got ready
        self._gave_up = None         # reason the engine stopped restarting
        self._finished = False       # the script ended itself (exit())
        self._stopped = False
        self._child_ready = False
        self._generation = 0         # children started
        self._rounds = 0             # print rounds completed (sentinel lines)
        self._pending = None         # round number a SIGUSR1 in flight will complete
        self._pending_since = None   # when that SIGUSR1 was sent
        self._want_another = False
        self._pruning = False        # deleting map keys: no SIGUSR1 meanwhile
        self._killing = False        # the engine killed the child (hung)
        self._raw = {}               # name -> the latest printed line, not decoded yet
        self._current = {}           # name -> Aggregation, the live child's
        self._carried = {}           # name -> Aggregation, dead children's
        self._overflow = {}          # name -> count in the bogus >= 2^31 bucket
        self._carried_overflow = 0
        self._drops = {}
        self._errors = {}
        self._restarts = 0
        self._hangs = 0
        self._map_full_episode = None  # drops when the episode began, or None
        self._map_full_since_round = 0
        self._prune_failed = False
        self.last_read = None        # monotonic time of the last completed round
        self._last_asked = None      # monotonic time of the last SIGUSR1
        self._spawned_at = None      # monotonic time the current child started
        self.started_at = None
        self.ready_after = None      # seconds from start() to ready

    # -- availability --------------------------------------------------------

    @classmethod
    def available(cls):
        binary = process.find_bpftrace()
        if not binary:
            return "bpftrace not found on PATH (apt-get install bpftrace)"
        if os.geteuid() != 0:
            return "bpftrace needs root (or CAP_BPF and CAP_PERFMON)"
        return None

    @classmethod
    def version(cls):
        binary = process.find_bpftrace()
        if not binary:
            raise EngineUnavailable("bpftrace", "bpftrace not found on PATH",
                                    fix="apt-get install bpftrace")
        return process.bpftrace_version(binary)[0]

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        if self._supervisor is not None:
            raise EngineError(self.name, "already started")
        binary = process.find_bpftrace(self.opts["bpftrace"])
        if not binary:
            raise EngineUnavailable(self.name, f"{self.opts['bpftrace']} not found",
                                    fix="apt-get install bpftrace")
        text, version = process.bpftrace_version(binary)
        LOG.info("bpftrace engine: %s (%s), script %s", binary, text, self.script_name)
        env = dict(os.environ)
        o = self.opts
        env["BPFTRACE_MAP_KEYS_MAX"] = str(o["map_keys_max"] or o["zones"] * o["buckets"])
        if o["perf_rb_pages"]:
            env["BPFTRACE_PERF_RB_PAGES"] = str(o["perf_rb_pages"])
        self._script_fd = process.memfd_with("bpftrace-script", self.program.text)
        self._script_path = f"/dev/fd/{self._script_fd}"
        try:
            argv = process.command(binary, ["-k", "-f", "json", self._script_path])
        except EngineUnavailable:
            os.close(self._script_fd)
            self._script_fd = None
            raise
        # the tick drives background reads and the hang watchdog; finer than
        # either, so that neither waits up to a whole extra tick
        tick = max(0.05, min(o["print_interval"] or 1.0, o["snapshot_timeout"]) / 4)
        self._supervisor = process.Supervisor(
            argv, env, on_line=self._on_line, on_exit=self._on_exit, on_spawn=self._on_spawn,
            on_tick=self._on_tick, tick_interval=tick,
            backoff_initial=o["backoff_initial"], backoff_max=o["backoff_max"],
            stop_timeout=o["stop_timeout"], pass_fds=(self._script_fd,))
        self.started_at = time.monotonic()
        self._supervisor.start()
        if not self._wait_ready(o["ready_timeout"]):
            failure = self._failure
            self.stop()
            if failure is not None:
                raise failure
            raise EngineDied(self.name, f"not attached after {o['ready_timeout']:g} s")
        self.ready_after = time.monotonic() - self.started_at
        LOG.info("bpftrace engine: %s ready after %.2f s (pid %s)", self.script_name,
                 self.ready_after, self.pid)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._failure is not None or time.monotonic() > deadline:
                return False
        return True

    @property
    def pid(self):
        """The running bpftrace's pid, or None."""
        return self._supervisor.pid if self._supervisor else None

    @property
    def tracing(self):
        """True while a bpftrace child is attached (False while it restarts)."""
        return self._child_ready and self.is_alive()

    @property
    def finished(self):
        """True once the script has ended itself (it called exit())."""
        return self._finished

    def is_alive(self):
        return (self._supervisor is not None and not self._stopped and not self._finished
                and self._gave_up is None and self._ready.is_set())

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.stop()
        with self._cond:
            self._cond.notify_all()
        if self._script_fd is not None:
            os.close(self._script_fd)
            self._script_fd = None

    # -- snapshots ---------------------------------------------------------------

    def snapshot(self):
        if self._supervisor is None:
            raise EngineError(self.name, "snapshot() before start()")
        timeout = self.opts["snapshot_timeout"]
        with self._cond:
            if self._stopped or self._gave_up:
                raise EngineDied(self.name, self._gave_up or "stopped")
            if self._child_ready:
                generation = self._generation
                asked = time.monotonic()
                target = self._request_round()
                while (self._rounds < target and self._generation == generation
                       and self._child_ready and not self._stopped):
                    since = self._pending_since if self._pending is not None else asked
                    remaining = since + timeout - time.monotonic()
                    if remaining <= 0:
                        # the last read values stand in; the child is replaced
                        self._kill_hung(time.monotonic() - since)
                        break
                    self._cond.wait(remaining)
            self._decode_pending()
            aggregations = merge_aggregations(self._carried, self._current)
        return Snapshot(self.name, aggregations, health=self.health())

    def _request_round(self):
        """Ask for a print round; the round number that answers it.  Under _cond."""
        if self._pending is not None or self._pruning:
            # a round is being printed (it may have started before this
            # request), or keys are being deleted: ask once that is done
            self._want_another = True
            return (self._pending if self._pending is not None else self._rounds) + 1
        if not self._supervisor.signal(signal.SIGUSR1):
            return self._rounds
        self._pending = self._rounds + 1
        self._pending_since = self._last_asked = time.monotonic()
        return self._pending

    def _kill_hung(self, waited, what="printed no maps %.1f s after SIGUSR1"):
        """Kill a child that did not answer in time.  Under _cond."""
        if self._killing:
            return
        self._killing = True
        self._hangs += 1
        LOG.warning("bpftrace for %s (pid %s) " + what + ": hung; killing it (it is "
                    "restarted with the last read values carried over)",
                    self.script_name, self.pid, waited)
        self._supervisor.signal(signal.SIGKILL)

    def _decode_pending(self):
        """Decode the lines read since the last decode.  Under _cond."""
        for name, line in self._raw.items():
            try:
                event = json_output.decode_line(line, self.program.functions)
                agg = event.aggregations[name]
                if name in self.program.loglinear:
                    agg = Aggregation(name, loglinear.ACTION,
                                      loglinear.histograms(agg.rows, name))
            except (EngineOutputError, AttributeError, KeyError) as exc:
                LOG.warning("%s", exc)
                self._errors["output"] = self._errors.get("output", 0) + 1
                continue
            self._current[name] = agg
            self._overflow[name] = event.overflow
        self._raw = {}

    def health(self):
        with self._cond:
            errors = dict(self._errors)
            overflow = self._carried_overflow + sum(self._overflow.values())
            if overflow:
                errors["hist_overflow"] = overflow
            return EngineHealth(drops=dict(self._drops), errors=errors,
                                restarts=self._restarts)

    # -- pruning -------------------------------------------------------------------

    def forget(self, first_keys):
        """Delete every row whose first key is in ``first_keys`` (cgroup ids of
        zones that are gone, whose last values have been read) from the
        child's maps and from the values carried over.

        All or nothing: the number of map keys deleted, or None when the
        rows could not be deleted (the child is printing a round that does
        not end, or the maps cannot be opened) and stay as they were.
        Events that reach a forgotten key after its last read are not kept
        (for a cgroup that is gone: segments of sockets that outlived it).
        """
        ids = frozenset(k for k in first_keys if isinstance(k, int))
        if self._supervisor is None or self._stopped:
            return None
        if not ids:
            return 0
        with self._cond:
            # bpftrace's printing walks the keys with get-next-key: never
            # delete under it
            due = time.monotonic() + self.opts["snapshot_timeout"]
            # (a child being killed is not waited for: its maps go with it)
            while (self._pending is not None and self._child_ready and not self._killing
                   and not self._stopped):
                remaining = due - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            pid = self.pid if self._child_ready and not self._killing else None
            self._pruning = pid is not None
        deleted = 0
        try:
            if pid is not None:
                # a child that is not ready (restarting) has no rows yet
                deleted, _ = maps.delete_rows(pid, self._prunable, ids)
            self._prune_failed = False
        except (OSError, EngineError) as exc:
            if not self._prune_failed:
                LOG.warning("bpftrace for %s: cannot delete the rows of %d gone cgroups from "
                            "its maps (%s); they stay until the child restarts",
                            self.script_name, len(ids), exc)
            self._prune_failed = True
            deleted = None
        finally:
            with self._cond:
                self._pruning = False
                if deleted is not None:
                    self._decode_pending()
                    self._current = without_first_keys(self._current, ids)
                    self._carried = without_first_keys(self._carried, ids)
                if self._want_another and self._pending is None and self._child_ready:
                    self._want_another = False
                    self._request_round()
                self._cond.notify_all()
        return deleted

    # -- supervisor callbacks (supervisor thread) --------------------------------

    def _on_spawn(self, proc):
        with self._cond:
            self._generation += 1
            self._child_ready = False
            self._pending = None
            self._want_another = False
            self._killing = False
            self._spawned_at = time.monotonic()
        LOG.debug("bpftrace started, pid %s", proc.pid)

    def _on_tick(self):
        with self._cond:
            if self._stopped:
                return
            now = time.monotonic()
            if not self._child_ready:
                # a replacement stuck before it is ready (stopped, wedged in
                # attach) is replaced again; start() waits for the first one
                started = self._spawned_at
                if (self._ready.is_set() and started is not None
                        and now - started > self.opts["ready_timeout"]):
                    self._kill_hung(now - started, "not ready %.1f s after it started")
                return
            if self._pending is not None:
                waited = now - self._pending_since
                if waited > self.opts["snapshot_timeout"]:
                    self._kill_hung(waited)
                return
            interval = self.opts["print_interval"]
            if interval > 0 and (self._last_asked is None or now - self._last_asked >= interval):
                self._request_round()

    def _on_line(self, line):
        m = _MAP_LINE.match(line)
        if m:
            name = m.group(1).decode("ascii")
            with self._cond:
                if name == self.program.sentinel:
                    self._round_done()
                elif name in self.program.functions:
                    self._raw[name] = line  # plain maps (timestamps, ids) are skipped
            return
        try:
            event = json_output.decode_line(line, self.program.functions)
        except EngineOutputError as exc:
            LOG.warning("%s", exc)
            self._count(self._errors, "output")
            return
        if isinstance(event, json_output.Printf) and event.text.strip() == READY_MARKER:
            with self._cond:
                self._child_ready = True
                generation, restarts = self._generation, self._restarts
            self._ready.set()
            if generation > 1:
                LOG.info("bpftrace for %s ready again after restart %d (pid %s)",
                         self.script_name, restarts, self.pid)
        elif isinstance(event, json_output.LostEvents):
            self._count(self._drops, "lost_events", event.events)
        elif isinstance(event, json_output.HelperError):
            self._on_helper_error(event)

    def _round_done(self):
        """Under _cond."""
        self._rounds += 1
        self._pending = None
        self.last_read = time.monotonic()
        if self._child_ready:
            self._supervisor.healthy = True
        if self._map_full_episode is not None and not self._map_full_since_round:
            LOG.info("bpftrace for %s: maps take new keys again; %d updates were dropped "
                     "while they were full", self.script_name,
                     self._drops.get("map_full", 0) - self._map_full_episode)
            self._map_full_episode = None
        self._map_full_since_round = 0
        if self._want_another and not self._pruning:
            self._want_another = False
            self._request_round()
        self._cond.notify_all()

    def _on_helper_error(self, event):
        if event.helper == "map_delete_elem" and event.retcode == -ENOENT:
            return  # deleting a key that is not there: harmless
        if event.helper == "map_update_elem" and event.retcode == -E2BIG:
            with self._cond:
                self._drops["map_full"] = self._drops.get("map_full", 0) + 1
                self._map_full_since_round += 1
                if self._map_full_episode is not None:
                    return
                self._map_full_episode = self._drops["map_full"] - 1
            keys = self.opts["map_keys_max"] or self.opts["zones"] * self.opts["buckets"]
            LOG.warning("bpftrace for %s: a map is full (%d keys, at line %s): new keys are "
                        "dropped and counted in drops[map_full] until rows are freed; raise "
                        "the engine option zones or map_keys_max", self.script_name, keys,
                        event.line)
            return
        LOG.debug("bpftrace helper %s failed (%d) at %s:%s:%s", event.helper, event.retcode,
                  self.script_name, event.line, event.column)
        self._count(self._errors, "helper")

    def _count(self, counters, kind, n=1):
        with self._cond:
            counters[kind] = counters.get(kind, 0) + n

    def _on_exit(self, returncode, stderr_text, uptime):
        if self._script_path:
            stderr_text = stderr_text.replace(self._script_path, self.script_name)
        with self._cond:
            was_ready, killed = self._child_ready, self._killing
            self._child_ready = False
            self._pending = None
            self._want_another = False
            self._decode_pending()  # what it printed last, at exit too
            self._carried = merge_aggregations(self._carried, self._current)
            self._carried_overflow += sum(self._overflow.values())
            self._current, self._overflow = {}, {}
            self._cond.notify_all()
            if not self._ready.is_set():
                self._failure = self.script_error(returncode, stderr_text)
                return False
            if (returncode == 0 and was_ready and not killed and self.program.calls_exit):
                self._finished = True
                LOG.info("bpftrace for %s: the script called exit() after %.1f s; its final "
                         "maps are kept, it is not restarted", self.script_name, uptime)
                return False
            max_restarts = self.opts["max_restarts"]
            if 0 <= max_restarts <= self._restarts:
                self._gave_up = (f"bpftrace exited (rc {returncode}) and "
                                 f"{self._restarts} restarts were used up")
                LOG.error("%s: %s", self.script_name, self._gave_up)
                return False
            self._restarts += 1
        LOG.warning("bpftrace for %s %s (rc %s, %s after %.1f s): %s", self.script_name,
                    "was killed: hung" if killed else "died", returncode,
                    "ready" if was_ready else "not ready", uptime,
                    _first_error(stderr_text) or "no message")
        return True

    def script_error(self, returncode, stderr_text):
        """The typed error for a child that exited before it was ready."""
        for line in stderr_text.splitlines():
            if _HARMLESS.search(line):
                continue
            m = _LOCATED.match(line) or _UNLOCATED.match(line)
            if not m:
                continue
            msg = m.group("msg")
            if "only supports running as the root" in msg or "Operation not permitted" in msg:
                return EngineUnavailable(self.name, msg, fix="run as root")
            groups = m.groupdict()
            line_no = int(groups["line"]) if groups.get("line") else None
            col = int(groups["col"]) if groups.get("col") else None
            if _PROBE_MISSING.search(msg):
                # 0.17 puts some probe errors on the wrong line (before a
                # comment): the line naming the probe is the one to fix
                line_no = self._probe_line(msg) or line_no
                return ProbeNotFound(self.name, msg, self.script_name, line_no, col)
            return ScriptCompileError(self.name, msg, self.script_name, line_no, col)
        tail = stderr_text.strip()[-500:] or "no message"
        return EngineDied(self.name, f"exited (rc {returncode}) before attaching: {tail}")

    def _probe_line(self, msg):
        m = _NAMED_PROBE.search(msg)
        if not m:
            return None
        probe = m.group(1) or f"tracepoint:{m.group(2)}"
        for number, text in enumerate(self.source.splitlines(), 1):
            if probe in text:
                return number
        return None


def _first_error(stderr_text):
    for line in stderr_text.splitlines():
        if ("ERROR" in line or "FATAL" in line) and not _HARMLESS.search(line):
            return line.strip()
    return None
