"""The pollsters under the real ceilometer-polling, with the shipped config.

Root, real kernel, real bpftrace, real ceilometer 27 (runs in CI, never
skipped).  Each test starts ``ceilometer-polling --polling-namespaces
smartos`` with etc/ceilometer/polling.yaml (interval cut to a few seconds)
and the Prometheus exporter on a free loopback port, scrapes it, and stops
the agent by its PID.
"""

import os
import re
import shutil
import subprocess
import time

import pytest
from ceilometer_agent import (
    INTERVAL,
    Agent,
)
from linux_workloads import python_in, scratch_cgroups, stop

pytestmark = pytest.mark.root


FAILING_POLLSTER = '''
from ceilometer.polling import plugin_base


class Failing(plugin_base.PollsterBase):
    @property
    def default_discovery(self):
        return "local_host"

    def get_samples(self, manager, cache, resources):
        raise RuntimeError("this pollster always fails")
'''




def add_failing_plugin(site):
    """A package with one pollster that always raises, as a stevedore plugin."""
    site.mkdir()
    (site / "st_failing_pollster.py").write_text(FAILING_POLLSTER)
    info = site / "st_failing_pollster-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: st-failing-pollster\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[ceilometer.poll.smartos]\ntest.failing = st_failing_pollster:Failing\n")




def value(text, metric, resource):
    m = re.search(rf'^ceilometer_{metric}{{[^}}]*resource="{re.escape(resource)}"[^}}]*}} '
                  r"(\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def no_bpftrace_left(timeout=15):
    """True once no bpftrace runs (the agent's worker stops them as it exits)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["pgrep", "-x", "bpftrace"], capture_output=True, text=True)
        if not out.stdout.strip():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def test_zone_meters_reach_the_prometheus_exporter(tmp_path):
    with scratch_cgroups("tenant-a") as cg:
        parent = "/" + os.path.basename(cg[""])
        # p50 beside the default statistics, to check it against p99
        agent = Agent(tmp_path, f"plain_parents = {parent}\n"
                      "distribution_statistics = p50,p99,count,sum\n")
        hogs = [python_in(cg["tenant-a"], "while True: pass") for _ in range(3)]
        try:
            resource = "st-test-cn1:cgroup:tenant-a"
            text = agent.wait_for(rf'^ceilometer_cpu_runqueue_latency_p99{{.*resource="{resource}"')
            text = agent.wait_for(r"^ceilometer_telemetry_engine_drops{")
            # the first poll comes right after the engine attached (libbpf
            # attaches in a tenth of a second): its count may be a few
            # events; a later poll has the hogs' time slices
            text = agent.wait_until(
                lambda t: (value(t, "cpu_runqueue_latency_count", resource) or 0) >= 10)
        finally:
            stop(*hogs)
            agent.stop()
    p50 = value(text, "cpu_runqueue_latency_p50", resource)
    p99 = value(text, "cpu_runqueue_latency_p99", resource)
    count = value(text, "cpu_runqueue_latency_count", resource)
    assert 0 < p50 <= p99 and p99 >= 1_000_000  # 3 hogs on 2 CPUs: ms-long waits
    assert count >= 10
    assert 'resource_name="tenant-a"' in text
    log = agent.log_text()
    assert "Traceback" not in log
    # the kstat pollsters (SmartOS only) are skipped here without an ERROR that
    # lists every zone
    assert "Prevent pollster" not in log and "Zone(" not in log
    assert no_bpftrace_left()


def test_a_failing_pollster_leaves_the_others_running(tmp_path):
    site = tmp_path / "site"
    add_failing_plugin(site)
    agent = Agent(tmp_path, extra_meters=["test.failing"],
                  env={"PYTHONPATH": str(site)})
    try:
        agent.wait_for(r"^ceilometer_telemetry_engine_errors{")
        time.sleep(2 * INTERVAL)
        assert agent.proc.poll() is None
        log = agent.log_text()
    finally:
        agent.stop()
    assert log.count("this pollster always fails") >= 2  # tried every cycle
    assert "Continue after error from test.failing" in log
    assert no_bpftrace_left()


def test_a_missing_engine_is_one_clear_log_line_and_no_crash_loop(tmp_path):
    # this host has no libdtrace: asking for it must not take the agent down
    assert shutil.which("dtrace") is None
    agent = Agent(tmp_path, "engine = dtrace\n")
    try:
        deadline = time.monotonic() + 60
        while "cannot trace" not in agent.log_text() and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3 * INTERVAL)
        assert agent.proc.poll() is None, "the agent died"
        log = agent.log_text()
    finally:
        agent.stop()
    # logged once: a worker that crash-looped would log it again on every start
    lines = [line for line in log.splitlines() if "cannot trace" in line]
    assert len(lines) == 1, lines
    assert "dtrace not available" in lines[0] and "smartos-telemetry check" in lines[0]
    assert "Prevent pollster" not in log and "Zone(" not in log  # no zone dumps
