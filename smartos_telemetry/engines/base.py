"""The interface every engine implements.

An engine runs one script (D for libdtrace, bpftrace's language for
bpftrace) in the kernel and hands back its aggregations as a
:class:`~smartos_telemetry.snapshot.Snapshot`.  Nothing downstream knows
which engine produced a snapshot.

Lifecycle::

    engine = SomeEngine(source, script_name="runq.d", options={...})
    engine.start()          # compile + attach; ScriptCompileError, ProbeNotFound,
                            # EngineUnavailable
    snap = engine.snapshot()   # cumulative since start; EngineDied if it stopped
    engine.health()            # EngineHealth: drops/errors by kind, restarts
    engine.forget({id, ...})   # drop rows of zones that are gone (where it can)
    engine.stop()              # idempotent; leaves nothing attached

Engines are context managers (``with engine: ...`` starts and stops).
"""

import abc

from smartos_telemetry.scripts import script_path


class Engine(abc.ABC):
    """One running script on one tracing engine."""

    #: short engine name: "dtrace" or "bpftrace"
    name = None
    #: the options this engine takes, where it says (None: not declared)
    options_known = None
    #: True when one engine runs several scripts as one program
    #: (:meth:`for_scripts` then makes one engine for them all)
    combines_scripts = False

    def __init__(self, source, script_name=None, options=None):
        self.source = source
        self.script_name = script_name or "<script>"
        self.options = dict(options or {})

    @classmethod
    def for_scripts(cls, relatives, options=None, label="meters"):
        """``[(engine, scripts it runs)]`` for the shipped scripts
        ``relatives``: one engine per script (an engine class that
        ``combines_scripts`` makes one for all of them, named ``label``)."""
        out = []
        for rel in relatives:
            with open(script_path(rel), encoding="utf-8") as f:
                out.append((cls(f.read(), script_name=rel, options=options), [rel]))
        return out

    @classmethod
    @abc.abstractmethod
    def available(cls):
        """Return None when the engine can run here, else the reason it cannot."""

    @classmethod
    @abc.abstractmethod
    def version(cls):
        """The engine's version string (raises EngineUnavailable if absent)."""

    @abc.abstractmethod
    def start(self):
        """Compile the script, attach its probes and begin tracing."""

    @abc.abstractmethod
    def snapshot(self):
        """Return a Snapshot of every aggregation, cumulative since start."""

    @abc.abstractmethod
    def health(self):
        """Return the EngineHealth counters (cumulative)."""

    @abc.abstractmethod
    def is_alive(self):
        """True while the script is running and can be snapshotted."""

    @abc.abstractmethod
    def stop(self):
        """Stop tracing and release every kernel resource; idempotent."""

    def forget(self, first_keys):
        """Delete the rows whose first key is in ``first_keys`` (zones that are
        gone, their last values read): the number of map keys deleted, or
        None when the rows stay (an engine that cannot delete: the default)."""
        return None

    def output(self):
        """Text the program printed (printf and the like), oldest first."""
        return []

    def close(self):
        self.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
