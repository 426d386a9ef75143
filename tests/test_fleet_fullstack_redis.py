"""``tools/fullstack`` with Gnocchi's distributed parts, for real:
``INCOMING=redis METRICD_WORKERS=2 AGENTS=0`` on free loopback ports.

Redis runs as the redis user on its own port, by the PID ``up`` recorded,
and holds Gnocchi's incoming storage (its sack configuration key); metricd
runs two processing workers; a measure posted to the API is processed;
``down`` stops Redis with the rest and leaves no process or listener.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest
import requests
from fullstack_helpers import FULLSTACK, free_ports, listening, stack_down, stack_up
from linux_workloads import pid_alive, wait_for

pytestmark = pytest.mark.root

AUTH = ("admin", "")


def proc_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def test_redis_incoming_and_two_metricd_workers_start_work_and_stop_by_pid():
    subprocess.run([FULLSTACK, "setup"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "INCOMING": "redis"})
    stack_dir = tempfile.mkdtemp(prefix="st-fleet-redis-", dir="/var/tmp")
    gnocchi_port, pg_port, redis_port = free_ports(3)
    env = {**os.environ, "STACK_DIR": stack_dir, "AGENTS": "0", "INCOMING": "redis",
           "METRICD_WORKERS": "2", "GNOCCHI_PORT": str(gnocchi_port),
           "PG_PORT": str(pg_port), "REDIS_PORT": str(redis_port)}
    endpoint = f"http://127.0.0.1:{gnocchi_port}"
    pids = {}
    try:
        up, pids = stack_up(env)
        assert up.returncode == 0, up.stderr[-3000:]
        assert set(pids) == {"postgresql", "redis", "gnocchi-api", "gnocchi-metricd"}
        redis_pid = pids["redis"]
        with open(f"/proc/{redis_pid}/cmdline", "rb") as f:
            title = f.read().decode()  # redis-server sets it to binary and address
        assert title.startswith("/usr/bin/redis-server 127.0.0.1:" + str(redis_port)), title
        assert proc_uid(redis_pid) == pwd.getpwnam("redis").pw_uid
        with open(os.path.join(stack_dir, "gnocchi", "gnocchi.conf")) as f:
            conf = f.read()
        assert "driver = redis" in conf and f"redis://127.0.0.1:{redis_port}/" in conf
        assert "workers = 2" in conf
        # Gnocchi keeps its sack configuration in the incoming storage
        assert subprocess.run(["redis-cli", "-p", str(redis_port), "exists", "gnocchi-config"],
                              capture_output=True, text=True, check=True).stdout.strip() == "1"
        status = requests.get(f"{endpoint}/v1/status", auth=AUTH, timeout=30).json()
        assert wait_for(lambda: len(requests.get(f"{endpoint}/v1/status", auth=AUTH,
                                                 timeout=30).json()["metricd"]["processors"])
                        == 2, 60, interval=1.0), status
        metric = requests.post(f"{endpoint}/v1/metric", auth=AUTH, timeout=30, json={
            "archive_policy_name": "smartos-telemetry-gauge"}).json()
        r = requests.post(f"{endpoint}/v1/metric/{metric['id']}/measures", auth=AUTH,
                          timeout=30, json=[{"timestamp": "2026-12-01T12:00:10", "value": 7.5}])
        assert r.status_code == 202, r.text

        def processed():  # without refresh: only what metricd has processed
            return requests.get(f"{endpoint}/v1/metric/{metric['id']}/measures", auth=AUTH,
                                timeout=30, params={"aggregation": "max", "granularity": 60,
                                                    "start": "2026-12-01T00:00:00"}).json()
        assert wait_for(lambda: processed() == [["2026-12-01T12:00:00+00:00", 60.0, 7.5]],
                        60, interval=0.5), processed()
    finally:
        down = stack_down(env)
        shutil.rmtree(stack_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not listening(redis_port) and not listening(gnocchi_port)
