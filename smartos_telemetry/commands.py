"""Run a host command and get its stdout, or one typed error naming it.

Shared by the SmartOS zone inventory (``vmadm``, ``zoneadm``) and the kstat
counters (``kstat -p``); neither owns the other.
"""

import os
import signal
import subprocess

from smartos_telemetry.errors import TelemetryError

_STDERR_TAIL = 400


class CommandFailed(TelemetryError):
    """A platform command could not give an answer.

    ``command``: the argv run; ``reason``: what happened; ``fix``: what the
    operator can do about it.
    """

    def __init__(self, command, reason, fix):
        self.command = list(command)
        self.reason = reason
        self.fix = fix
        super().__init__(f"`{' '.join(self.command)}` failed: {reason} (fix: {fix})")


def run_command(argv, timeout, fix):
    """stdout of ``argv`` as text; :class:`CommandFailed` if it cannot be had.

    The command runs in a session of its own, so a timeout kills everything
    it started (vmadm forks helpers that would otherwise hold the pipe open).
    """
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise CommandFailed(argv, f"cannot run {argv[0]}: {exc.strerror}", fix) from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise CommandFailed(argv, f"no answer within {timeout:g} s (killed)", fix) from None
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                  else f"exit status {proc.returncode}")
        raise CommandFailed(argv, status + (f": {tail}" if tail else ""), fix)
    return out.decode("utf-8", "replace")
