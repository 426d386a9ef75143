"""The engines that run a set of shipped scripts: start, snapshot, stop.

Shared by the polling agent (``polling/telemetry_service.py``) and
``smartos-dtrace-top``; the caller says which scripts (the platform's, for
the catalogue's meters), the engine class how many engines run them
(:meth:`~smartos_telemetry.engines.base.Engine.for_scripts`):

* libbpf: one loaded BPF object per ``.bpf.c`` program, in this process;
* bpftrace: one supervised child per ``.bt`` script;
* libdtrace: one consumer running the ``.d`` scripts combined into one
  program (``combines_scripts``: Oracle DTrace allows one consumer per
  process).

:meth:`EngineSet.snapshot` returns
:class:`~smartos_telemetry.snapshot.Snapshots`, ``{script: Snapshot}`` with
the engines' health summed once -- what
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

from smartos_telemetry.engines.select import engine_class
from smartos_telemetry.errors import EngineDied, TelemetryError
from smartos_telemetry.snapshot import (
    EngineHealth,
    Snapshot,
    Snapshots,
    summed_health,
    without_first_keys,
)

#: seconds an engine's snapshot may overrun its own snapshot_timeout before
#: the set stops waiting for it (the engine enforces the timeout itself;
#: this bounds an engine that cannot, e.g. a call blocked inside libdtrace)
GRACE = 1.0

LOG = logging.getLogger(__name__)


class EngineSet:
    """The running engines of one engine name, for the scripts handed in."""

    def __init__(self, name, scripts, options=None, snapshot_timeout=10.0,
                 label="meters"):
        """``scripts``: the shipped scripts to run (relative paths);
        ``snapshot_timeout``: seconds one engine's snapshot may take (the
        ``[smartos] snapshot_timeout`` option); an engine option of that name
        in ``options`` wins.  ``label`` names a combined program."""
        self.name = name
        self.scripts = list(scripts)
        cls = engine_class(name)
        options = dict(options or {})
        if cls.options_known and "snapshot_timeout" in cls.options_known:
            options.setdefault("snapshot_timeout", snapshot_timeout)
        self.snapshot_timeout = float(options.get("snapshot_timeout", snapshot_timeout))
        #: each engine once, and the scripts it serves
        self.engines, self._served = [], {}
        for engine, served in cls.for_scripts(self.scripts, options=options, label=label):
            self.engines.append(engine)
            self._served[engine] = tuple(served)
        #: script -> the engine that runs it
        self._by_script = {rel: e for e, served in self._served.items() for rel in served}
        self._last = {}      # engine -> its last good Snapshot
        self._inflight = {}  # engine -> (thread, result box) of an overrun snapshot
        self._failing = {}   # engine -> why its last snapshot failed (logged once)
        self.started_in = None  # seconds start() took

    def engine_for(self, script):
        """The engine that runs ``script``."""
        return self._by_script[script]

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
            if engine not in self._inflight:
                self._inflight[engine] = _in_thread(engine.snapshot, engine.script_name)
        deadline = time.monotonic() + self.snapshot_timeout + GRACE
        taken, stopped = {}, 0
        for engine in engines:
            thread, box = self._inflight[engine]
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                taken[engine] = self._stand_in(
                    engine, f"no snapshot within {self.snapshot_timeout:g} s", health=False)
                continue
            del self._inflight[engine]
            if "snapshot" in box:
                taken[engine] = self._last[engine] = box["snapshot"]
                if self._failing.pop(engine, None) is not None:
                    LOG.info("smartos-telemetry: %s snapshots again", engine.script_name)
                continue
            error = box["error"]
            if isinstance(error, EngineDied):
                stopped += 1
            elif not isinstance(error, Exception):
                raise error
            taken[engine] = self._stand_in(engine, str(error), health=True, exc=error)
        if stopped == len(engines):
            raise EngineDied(self.name, "; ".join(sorted(set(self._failing.values()))))
        return Snapshots({rel: taken[engine] for rel, engine in self._by_script.items()},
                         summed_health(taken[engine].health for engine in engines))

    def _stand_in(self, engine, why, health, exc=None):
        """The last good snapshot of a failing engine, with its health now."""
        if self._failing.get(engine) != why:
            if exc is not None and not isinstance(exc, TelemetryError):
                LOG.error("smartos-telemetry: %s: snapshot failed: %r; its meters carry "
                          "their last values", engine.script_name, exc, exc_info=exc)
            else:
                LOG.warning("smartos-telemetry: %s: %s; its meters carry their last values "
                            "until it answers", engine.script_name, why)
        self._failing[engine] = why
        last = self._last.get(engine)
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
            if engine in self._inflight:
                continue  # busy (hung): tried again once it answers
            try:
                deleted = engine.forget(first_keys)
            except TelemetryError as exc:
                LOG.warning("smartos-telemetry: %s: cannot forget gone zones: %s",
                            engine.script_name, exc)
                continue
            if deleted is None:
                continue
            last = self._last.get(engine)
            if last is not None:  # a stand-in must not bring the rows back
                self._last[engine] = dataclasses.replace(
                    last, aggregations=without_first_keys(last.aggregations, first_keys))
            done.update(self._served[engine])
        return done

    def health(self):
        """The engines' health counters now, summed (each engine once); a
        snapshot carries the same figure as of its taking
        (:attr:`Snapshots.health`)."""
        return summed_health(engine.health() for engine in self.engines)

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
