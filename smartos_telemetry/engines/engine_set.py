"""The engines that run one platform's shipped scripts: start, snapshot, stop.

Shared by the polling agent (``polling/telemetry_service.py``) and
``smartos-dtrace-top``:

* libbpf: one loaded BPF object per shipped ``.bpf.c`` program, in this process;
* bpftrace: one supervised child per shipped ``.bt`` script;
* libdtrace: one consumer running the platform's ``.d`` scripts combined
  into one program (Oracle DTrace allows one consumer per process).

:meth:`EngineSet.snapshot` returns ``{script: Snapshot}`` -- what
:class:`~smartos_telemetry.meters.reduce.SnapshotReducer` reads; the scripts
of a combined D program share one snapshot, taken once.

Each engine's failure stays its own: the engines are snapshotted in
parallel, each within ``snapshot_timeout``; one that fails, overruns or has
stopped is handed on with its last good values and health (cumulative
values: stale ones lose nothing and never go backwards), logged once, while
the others' snapshots are on time.  A bpftrace engine replaces a hung child
itself (see ``engines/bpftrace/engine.py``).
"""

import dataclasses
import threading
import time

from oslo_log import log as logging

from smartos_telemetry import scripts
from smartos_telemetry.engines.select import choose_engine, engine_class
from smartos_telemetry.errors import EngineDied, TelemetryError
from smartos_telemetry.meters import catalogue
from smartos_telemetry.snapshot import EngineHealth, Snapshot, without_first_keys

#: seconds an engine's snapshot may overrun its own snapshot_timeout before
#: the set stops waiting for it (the engine enforces the timeout itself;
#: this bounds an engine that cannot, e.g. a call blocked inside libdtrace)
GRACE = 1.0

LOG = logging.getLogger(__name__)


def choose(platform, requested="auto"):
    """``(engine name, reason)`` for ``platform``; raises EngineUnavailable.

    The SmartOS scripts are D only (bpftrace has no illumos port), so
    ``auto`` means dtrace there.
    """
    if platform == "smartos" and requested == "auto":
        return choose_engine("dtrace")
    return choose_engine(requested)


