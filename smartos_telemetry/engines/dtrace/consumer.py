"""A long-lived libdtrace consumer: compile D, run it, read its aggregations.

Lifecycle of one handle (the order libdtrace requires)::

    dtrace_open -> dtrace_setopt (bufsize, aggsize, ...) -> [dtrace_init, Oracle]
    -> dtrace_program_strcompile (process-wide lock)
    -> dtrace_handle_err / _drop / _buffered   (after the compile, before exec:
                                                dtrace(1)'s order; err compiles ERROR)
    -> refuse destructive -> dtrace_program_exec -> dtrace_go
    -> every keepalive: dtrace_status + dtrace_work (drops, errors, output)
    -> snapshot(): dtrace_status, dtrace_work, dtrace_aggregate_snap,
                   dtrace_aggregate_walk (NEXT: cumulative since go)
    -> dtrace_stop -> dtrace_close

Threads: a background thread keeps the handle alive (the illumos deadman
aborts consumers silent for 30 s) and collects drops and errors between
polls.  A per-handle lock makes sure libdtrace is never entered from two
threads at once; the D compiler is not re-entrant at all, so every compile
in the process also takes :data:`COMPILE_LOCK`.

Callbacks are cffi ``extern "Python"`` functions, one set per loaded
binding; ``arg`` is a handle to the consumer, kept alive with it.  No
Python exception ever propagates into C: a failing walk callback aborts the
walk and its exception is raised after the walk returns.

Destructive actions are never enabled: this module never sets the
``destructive`` option and refuses a program that sets it itself.
"""

import collections
import re
import threading

from oslo_log import log as logging

from smartos_telemetry.engines.base import Engine
from smartos_telemetry.engines.dtrace import binding as binding_mod
from smartos_telemetry.engines.dtrace.combine import combine
from smartos_telemetry.engines.dtrace.decode import AggDecoder
from smartos_telemetry.errors import (
    EngineDied,
    EngineError,
    EngineUnavailable,
    ProbeNotFound,
    ScriptCompileError,
    ScriptError,
)
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Snapshot

LOG = logging.getLogger(__name__)

ENGINE = "dtrace"

#: the D compiler keeps global state (yypcb): one compile at a time per
#: process.  Oracle's dtrace_init compiles the D libraries, and on Oracle
#: DTrace 2.0.7 two concurrent inits abort the process, so set-up holds it too.
COMPILE_LOCK = threading.Lock()

#: handles this process has opened, for a binding that allows one consumer
#: per process (Binding.one_consumer_per_process): the agent therefore runs
#: one combined program per process
_handles_opened = 0

#: consumer options and their defaults; every one can be overridden
DEFAULT_OPTIONS = {
    "bufsize": "256k",  # principal buffer per CPU: only printf/ERROR records
    "aggsize": "4m",  # aggregation buffer per CPU: keys x buckets
    "aggrate": "10ms",  # so every poll's dtrace_aggregate_snap really reads
    "statusrate": "1s",
    "switchrate": "10hz",  # bounds how long dtrace_work blocks (Oracle)
    "strsize": "64",  # zonenames are 36-character UUIDs
    "dynvarsize": "8m",  # thread-local/associative arrays (timestamps)
}

#: options a caller may never set
FORBIDDEN_OPTIONS = frozenset({"destructive"})

#: what dtrace_status() returns on failure.  illumos' <dtrace.h> names no
#: constant for it (dtrace_status in libdtrace/common/dt_work.c returns a
#: bare -1); DTRACE_STATUS_ERROR is Oracle's name for the same value.
STATUS_ERROR = -1

#: strings shorter than this would be decoded as integers (1/2/4/8 bytes)
MIN_STRSIZE = 16

_LINE_RE = re.compile(r"\bline (\d+)\b")
_NOPROBE_RE = re.compile(r"does not match any probes|probe description .* does not match|"
                         r"no probes? (?:specified|match)", re.IGNORECASE)


