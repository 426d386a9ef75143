"""Backpressure, for real: the ``smartos-gnocchi://`` publisher against the
full stack's Gnocchi (``tools/fullstack up`` with ``AGENTS=0``: PostgreSQL,
the Gnocchi API, metricd, our archive policies and resource types), with
the API stopped and started again by PID.

While the API is down every batch is lost -- ceilometer's gnocchi publisher
drops a batch it cannot post (it catches the error, logs the batch, and the
notification is acknowledged) -- and ours must say so once, not once per
batch or per resource, and count every lost sample.  Once the API is back:
one message saying so with the count, the count stored as
``telemetry.publish.failures`` on the agent's host resource with the first
batch Gnocchi takes (and only with that one: never counted twice), and a
zone's cumulative counter whole (its next sample carries the running total,
so billing loses nothing); the gauges of the lost batches are gone, as with
ceilometer.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from ceilometer import sample as ceilometer_sample
from fullstack_helpers import (
    FULLSTACK,
    free_ports,
    kill_left,
    listening,
    stack_down,
    stack_up,
)
from linux_workloads import pid_alive, wait_for
from oslo_utils import netutils

from smartos_telemetry.gnocchi import publisher as zone_publisher
from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade
from smartos_telemetry.polling.pollsters import zone_metadata, zone_resource_id
from smartos_telemetry.zones import Zone

pytestmark = pytest.mark.root

AGENT_HOST = "bp-notification-1"
ZONE = Zone(7, "tenant-bp", "cgroup", None, "/tenants/tenant-bp", (("project_id", "p-bp"),))
AUTH = ("admin", "")
PUBLISHER_LOG = zone_publisher.__name__


def samples(total, p99, when):
    rid = zone_resource_id("cn-bp", ZONE)
    meta = zone_metadata("cn-bp", ZONE)
    return [ceilometer_sample.Sample(
        name=name, type=kind, unit=unit, volume=volume, user_id="none", project_id="p-bp",
        resource_id=rid, resource_metadata=meta, timestamp=when.isoformat())
        for name, kind, unit, volume in (
            ("network.tcp.retransmits", "cumulative", "segment", total),
            ("cpu.runqueue.latency.p99", "gauge", "ns", p99))]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def at_least(self, level):
        return [r for r in self.records if r.levelno >= level]


def measures(endpoint, resource_type, resource_id, metric, aggregation):
    r = requests.get(f"{endpoint}/v1/resource/{resource_type}/{resource_id}/metric/{metric}/"
                     "measures", auth=AUTH, timeout=30,
                     params={"aggregation": aggregation, "refresh": "true", "granularity": 60})
    r.raise_for_status()
    return r.json()


def test_a_gnocchi_that_refuses_is_logged_once_counted_and_nothing_billed_is_lost():
    subprocess.run([FULLSTACK, "setup"], check=True, stdout=subprocess.DEVNULL)
    stack_dir = tempfile.mkdtemp(prefix="st-backpressure-", dir="/var/tmp")
    gnocchi_port, pg_port = free_ports(2)
    env = {**os.environ, "STACK_DIR": stack_dir, "AGENTS": "0", "STACK_HOST": AGENT_HOST,
           "GNOCCHI_PORT": str(gnocchi_port), "PG_PORT": str(pg_port)}
    endpoint = f"http://127.0.0.1:{gnocchi_port}"
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    pids, api = {}, None
    try:
        up, pids = stack_up(env)
        assert up.returncode == 0, up.stderr[-3000:]
        conf = gnocchi_upgrade.load_conf([os.path.join(stack_dir, "ceilometer",
                                                       "ceilometer.conf")])
        assert conf.host == AGENT_HOST
        publisher = zone_publisher.ZoneGnocchiPublisher(
            conf, netutils.urlsplit("smartos-gnocchi://?enable_filter_project=false"))
        handler.records.clear()  # what publishing logs, not loading the plugins
        t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
        publisher.publish_samples(samples(10, 1000.0, t0))  # Gnocchi up: stored
        assert publisher.failures.lost == 0 and not handler.at_least(logging.WARNING)

        # the API goes away: connections refused
        os.killpg(pids["gnocchi-api"], signal.SIGINT)
        assert wait_for(lambda: not listening(gnocchi_port) and not pid_alive(
            pids["gnocchi-api"]), 60)
        publisher.publish_samples(samples(20, 9e6, t0 + timedelta(minutes=1)))
        ours = [r for r in handler.at_least(logging.WARNING) if r.name == PUBLISHER_LOG]
        assert len(ours) == 1 and ours[0].levelno == logging.ERROR
        assert "did not take a batch of 2 samples" in ours[0].getMessage()
        assert zone_publisher.FAILURES_METER in ours[0].getMessage()
        # the rest is keystoneauth's retries of the first batch's connection
        first = handler.at_least(logging.WARNING)
        assert {r.name for r in first} == {PUBLISHER_LOG, "keystoneauth.session"}, \
            [r.getMessage()[:200] for r in first]
        assert len(first) <= 4
        t_failing = time.monotonic()
        for minute in (2, 3):
            publisher.publish_samples(samples(10 + 10 * minute, 9e6 + minute,
                                              t0 + timedelta(minutes=minute)))
        assert time.monotonic() - t_failing < 3  # one attempt each, no back-off
        assert (publisher.failures.failed_batches, publisher.failures.lost) == (3, 6)
        assert publisher.failures.failing and publisher.failures.pending == 6
        assert handler.at_least(logging.WARNING) == first  # nothing more while it fails

        # the API is back (as fullstack starts it; recorded so that down stops it)
        venv = subprocess.run([FULLSTACK, "venv"], capture_output=True, text=True,
                              check=True).stdout.strip()
        with open(os.path.join(stack_dir, "log", "gnocchi-api.log"), "ab") as log:
            api = subprocess.Popen([os.path.join(venv, "bin", "gnocchi-api"), "--config-file",
                                    os.path.join(stack_dir, "gnocchi", "gnocchi.conf")],
                                   stdout=log, stderr=log, start_new_session=True,
                                   cwd=stack_dir,
                                   env={**os.environ, "PATH": f"{venv}/bin:{os.environ['PATH']}"})
        pids["gnocchi-api"] = api.pid
        with open(os.path.join(stack_dir, "pids.json"), "w") as f:
            json.dump(pids, f)
        assert wait_for(lambda: listening(gnocchi_port), 60, interval=0.5)
        time.sleep(1)
        publisher.publish_samples(samples(50, 2000.0, t0 + timedelta(minutes=4)))
        publisher.publish_samples(samples(60, 2100.0, t0 + timedelta(minutes=5)))
        assert not publisher.failures.failing and publisher.failures.pending == 0
        loud = handler.at_least(logging.WARNING)[len(first):]
        assert len(loud) == 1 and loud[0].name == PUBLISHER_LOG, \
            [r.getMessage()[:200] for r in loud]
        assert "takes samples again; 3 batches (6 samples)" in loud[0].getMessage()

        # the count, once, on this agent's host resource
        lost = measures(endpoint, "host", AGENT_HOST, zone_publisher.FAILURES_METER, "max")
        # a zero with the first batch (nothing lost yet), then the 6
        assert [m[2] for m in lost] in ([0.0, 6.0], [6.0]), lost
        # billing: the counter's running total is whole; the lost minutes are gaps
        rid = requests.utils.quote(zone_resource_id("cn-bp", ZONE), safe="")
        total = measures(endpoint, "smartos_zone", rid, "network.tcp.retransmits", "max")
        assert [m[2] for m in total] == [10.0, 50.0, 60.0], total
        p99 = measures(endpoint, "smartos_zone", rid, "cpu.runqueue.latency.p99", "max")
        assert [m[2] for m in p99] == [1000.0, 2000.0, 2100.0], p99
    finally:
        root.removeHandler(handler)
        down = stack_down(env)
        kill_left(pids)
        if api is not None:
            api.wait(timeout=30)
        shutil.rmtree(stack_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr[-3000:]
