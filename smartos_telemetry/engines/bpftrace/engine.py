"""BpftraceEngine: a bpftrace script as an Engine (start, snapshot, health, stop).

bpftrace runs as a long-lived child (``bpftrace -k -f json FILE``, see
:mod:`.process`).  Its maps are never cleared, so they are cumulative.  A
snapshot sends SIGUSR1 -- bpftrace prints every map, in name order, without
clearing -- and waits for the sentinel map that ends the round (see
:mod:`.program`).  SIGUSR1 is driven from user space because timer probes
(``interval``) can stall on this kind of VM.  ``print_interval`` adds a
periodic round so that a child that dies loses at most that much.

A child that dies is restarted with exponential backoff; the last values
printed by the dead child are carried into every later snapshot, so values
stay cumulative for the engine's life (events between the dead child's last
print and its death are lost).  ``health().restarts`` counts restarts.

Health counters: ``drops["lost_events"]`` (perf buffer overruns),
``drops["map_full"]`` (map updates refused with E2BIG: the map hit
``BPFTRACE_MAP_KEYS_MAX``, silent without ``-k``), ``errors["helper"]``
(other failed helpers), ``errors["output"]`` (lines that did not decode) and
``errors["hist_overflow"]`` (events in bpftrace 0.17's single >= 2^31 hist
bucket, reported as one overflow bucket).

Options (``-x NAME=VALUE`` on run-script):

=================  =====================================================
zones, buckets     map keys to allow: zones x buckets per zone (64 x 512)
map_keys_max       BPFTRACE_MAP_KEYS_MAX itself, overriding the product
perf_rb_pages      BPFTRACE_PERF_RB_PAGES (output ring pages per CPU)
ready_timeout      seconds to wait for attach (60)
snapshot_timeout   seconds to wait for a print round (10)
stop_timeout       seconds between SIGINT and SIGKILL (5)
print_interval     seconds between periodic print rounds (0: off)
backoff_initial,   restart delays: initial, doubling up to max (1, 60)
backoff_max
max_restarts       give up after this many restarts (-1: never)
bpftrace           the executable (found on PATH)
=================  =====================================================
"""

import os
import re
import shutil
import signal
import tempfile
import threading
import time

from oslo_log import log as logging

from smartos_telemetry.engines.base import Engine
from smartos_telemetry.engines.bpftrace import json_output, loglinear, process
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
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Snapshot, merge_values

LOG = logging.getLogger(__name__)