def install_callbacks(binding):
    """Register the extern "Python" callbacks of one loaded binding, once."""
    if binding.callbacks_installed:
        return
    ffi, lib = binding.ffi, binding.lib

    def target(arg):
        return ffi.from_handle(arg)

    @ffi.def_extern(name="st_walk_cb", error=lib.DTRACE_AGGWALK_ABORT)
    def _walk(aggdata, arg):
        return target(arg)._on_aggregate(aggdata)

    @ffi.def_extern(name="st_err_cb", error=lib.DTRACE_HANDLE_OK)
    def _err(errdata, arg):
        return target(arg)._on_error(errdata)

    @ffi.def_extern(name="st_drop_cb", error=lib.DTRACE_HANDLE_OK)
    def _drop(dropdata, arg):
        return target(arg)._on_drop(dropdata)

    @ffi.def_extern(name="st_buffered_cb", error=lib.DTRACE_HANDLE_OK)
    def _buffered(bufdata, arg):
        return target(arg)._on_buffered(bufdata)

    @ffi.def_extern(name="st_probe_cb", error=lib.DTRACE_CONSUME_THIS)
    def _probe(probedata, arg):
        return lib.DTRACE_CONSUME_THIS

    @ffi.def_extern(name="st_rec_cb", error=lib.DTRACE_CONSUME_NEXT)
    def _rec(probedata, rec, arg):
        return target(arg)._on_record(rec)

    binding.callbacks_installed = True


