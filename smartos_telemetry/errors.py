"""Typed errors raised by smartos-telemetry.

Every error names what went wrong and, where there is one, the fix.  Engines
raise these and never a bare ``RuntimeError``, so the polling agent can tell
a bad script (fix the script) from a missing engine (install it) from a dead
engine (restart it) and keep polling everything else.
"""


class TelemetryError(Exception):
    """Base class of every error this package raises on purpose."""


class EngineUnavailable(TelemetryError):
    """The engine cannot run on this host (not installed, no privileges).

    ``reason`` says why; ``fix`` says what the operator can do about it.
    """

    def __init__(self, engine, reason, fix=None):
        self.engine = engine
        self.reason = reason
        self.fix = fix
        message = f"{engine} not available: {reason}"
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)


class ScriptError(TelemetryError):
    """A script was refused by the engine's compiler or probe matcher.

    Carries the engine's own message and, where the engine reports it, the
    line (and column) of the script at fault.
    """

    def __init__(self, engine, message, script=None, line=None, column=None):
        self.engine = engine
        self.engine_message = message
        self.script = script
        self.line = line
        self.column = column
        where = script or "script"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{engine} could not compile {where}: {message}")


class ScriptCompileError(ScriptError):
    """Syntax or type error in a D or bpftrace program."""


class ProbeNotFound(ScriptError):
    """The program names a probe this host does not have."""


class EngineDied(TelemetryError):
    """A running engine stopped on its own (aborted, killed, exited).

    Its owner can start a new one; ``reason`` says what happened.
    """

    def __init__(self, engine, reason):
        self.engine = engine
        self.reason = reason
        super().__init__(f"{engine} stopped unexpectedly: {reason}")


class EngineOutputError(TelemetryError):
    """The engine produced output this package cannot decode."""


class EngineError(TelemetryError):
    """A call into a running engine failed; carries the engine's message."""

    def __init__(self, engine, message):
        self.engine = engine
        self.engine_message = message
        super().__init__(f"{engine}: {message}")


class ConfigError(TelemetryError):
    """An option or argument has a value this package cannot use."""
