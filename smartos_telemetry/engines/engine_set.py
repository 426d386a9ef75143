"""The engines that run one platform's shipped scripts: start, snapshot, stop.

Shared by the polling agent (``polling/telemetry_service.py``) and
``smartos-dtrace-top``:

* bpftrace: one supervised child per shipped ``.bt`` script;
* libdtrace: one consumer running the platform's ``.d`` scripts combined
  into one program (Oracle DTrace allows one consumer per process).

:meth:`EngineSet.snapshot` returns ``{script: Snapshot}`` -- what
:class:`~smartos_telemetry.meters.reduce.SnapshotReducer` reads; the scripts
of a combined D program share one snapshot, taken once.
"""

import time

from oslo_log import log as logging

from smartos_telemetry import scripts
from smartos_telemetry.engines.select import choose_engine, engine_class
from smartos_telemetry.meters import catalogue
from smartos_telemetry.snapshot import EngineHealth

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

    def __init__(self, platform, name, options=None):
        self.platform = platform
        self.name = name
        self.scripts = catalogue.scripts_for(platform, name)
        cls = engine_class(name)
        options = dict(options or {})
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
        """``{script: Snapshot}``, one snapshot per engine; EngineDied if one stopped."""
        taken, out = {}, {}
        for rel, engine in self._by_script.items():
            if id(engine) not in taken:
                taken[id(engine)] = engine.snapshot()
            out[rel] = taken[id(engine)]
        return out

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
        for engine in self.engines:
            try:
                engine.stop()
            except Exception:  # stopping must not fail the caller
                LOG.exception("smartos-telemetry: stopping %s failed", engine.script_name)