class DTraceConsumer(Engine):
    """Runs one D program on libdtrace; snapshots are cumulative since go.

    ``options`` overrides :data:`DEFAULT_OPTIONS` (values as dtrace(1) takes
    them: ``"4m"``, ``"10hz"``).  ``binding`` is for tests that load another
    build of the binding (the fake illumos libdtrace).  ``keepalive`` is the
    seconds between background status calls.
    """

    name = ENGINE
    # one program for every script: Oracle DTrace runs one consumer per process
    combines_scripts = True

    @classmethod
    def for_scripts(cls, relatives, options=None, label="meters"):
        """One consumer running every D script of ``relatives`` as one program."""
        if not relatives:
            return []
        source, _ = combine(relatives)
        return [(cls(source, script_name=label, options=options), list(relatives))]

    def __init__(self, source, script_name=None, options=None, binding=None,
                 keepalive=1.0):
        super().__init__(source, script_name, options)
        bad = FORBIDDEN_OPTIONS.intersection(self.options)
        if bad:
            raise ScriptError(ENGINE, f"option {', '.join(sorted(bad))} is never enabled "
                              "by smartos-telemetry", script=self.script_name)
        self._binding = binding
        self._keepalive_interval = keepalive
        self._lock = threading.RLock()
        self._handle = None
        self._out = None  # (FILE *, char **, size_t *, bytes read)
        self._self_ref = None
        self._decoder = None
        self._keepalive = None
        self._stopping = threading.Event()
        self._started = False
        self._closed = False
        self._exited = False
        self._death = None
        self._drops = collections.Counter()
        self._errors = collections.Counter()
        self._output = collections.deque(maxlen=1000)
        self._walk_rows = None
        self._walk_error = None
        self.program_info = None

    # -- availability -------------------------------------------------------
    @classmethod
    def available(cls):
        try:
            binding_mod.load_binding()
        except EngineUnavailable as exc:
            return exc.reason
        return binding_mod.privileges_problem()

    @classmethod
    def version(cls):
        b = binding_mod.load_binding()
        return b.ffi.string(b.lib.st_dtrace_version()).decode()

    # -- lifecycle ----------------------------------------------------------
    def _b(self):
        if self._binding is None:
            self._binding = binding_mod.load_binding()
        return self._binding

    def start(self):
        if self._started:
            raise EngineError(ENGINE, "consumer already started; make a new one")
        self._started = True
        b = self._b()
        install_callbacks(b)
        problem = binding_mod.privileges_problem()
        if problem:
            raise EngineUnavailable(ENGINE, problem, "run as root")
        try:
            # dtrace_init and dtrace_handle_err compile D too (the D
            # libraries, the ERROR clause): the whole set-up is serialised
            with COMPILE_LOCK, self._lock:
                self._open(b)
                self._compile_and_go(b)
        except BaseException:
            self.stop()
            raise
        self._keepalive = threading.Thread(
            target=self._keepalive_loop, name=f"dtrace-keepalive:{self.script_name}",
            daemon=True)
        self._keepalive.start()
        LOG.debug("dtrace consumer for %s running (%d probes matched)", self.script_name,
                  self.program_info.dpi_matches if self.program_info else -1)

    def _open(self, b):
        global _handles_opened
        ffi, lib = b.ffi, b.lib
        if b.one_consumer_per_process and _handles_opened:
            raise EngineError(
                ENGINE, "Oracle DTrace 2.x runs one consumer per process and this process "
                "has already had one; run each program in its own process (or combine "
                "them into one program)")
        err = ffi.new("int *")
        handle = lib.dtrace_open(lib.DTRACE_VERSION, 0, err)
        if handle == ffi.NULL:
            raise EngineUnavailable(ENGINE, f"dtrace_open failed: {b.errmsg(ffi.NULL, err[0])}",
                                    "run as root on a host with DTrace support")
        self._handle = handle
        _handles_opened += 1
        opts = dict(DEFAULT_OPTIONS)
        opts.update(self.options)
        if int(str(opts["strsize"]).rstrip("bB")) < MIN_STRSIZE:
            raise ScriptError(ENGINE, f"strsize must be at least {MIN_STRSIZE}",
                              script=self.script_name)
        for name, value in opts.items():
            if lib.dtrace_setopt(handle, name.encode(), str(value).encode()) != 0:
                raise ScriptError(ENGINE, f"cannot set option {name}={value}: "
                                  f"{b.errmsg(handle)}", script=self.script_name)
        if b.init(handle) != 0:
            raise EngineUnavailable(ENGINE, f"dtrace_init failed: {b.errmsg(handle)}")
        self._self_ref = ffi.new_handle(self)
        self._open_output_stream()
        self._decoder = AggDecoder(b, handle)

    def _compile_and_go(self, b):
        ffi, lib = b.ffi, b.lib
        handle = self._handle
        # The program goes in as a string, the way dtrace(1) -n hands one
        # over: no memory stream.  fmemopen is absent from SmartOS images
        # before illumos' 2020 libc, and the illumos fmemopen_read seen
        # ignores the read position, so libdtrace's lexer (dt_lex.l, fgetc)
        # would re-read a program over 1 KiB from its start.  The probe spec
        # is the one dtrace_program_fcompile uses (illumos dt_cc.c), so the
        # program means what it meant as a file; no DTRACE_C_CPP, which
        # illumos applies to a FILE only (dt_cc.c dt_compile).
        source = self.source.encode()
        prog = lib.dtrace_program_strcompile(handle, source, lib.DTRACE_PROBESPEC_NAME,
                                             0, 0, ffi.NULL)
        if prog == ffi.NULL:
            self._raise_compile_error(self._compile_message(b, source))
        # the handlers go after the compile and before exec, the order
        # dtrace(1) uses: Oracle's dtrace_handle_err compiles the ERROR
        # clause, and registered before the program is compiled it corrupts
        # libdtrace's heap once the program has three or more probe
        # descriptions (Oracle DTrace 2.0.7: "double free or corruption" in
        # dtrace_close, "free(): invalid pointer" in dtrace_go)
        for register, callback in ((lib.dtrace_handle_err, lib.st_err_cb),
                                   (lib.dtrace_handle_drop, lib.st_drop_cb),
                                   (lib.dtrace_handle_buffered, lib.st_buffered_cb)):
            if register(handle, callback, self._self_ref) != 0:
                raise EngineError(ENGINE, f"cannot register handler: {b.errmsg(handle)}")
        value = ffi.new("dtrace_optval_t *")
        if lib.dtrace_getopt(handle, b"destructive", value) == 0 and \
                value[0] != _optval_unset(ffi):
            raise ScriptError(ENGINE, "the program enables destructive actions, which "
                              "smartos-telemetry never allows", script=self.script_name)
        info = ffi.new("dtrace_proginfo_t *")
        if lib.dtrace_program_exec(handle, prog, info) != 0:
            self._raise_compile_error(b.errmsg(handle))
        self.program_info = info
        if b.go(handle) != 0:
            message = b.errmsg(handle)
            if _NOPROBE_RE.search(message):
                raise ProbeNotFound(ENGINE, message, script=self.script_name)
            raise EngineError(ENGINE, f"cannot start tracing: {message}")

    def _compile_message(self, b, source):
        """libdtrace's message for a program that did not compile, with its line.

        libdtrace puts "line N" in a message only when it read the program
        from a FILE (dt_parser.c xyvwarn: ``pcb_fileptr ? yylineno : 0``), so
        the same program is compiled once more, from a real temporary file
        (not a memory stream), to have the line said.  If that cannot be
        done, the string compile's own message stands.
        """
        ffi, lib = b.ffi, b.lib
        message = b.errmsg(self._handle)
        if _LINE_RE.search(message):
            return message
        fp = lib.tmpfile()
        if fp == ffi.NULL:
            return message
        try:
            if lib.fwrite(ffi.from_buffer(source), 1, len(source), fp) != len(source) \
                    or lib.fflush(fp):
                return message
            lib.rewind(fp)
            if lib.dtrace_program_fcompile(self._handle, fp, 0, 0, ffi.NULL) != ffi.NULL:
                return message
            located = b.errmsg(self._handle)
        finally:
            lib.fclose(fp)
        return located if _LINE_RE.search(located) else message

    def _raise_compile_error(self, message):
        line = _LINE_RE.search(message)
        cls = ProbeNotFound if _NOPROBE_RE.search(message) else ScriptCompileError
        raise cls(ENGINE, message, script=self.script_name,
                  line=int(line.group(1)) if line else None)

    def stop(self):
        """Stop tracing and close the handle; safe to call again."""
        self._stopping.set()
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None and keepalive is not threading.current_thread():
            keepalive.join()
        with self._lock:
            if self._closed or self._handle is None:
                self._closed = True
                return
            lib = self._binding.lib
            try:
                lib.dtrace_stop(self._handle)
            finally:
                lib.dtrace_close(self._handle)
                self._handle = None
                self._closed = True
                self._close_output_stream()
        LOG.debug("dtrace consumer for %s closed", self.script_name)

    # -- polling ------------------------------------------------------------
    def _keepalive_loop(self):
        while not self._stopping.wait(self._keepalive_interval):
            with self._lock:
                if self._handle is None or self._death:
                    return
                self._poll_locked()

    def poll(self):
        """Collect drops, run-time errors and buffered output now.

        The keep-alive thread does this every ``keepalive`` seconds; call it
        to have the health counters current before reading them.
        """
        with self._lock:
            if self._handle is None:
                raise EngineDied(ENGINE, "consumer is not running (stopped or never started)")
            self._poll_locked()

    def _poll_locked(self):
        """dtrace_status + dtrace_work: liveness, drops, errors, output."""
        b = self._binding
        lib = b.lib
        status = lib.dtrace_status(self._handle)
        if status == STATUS_ERROR:
            self._die(f"dtrace_status failed: {b.errmsg(self._handle)}")
            return
        if status in (lib.DTRACE_STATUS_EXITED, lib.DTRACE_STATUS_STOPPED,
                      lib.DTRACE_STATUS_FILLED):
            self._exited = True
        work = lib.dtrace_work(self._handle, self._out[0], lib.st_probe_cb, lib.st_rec_cb,
                               self._self_ref)
        self._collect_output()
        if work == lib.DTRACE_WORKSTATUS_ERROR:
            self._die(f"dtrace_work failed: {b.errmsg(self._handle)}")
        elif work == lib.DTRACE_WORKSTATUS_DONE:
            self._exited = True

    # -- printf output -------------------------------------------------------
    #: a stream this large is replaced by a fresh one
    OUTPUT_STREAM_LIMIT = 1 << 20

    def _open_output_stream(self):
        ffi, lib = self._binding.ffi, self._binding.lib
        bufp, sizep = ffi.new("char **"), ffi.new("size_t *")
        fp = lib.open_memstream(bufp, sizep)
        if fp == ffi.NULL:
            raise EngineError(ENGINE, "open_memstream failed: no memory for printf output")
        self._out = [fp, bufp, sizep, 0]

    def _close_output_stream(self):
        if self._out is not None:
            # fclose writes through bufp and sizep: both must outlive it
            fp, bufp, sizep, _ = self._out
            self._binding.lib.fclose(fp)
            self._binding.lib.free(bufp[0])
            self._out = None
            del sizep

    def _collect_output(self):
        """Move what printf wrote since the last call into output()."""
        ffi, lib = self._binding.ffi, self._binding.lib
        fp, bufp, sizep, done = self._out
        lib.fflush(fp)
        size = sizep[0]
        if size > done:
            self._output.append(ffi.unpack(bufp[0] + done, size - done).decode(
                "utf-8", "replace"))
            self._out[3] = size
        if size > self.OUTPUT_STREAM_LIMIT:
            self._close_output_stream()
            self._open_output_stream()

    def _die(self, reason):
        if not self._death:
            LOG.error("dtrace consumer for %s died: %s", self.script_name, reason)
            self._death = reason

    def is_alive(self):
        return (self._handle is not None and not self._closed and not self._death
                and not self._exited)

    @property
    def exited(self):
        """True once the program called exit() (its data can still be read)."""
        return self._exited

    @property
    def death_reason(self):
        return self._death

    def snapshot(self):
        """Every aggregation, cumulative since go, as a typed Snapshot."""
        with self._lock:
            self._snap_locked()
            rows = self._walk_locked()
        aggregations = {name: Aggregation(name, action, entries)
                        for (name, action), entries in rows.items()}
        return Snapshot(ENGINE, aggregations, self.health())

    def _snap_locked(self):
        """Liveness, then libdtrace reads the kernel's aggregation data."""
        if self._handle is None:
            raise EngineDied(ENGINE, "consumer is not running (stopped or never started)")
        if self._death:
            raise EngineDied(ENGINE, self._death)
        b = self._binding
        # status + work first: Oracle 2.0.7's dtrace_aggregate_snap returns
        # what the last dtrace_work read, so without it a snapshot is as old
        # as the keep-alive's last round (up to a second).
        # dtrace_work may block for up to the switchrate (100 ms at 10hz);
        # it also brings drops, errors and output up to date.
        self._poll_locked()
        if self._death:
            raise EngineDied(ENGINE, self._death)
        if b.lib.dtrace_aggregate_snap(self._handle) != 0:
            raise EngineError(ENGINE, f"dtrace_aggregate_snap: {b.errmsg(self._handle)}")

    def _walk_locked(self):
        """Walk libdtrace's aggregation hash, decoding every row."""
        b = self._binding
        self._walk_rows = {}
        self._walk_error = None
        rc = b.lib.dtrace_aggregate_walk(self._handle, b.lib.st_walk_cb, self._self_ref)
        rows, error = self._walk_rows, self._walk_error
        self._walk_rows = self._walk_error = None
        if error is not None:
            raise error
        if rc != 0:
            raise EngineError(ENGINE, f"dtrace_aggregate_walk: {b.errmsg(self._handle)}")
        return rows

    def health(self):
        return EngineHealth(drops=dict(self._drops), errors=dict(self._errors))

    def output(self):
        """Buffered text output (printf, trace) so far, oldest first."""
        with self._lock:
            return list(self._output)

    # -- callbacks (run on the thread that called into libdtrace) -----------
    def _on_aggregate(self, aggdata):
        lib = self._binding.lib
        try:
            name, action, key, value = self._decoder.decode(aggdata)
        except Exception as exc:  # recorded, raised after the walk
            self._walk_error = exc
            return lib.DTRACE_AGGWALK_ABORT
        self._walk_rows.setdefault((name, action), {})[key] = value
        return lib.DTRACE_AGGWALK_NEXT

    def _on_error(self, errdata):
        b = self._binding
        try:
            fault = b.lib.dtrace_faultstr(self._handle, errdata.dteda_fault)
            kind = (b.ffi.string(fault).decode() if fault else "error").lower()
            kind = re.sub(r"[^a-z0-9]+", "_", kind).strip("_") or "error"
            self._errors[kind] += 1
            if self._errors[kind] in (1, 10, 100, 1000) or self._errors[kind] % 10000 == 0:
                msg = b.ffi.string(errdata.dteda_msg).decode("utf-8", "replace") \
                    if errdata.dteda_msg else kind
                LOG.warning("%s: run-time error #%d of kind %s: %s", self.script_name,
                            self._errors[kind], kind, msg.strip())
        except Exception:  # never into C
            LOG.exception("error handler failed")
        return b.lib.DTRACE_HANDLE_OK

    def _on_drop(self, dropdata):
        b = self._binding
        try:
            kind = b.drop_kinds.get(dropdata.dtdda_kind, f"kind_{dropdata.dtdda_kind}")
            self._drops[kind] += dropdata.dtdda_drops
            msg = b.ffi.string(dropdata.dtdda_msg).decode("utf-8", "replace") \
                if dropdata.dtdda_msg else ""
            LOG.warning("%s: %d %s drops (%s)", self.script_name, dropdata.dtdda_drops, kind,
                        msg.strip())
        except Exception:
            LOG.exception("drop handler failed")
        return b.lib.DTRACE_HANDLE_OK

    def _on_buffered(self, bufdata):
        b = self._binding
        try:
            if bufdata.dtbda_buffered:
                self._output.append(b.ffi.string(bufdata.dtbda_buffered).decode(
                    "utf-8", "replace"))
        except Exception:
            LOG.exception("buffered-output handler failed")
        return b.lib.DTRACE_HANDLE_OK

    def _on_record(self, rec):
        lib = self._binding.lib
        if rec == self._binding.ffi.NULL:
            return lib.DTRACE_CONSUME_NEXT
        if rec.dtrd_action == lib.DTRACEACT_EXIT:
            self._exited = True
        return lib.DTRACE_CONSUME_THIS


def _optval_unset(ffi):
    """DTRACEOPT_UNSET, (dtrace_optval_t)-2, in the binding's integer type."""
    return int(ffi.cast("dtrace_optval_t", -2))