OPTIONS = {
    "zones": (int, 64),
    "buckets": (int, 512),
    "map_keys_max": (int, None),
    "perf_rb_pages": (int, None),
    "ready_timeout": (float, 60.0),
    "snapshot_timeout": (float, 10.0),
    "stop_timeout": (float, 5.0),
    "print_interval": (float, 0.0),
    "backoff_initial": (float, 1.0),
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

    def __init__(self, source, script_name=None, options=None):
        super().__init__(source, script_name, options)
        self.opts = parse_options(self.options)
        self.program = prepare(source)
        self._cond = threading.Condition()
        self._supervisor = None
        self._workdir = None
        self._script_path = None
        self._ready = threading.Event()
        self._failure = None         # exception of a child that never got ready
        self._gave_up = None         # reason the engine stopped restarting
        self._stopped = False
        self._child_ready = False
        self._generation = 0         # children started
        self._rounds = 0             # print rounds completed (sentinel lines)
        self._pending = None         # round number a SIGUSR1 in flight will complete
        self._want_another = False
        self._current = {}           # name -> Aggregation, the live child's
        self._carried = {}           # name -> Aggregation, dead children's
        self._overflow = {}          # name -> count in the bogus >= 2^31 bucket
        self._carried_overflow = 0
        self._drops = {}
        self._errors = {}
        self._restarts = 0
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
        self._workdir = tempfile.mkdtemp(prefix="smartos-telemetry-bt-")
        self._script_path = os.path.join(
            self._workdir, os.path.basename(self.script_name) or "script.bt")
        with open(self._script_path, "w", encoding="utf-8") as f:
            f.write(self.program.text)
        env = dict(os.environ)
        o = self.opts
        env["BPFTRACE_MAP_KEYS_MAX"] = str(o["map_keys_max"] or o["zones"] * o["buckets"])
        if o["perf_rb_pages"]:
            env["BPFTRACE_PERF_RB_PAGES"] = str(o["perf_rb_pages"])
        argv = process.command(binary, ["-k", "-f", "json", self._script_path])
        self._supervisor = process.Supervisor(
            argv, env, os.path.join(self._workdir, "stderr"),
            on_line=self._on_line, on_exit=self._on_exit, on_spawn=self._on_spawn,
            on_tick=self._on_tick if o["print_interval"] > 0 else None,
            tick_interval=o["print_interval"] or None,
            backoff_initial=o["backoff_initial"], backoff_max=o["backoff_max"],
            stop_timeout=o["stop_timeout"])
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

    def is_alive(self):
        return (self._supervisor is not None and not self._stopped
                and self._gave_up is None and self._ready.is_set())

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.stop()
        with self._cond:
            self._cond.notify_all()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

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
                target = self._request_round()
                deadline = time.monotonic() + timeout
                while (self._rounds < target and self._generation == generation
                       and self._child_ready and not self._stopped):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise EngineError(self.name, f"bpftrace did not print its maps "
                                                     f"within {timeout:g} s of SIGUSR1")
                    self._cond.wait(remaining)
            aggregations = merge_aggregations(self._carried, self._current)
        return Snapshot(self.name, aggregations, health=self.health())

    def _request_round(self):
        """Ask for a print round; the round number that answers it.  Under _cond."""
        if self._pending is not None:
            # a round is being printed; it may have started before this request
            self._want_another = True
            return self._pending + 1
        if not self._supervisor.signal(signal.SIGUSR1):
            return self._rounds
        self._pending = self._rounds + 1
        return self._pending

    def health(self):
        with self._cond:
            errors = dict(self._errors)
            overflow = self._carried_overflow + sum(self._overflow.values())
            if overflow:
                errors["hist_overflow"] = overflow
            return EngineHealth(drops=dict(self._drops), errors=errors,
                                restarts=self._restarts)

    # -- supervisor callbacks (supervisor thread) --------------------------------

    def _on_spawn(self, proc):
        with self._cond:
            self._generation += 1
            self._child_ready = False
            self._pending = None
            self._want_another = False
        LOG.debug("bpftrace started, pid %s", proc.pid)

    def _on_tick(self):
        with self._cond:
            if self._child_ready:
                self._request_round()

    def _on_line(self, line):
        try:
            event = json_output.decode_line(line, self.program.functions)
        except EngineOutputError as exc:
            LOG.warning("%s", exc)
            self._count(self._errors, "output")
            return
        if isinstance(event, json_output.MapPrint):
            self._on_maps(event)
        elif isinstance(event, json_output.Printf) and event.text.strip() == READY_MARKER:
            with self._cond:
                self._child_ready = True
            self._ready.set()
        elif isinstance(event, json_output.LostEvents):
            self._count(self._drops, "lost_events", event.events)
        elif isinstance(event, json_output.HelperError):
            self._on_helper_error(event)

    def _on_maps(self, event):
        with self._cond:
            for name, agg in event.aggregations.items():
                if name == self.program.sentinel:
                    self._round_done()
                    continue
                if name not in self.program.functions:
                    continue  # a plain map (timestamps, ids), not an aggregation
                if name in self.program.loglinear:
                    try:
                        agg = Aggregation(name, loglinear.ACTION,
                                          loglinear.histograms(agg.rows, name))
                    except EngineOutputError as exc:
                        LOG.warning("%s", exc)
                        self._errors["output"] = self._errors.get("output", 0) + 1
                        continue
                self._current[name] = agg
                self._overflow[name] = event.overflow if len(event.aggregations) == 1 else 0

    def _round_done(self):
        self._rounds += 1
        self._pending = None
        if self._want_another:
            self._want_another = False
            if self._supervisor.signal(signal.SIGUSR1):
                self._pending = self._rounds + 1
        self._cond.notify_all()

    def _on_helper_error(self, event):
        if event.helper == "map_delete_elem" and event.retcode == -ENOENT:
            return  # deleting a key that is not there: harmless
        if event.helper == "map_update_elem" and event.retcode == -E2BIG:
            self._count(self._drops, "map_full")
            return
        LOG.debug("bpftrace helper %s failed (%d) at %s:%s:%s", event.helper, event.retcode,
                  self.script_name, event.line, event.column)
        self._count(self._errors, "helper")

    def _count(self, counters, kind, n=1):
        with self._cond:
            counters[kind] = counters.get(kind, 0) + n

    def _on_exit(self, returncode, stderr_text, uptime):
        stderr_text = stderr_text.replace(self._script_path, self.script_name)
        with self._cond:
            was_ready = self._child_ready
            self._child_ready = False
            self._pending = None
            self._carried = merge_aggregations(self._carried, self._current)
            self._carried_overflow += sum(self._overflow.values())
            self._current, self._overflow = {}, {}
            self._cond.notify_all()
            if not self._ready.is_set():
                self._failure = self.script_error(returncode, stderr_text)
                return False
            max_restarts = self.opts["max_restarts"]
            if 0 <= max_restarts <= self._restarts:
                self._gave_up = (f"bpftrace exited (rc {returncode}) and "
                                 f"{self._restarts} restarts were used up")
                LOG.error("%s: %s", self.script_name, self._gave_up)
                return False
            self._restarts += 1
        LOG.warning("bpftrace for %s died (rc %s, %s after %.1f s): %s", self.script_name,
                    returncode, "ready" if was_ready else "not ready", uptime,
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
