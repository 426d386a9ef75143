"""An agent restart on the real kernel: ``smartos-telemetry poll`` twice, one
state file, a zone making refused TCP connects; the second agent's total
goes on from the first's.

Root, real kernel, the default engine (never skipped).
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest
from linux_workloads import python_in, scratch_cgroups

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METER = "network.tcp.connect.failures"
REFUSED = """
import socket
closed = socket.socket()
closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
for _ in range({n}):
    s = socket.socket()
    try:
        s.connect(closed.getsockname())
    except ConnectionRefusedError:
        pass
    s.close()
"""


class Agent:
    """One ``poll`` process (one agent), its JSON samples read as they come."""

    def __init__(self, conf):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartos_telemetry.cli.main", "poll", "--json",
             "--interval", "2", "--config-file", str(conf), "--meter", METER,
             "--meter", "telemetry.engine.drops"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)

    def next_cycle(self, timeout=120):
        """The samples of the next printed cycle (it ends with the host's drops)."""
        deadline, samples = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            if not self.selector.select(timeout=1):
                continue
            line = self.proc.stdout.readline()
            assert line, "the agent exited"
            sample = json.loads(line)
            samples.append(sample)
            if sample["name"] == "telemetry.engine.drops":
                return samples
        raise AssertionError("no cycle printed in time")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)


def total(samples, resource):
    found = [s["volume"] for s in samples if s["name"] == METER and s["resource_id"] == resource]
    return found[-1] if found else None


def refuse(path, n):
    proc = python_in(path, REFUSED.format(n=n))
    assert proc.wait(timeout=60) == 0


def test_a_restarted_agent_goes_on_from_the_last_total(tmp_path):
    with scratch_cgroups("tenant") as cg:
        parent = "/" + os.path.basename(cg[""])
        conf = tmp_path / "ceilometer.conf"
        conf.write_text(f"[DEFAULT]\nhost = st-test-cn1\n[smartos]\nplain_parents = {parent}\n"
                        f"state_file = {tmp_path / 'state.json'}\n")
        resource = "st-test-cn1:cgroup:tenant"
        first = Agent(conf)
        try:
            first.next_cycle()  # the engine runs
            refuse(cg["tenant"], 40)
            before = None
            while before is None:
                before = total(first.next_cycle(), resource)
        finally:
            first.stop()
        assert before >= 40

        second = Agent(conf)  # a new agent, a new engine counting from zero
        try:
            second.next_cycle()
            refuse(cg["tenant"], 25)
            after = None
            while after is None:
                after = total(second.next_cycle(), resource)
        finally:
            second.stop()
    # the first agent's total is the base: without the state file this was ~25
    assert after >= before + 25
    assert after < before + 25 + 10  # and nothing of the first agent counted twice