class EngineSet:
    """The running engines of one platform and engine name."""

    def __init__(self, platform, name, options=None, snapshot_timeout=10.0):
        """``snapshot_timeout``: seconds one engine's snapshot may take (the
        ``[smartos] snapshot_timeout`` option); an engine option of that name
        in ``options`` wins."""
        self.platform = platform
        self.name = name
        self.scripts = catalogue.scripts_for(platform, name)
        cls = engine_class(name)
        options = dict(options or {})
        if cls.options_known and "snapshot_timeout" in cls.options_known:
            options.setdefault("snapshot_timeout", snapshot_timeout)
        self.snapshot_timeout = float(options.get("snapshot_timeout", snapshot_timeout))
        self._last = {}      # id(engine) -> its last good Snapshot
        self._inflight = {}  # id(engine) -> (thread, result box) of an overrun snapshot
        self._failing = {}   # id(engine) -> why its last snapshot failed (logged once)
        if name == "dtrace":
            source, _ = scripts.combine(self.scripts)
            engine = cls(source, script_name=f"{platform} meters", options=options)
            self._by_script = {rel: engine for rel in self.scripts}
        else:
            self._by_script = {}
            for rel in self.scripts:
                with open(scripts.script_path(rel), encoding="utf-8") as f:
                    self._by_script[rel] = cls(f.read(), script_name=rel, options=options)
        self.started_in = None  # seconds start() took

    @property
    def engines(self):
        """Each engine once (a combined D program serves several scripts)."""
        return list({id(e): e for e in self._by_script.values()}.values())

    def start(self, progress=None):
        """Compile and attach every engine; stop them all if one fails.

        ``progress(engine, seconds)`` is called before each engine starts
        (``seconds`` None) and once it is compiled and attached.
        """
        t0 = time.monotonic()
        begun = []
        try:
            for engine in self.engines:
                begun.append(engine)  # stopped on failure too: it may be half-started
                if progress:
                    progress(engine, None)
                t1 = time.monotonic()
                engine.start()
                if progress:
                    progress(engine, time.monotonic() - t1)
        except BaseException:
            for engine in begun:
                try:
                    engine.stop()
                except Exception:
                    LOG.exception("stopping %s failed", engine.script_name)
            raise
        self.started_in = time.monotonic() - t0

    def snapshot(self):
        """``{script: Snapshot}``, one snapshot per engine, taken in parallel.

        An engine whose snapshot fails or takes longer than
        ``snapshot_timeout`` (+ GRACE) stands in with its last good values
        (none before its first) and health; EngineDied only when every
        engine has stopped.
        """
        engines = self.engines
        for engine in engines:
            if id(engine) not in self._inflight:
                self._inflight[id(engine)] = _in_thread(engine.snapshot, engine.script_name)
        deadline = time.monotonic() + self.snapshot_timeout + GRACE
        taken, stopped = {}, 0
        for engine in engines:
            thread, box = self._inflight[id(engine)]
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                taken[id(engine)] = self._stand_in(
                    engine, f"no snapshot within {self.snapshot_timeout:g} s", health=False)
                continue
            del self._inflight[id(engine)]
            if "snapshot" in box:
                taken[id(engine)] = self._last[id(engine)] = box["snapshot"]
                if self._failing.pop(id(engine), None) is not None:
                    LOG.info("smartos-telemetry: %s snapshots again", engine.script_name)
                continue
            error = box["error"]
            if isinstance(error, EngineDied):
                stopped += 1
            elif not isinstance(error, Exception):
                raise error
            taken[id(engine)] = self._stand_in(engine, str(error), health=True, exc=error)
        if stopped == len(engines):
            raise EngineDied(self.name, "; ".join(sorted(set(self._failing.values()))))
        return {rel: taken[id(engine)] for rel, engine in self._by_script.items()}

    def _stand_in(self, engine, why, health, exc=None):
        """The last good snapshot of a failing engine, with its health now."""
        if self._failing.get(id(engine)) != why:
            if exc is not None and not isinstance(exc, TelemetryError):
                LOG.error("smartos-telemetry: %s: snapshot failed: %r; its meters carry "
                          "their last values", engine.script_name, exc, exc_info=exc)
            else:
                LOG.warning("smartos-telemetry: %s: %s; its meters carry their last values "
                            "until it answers", engine.script_name, why)
        self._failing[id(engine)] = why
        last = self._last.get(id(engine))
        if health:
            now = engine.health()
        else:  # its lock may be held by the call that overran
            now = last.health if last is not None else EngineHealth()
        if last is None:
            return Snapshot(engine.name, {}, health=now)
        return Snapshot(engine.name, last.aggregations, health=now,
                        monotonic=last.monotonic, wallclock=last.wallclock)

    def forget(self, first_keys):
        """Delete the rows whose first key is in ``first_keys`` (cgroup ids of
        zones that are gone, their last values delivered) from every engine
        that can; the scripts whose engines deleted them everywhere.

        A script not returned keeps the rows (its engine cannot delete, is
        busy, or failed): the caller must not count them as gone.
        """
        done = set()
        for engine in self.engines:
            if id(engine) in self._inflight:
                continue  # busy (hung): tried again once it answers
            try:
                deleted = engine.forget(first_keys)
            except TelemetryError as exc:
                LOG.warning("smartos-telemetry: %s: cannot forget gone zones: %s",
                            engine.script_name, exc)
                continue
            if deleted is None:
                continue
            last = self._last.get(id(engine))
            if last is not None:  # a stand-in must not bring the rows back
                self._last[id(engine)] = dataclasses.replace(
                    last, aggregations=without_first_keys(last.aggregations, first_keys))
            done.update(rel for rel, e in self._by_script.items() if e is engine)
        return done

    def health(self):
        """The engines' health counters, summed (each engine once)."""
        drops, errors, restarts = {}, {}, 0
        for engine in self.engines:
            h = engine.health()
            for kind, n in h.drops.items():
                drops[kind] = drops.get(kind, 0) + n
            for kind, n in h.errors.items():
                errors[kind] = errors.get(kind, 0) + n
            restarts += h.restarts
        return EngineHealth(drops=drops, errors=errors, restarts=restarts)

    def stop(self):
        """Stop every engine (idempotent); a failure to stop one is logged."""
        self._inflight.clear()
        for engine in self.engines:
            try:
                engine.stop()
            except Exception:  # stopping must not fail the caller
                LOG.exception("smartos-telemetry: stopping %s failed", engine.script_name)


def _in_thread(call, name):
    """Run ``call()`` on a daemon thread; ``(thread, box)``, the box gets
    ``snapshot`` or ``error``.  Daemon: a call that never returns must not
    hold up the agent's exit."""
    box = {}

    def run():
        try:
            box["snapshot"] = call()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"snapshot {name}", daemon=True)
    thread.start()
    return thread, box
