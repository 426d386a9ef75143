"""``make run`` (tools/run-main-job): a port in use is one line and exit
status 1, not a crash loop; each run has its own configuration and log.

Root: the job starts ceilometer-polling with the real engine.
"""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(REPO, "tools", "run-main-job")
RUNS = os.path.join(os.environ.get("SMARTOS_TELEMETRY_CACHE", "/var/cache/smartos-telemetry"),
                    "run")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_dirs():
    return set(os.listdir(RUNS)) if os.path.isdir(RUNS) else set()


def start(port, log):
    return subprocess.Popen([JOB], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PORT": str(port), "DEMO": "0",
                                 "INTERVAL": "2"},
                            start_new_session=True)


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_port_in_use_is_one_line_and_exit_1_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = run_dirs()
        proc = subprocess.run([JOB], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PORT": str(port), "DEMO": "0"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("run: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert f"127.0.0.1:{port} is in use" in errors[0] and "PORT=" in errors[0]
    assert "starting ceilometer-polling" not in proc.stderr
    assert run_dirs() - before == set()  # nothing written, nothing started


def wait_for_line(path, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {path}: {open(path).read()[-2000:]}")


def test_two_runs_have_their_own_configuration_and_log(tmp_path):
    procs, ports, found = [], [], []
    try:
        for n in (1, 2):
            out = tmp_path / f"run{n}.out"
            ports.append(free_port())
            with open(out, "w") as log:
                procs.append(start(ports[-1], log))
            found.append(wait_for_line(out, r"log: (\S+/polling\.log)", 300).group(1))
        first, second = (os.path.dirname(p) for p in found)
        assert first != second
        for directory, port, proc in zip((first, second), ports, procs, strict=True):
            conf = open(os.path.join(directory, "ceilometer.conf")).read()
            assert f"log_file = {directory}/polling.log" in conf
            assert f"prometheus_listen_addresses = 127.0.0.1:{port}\n" in conf
            assert f"cfg_file = {directory}/polling.yaml" in conf
            assert proc.poll() is None  # both run
    finally:
        for proc in procs:
            stop(proc)
    assert all(proc.returncode is not None for proc in procs)
