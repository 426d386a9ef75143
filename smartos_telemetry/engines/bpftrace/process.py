"""The bpftrace child process: find it, spawn it, read it, restart it, stop it.

Guarantees (tests/test_bpftrace_engine.py checks them against real bpftrace):

* the child runs in its own session (process group) and gets SIGKILL from
  the kernel when the thread that spawned it dies (``PR_SET_PDEATHSIG``),
  so no bpftrace outlives the agent, even after ``kill -9`` of the agent.
  That thread is the supervisor thread, which lives exactly as long as the
  child is wanted;
* ``stop()`` sends SIGINT and SIGCONT (bpftrace prints its maps, detaches
  and exits; a stopped child is woken to do so), then SIGKILL to the whole
  group after ``stop_timeout`` seconds;
* a child that exits on its own is reported to the owner, which decides
  whether to restart it; restarts wait with exponential backoff, back to
  the initial delay after a child the owner marked healthy;
* an ``atexit`` hook stops every child still running when Python exits;
* nothing is written to disk: the script is handed over as an inherited
  memfd (``/dev/fd/N``) and stderr goes to another, so an agent that ends
  by ``os._exit`` (cotyledon does) or by a signal leaves no work files.

Where tracefs is not mounted (some minimal VM images), the child runs in a
private mount namespace that mounts it (``unshare``), so nothing on the host
changes.
"""

import atexit
import ctypes
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
import weakref

from oslo_log import log as logging

from smartos_telemetry.errors import EngineUnavailable

LOG = logging.getLogger(__name__)

TRACEFS = "/sys/kernel/tracing"
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_live = weakref.WeakSet()


def find_bpftrace(path=None):
    """The bpftrace executable, or None."""
    return shutil.which(path or "bpftrace")


def parse_version(text):
    """``"bpftrace v0.17.0"`` -> ``(0, 17, 0)``; None when there is no version."""
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g or 0) for g in m.groups()) if m else None


_versions = {}


def bpftrace_version(binary):
    """``(text, (major, minor, patch))`` of ``binary --version``; cached."""
    if binary not in _versions:
        try:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineUnavailable("bpftrace", f"cannot run {binary} --version: {exc}") from exc
        _versions[binary] = (out, parse_version(out))
    return _versions[binary]


def tracefs_mounted():
    return os.path.isdir(os.path.join(TRACEFS, "events"))


def command(binary, args):
    """argv running ``binary args``, in a mount namespace with tracefs if needed."""
    if tracefs_mounted():
        return [binary, *args]
    unshare = shutil.which("unshare")
    if not unshare:
        raise EngineUnavailable("bpftrace", f"tracefs is not mounted at {TRACEFS}",
                                fix=f"mount -t tracefs nodev {TRACEFS}, or install util-linux")
    # unshare and sh exec in place: the pid stays bpftrace's
    return [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            f'mount -t tracefs nodev {TRACEFS} && exec "$@"', "sh", binary, *args]


def _die_with_parent(parent_pid):
    def preexec():
        # async-signal-safe enough: one prctl through a pre-resolved pointer
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl
            os._exit(1)
    return preexec


def spawn(argv, env, stderr, pass_fds=()):
    """Start ``argv`` in its own session, killed with its parent thread."""
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env,
        start_new_session=True, close_fds=True, pass_fds=pass_fds,
        preexec_fn=_die_with_parent(os.getpid()))


def memfd_with(name, text):
    """A memfd holding ``text`` (the child opens it as ``/dev/fd/N``)."""
    fd = os.memfd_create(name, 0)  # not CLOEXEC: the child inherits it
    try:
        os.write(fd, text.encode("utf-8"))
    except OSError:
        os.close(fd)
        raise
    return fd


def signal_group(proc, sig):
    """Send ``sig`` to the child's process group; False if it is gone."""
    if proc is None or proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, sig)
        return True
    except ProcessLookupError:
        return False


