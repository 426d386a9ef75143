"""A real ceilometer-polling agent with the shipped configuration, for the
tests that poll through it."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


BIN = os.path.dirname(sys.executable)


INTERVAL = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """ceilometer-polling with the shipped config, stopped by PID."""

    def __init__(self, tmp_path, smartos_options="", extra_meters=(), env=None):
        self.port = free_port()
        self.log = tmp_path / "polling.log"
        polling = (open(os.path.join(REPO, "etc/ceilometer/polling.yaml")).read()
                   .replace("interval: 60", f"interval: {INTERVAL}"))
        for meter in extra_meters:
            polling = polling.replace("      - telemetry.engine.*",
                                      f"      - telemetry.engine.*\n      - {meter}")
        (tmp_path / "polling.yaml").write_text(polling)
        conf = tmp_path / "ceilometer.conf"
        conf.write_text(textwrap.dedent(f"""\
            [DEFAULT]
            host = st-test-cn1
            log_file = {self.log}
            [polling]
            cfg_file = {tmp_path / 'polling.yaml'}
            enable_notifications = false
            enable_prometheus_exporter = true
            prometheus_listen_addresses = 127.0.0.1:{self.port}
            [publisher_notifier]
            telemetry_driver = noop
            [smartos]
            state_file = {tmp_path / 'state.json'}
            """) + textwrap.dedent(smartos_options))
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "ceilometer-polling"), "--config-file", str(conf),
             "--polling-namespaces", "smartos"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True)

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    def wait_for(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()[-3000:]
            text = self.metrics()
            if re.search(pattern, text, re.MULTILINE):
                return text
            time.sleep(1)
        raise AssertionError(f"{pattern!r} never appeared; log:\n{self.log_text()[-3000:]}")

    def wait_until(self, predicate, timeout=60):
        """The exporter's text once ``predicate(text)`` holds."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()[-3000:]
            text = self.metrics()
            if predicate(text):
                return text
            time.sleep(1)
        raise AssertionError(f"never held; last metrics:\n{text[-3000:]}")

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