class Supervisor:
    """Runs one command as a child, again and again, until stopped.

    Callbacks run on the supervisor thread:

    * ``on_spawn(proc)`` after each start;
    * ``on_line(bytes)`` for each line of stdout;
    * ``on_tick()`` every ``tick_interval`` seconds while a child runs;
    * ``on_exit(returncode, stderr_text, uptime)`` when a child has exited on
      its own; return True to restart it (after backoff), False to give up.

    ``pass_fds`` are inherited by every child (the script's memfd).  The
    owner sets :attr:`healthy` once a child has worked; the next restart
    then waits ``backoff_initial`` again.
    """

    def __init__(self, argv, env, on_line, on_exit, on_spawn=None,
                 on_tick=None, tick_interval=None, backoff_initial=1.0, backoff_max=60.0,
                 stop_timeout=5.0, name="bpftrace", pass_fds=()):
        self.argv = argv
        self.env = env
        self.pass_fds = tuple(pass_fds)
        self.healthy = False
        self.on_line = on_line
        self.on_exit = on_exit
        self.on_spawn = on_spawn or (lambda proc: None)
        self.on_tick = on_tick
        self.tick_interval = tick_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stop_timeout = stop_timeout
        self.proc = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{name}-supervisor",
                                        daemon=True)

    def start(self):
        _live.add(self)
        self._thread.start()

    @property
    def pid(self):
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def signal(self, sig):
        with self._lock:
            return signal_group(self.proc, sig)

    def stop(self):
        """SIGINT, then SIGKILL after ``stop_timeout``; waits for the thread."""
        self._stopping.set()
        if self._thread.ident is None:
            return
        with self._lock:
            if signal_group(self.proc, signal.SIGINT):
                signal_group(self.proc, signal.SIGCONT)  # a stopped child must run to exit
        self._thread.join(self.stop_timeout)
        if self._thread.is_alive():
            # bpftrace's exit (detaching every probe) can stall for seconds
            LOG.warning("bpftrace pid %s had not exited %.0f s after SIGINT; killing it",
                        self.pid, self.stop_timeout)
            with self._lock:
                signal_group(self.proc, signal.SIGKILL)
            self._thread.join(self.stop_timeout)
        _live.discard(self)

    def _run(self):
        attempt = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            stderr = os.memfd_create("bpftrace-stderr", os.MFD_CLOEXEC)
            try:
                try:
                    with self._lock:
                        if self._stopping.is_set():
                            return
                        self.healthy = False
                        self.proc = spawn(self.argv, self.env, stderr, self.pass_fds)
                except OSError as exc:
                    self.on_exit(None, f"cannot start {self.argv[0]}: {exc}", 0.0)
                    return
                self.on_spawn(self.proc)
                self._read(self.proc)
                rc = self.proc.wait()
                uptime = time.monotonic() - started
                if self._stopping.is_set():
                    return
                stderr_text = _read_all(stderr)
            finally:
                os.close(stderr)
            if not self.on_exit(rc, stderr_text, uptime):
                return
            attempt = 0 if self.healthy or uptime > self.backoff_max else attempt + 1
            delay = min(self.backoff_max, self.backoff_initial * 2 ** max(attempt - 1, 0))
            LOG.warning("bpftrace exited (rc %s after %.1f s); restarting in %.1f s",
                        rc, uptime, delay)
            self._stopping.wait(delay)

    def _read(self, proc):
        fd = proc.stdout.fileno()
        pending = b""
        ticking = bool(self.on_tick and self.tick_interval)
        next_tick = time.monotonic() + (self.tick_interval or 0)
        while True:
            timeout = None
            if ticking:
                # ticks keep time whether or not the child writes: a child
                # that prints a stream of lines but never ends a round must
                # still be seen to hang
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + self.tick_interval
                    self.on_tick()
                timeout = max(0.0, next_tick - time.monotonic())
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self.on_line(line)
        if pending:
            self.on_line(pending)
        proc.stdout.close()


def _read_all(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)


@atexit.register
def _stop_all():
    for sup in list(_live):
        sup.stop()
