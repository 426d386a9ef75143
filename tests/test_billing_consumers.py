"""Monitoring and billing with OpenStack's own consumers, for real.

Root, real kernel, real cgroups; the full local stack (``tools/fullstack``:
PostgreSQL, RabbitMQ, Gnocchi 4.7, both ceilometer agents) and, from
``tools/consumers``, Aodh 23 (aodh-api, aodh-evaluator) and CloudKitty 25
(cloudkitty-processor) in their own cached venvs, on the stack's PostgreSQL,
reading the stack's Gnocchi with basic auth.  Runs in CI, never skipped.

Three zones below one scratch parent: ``busy`` (three CPU hogs on this
two-CPU host: its tasks wait milliseconds for a CPU), ``quiet`` (one sleeper
that wakes every 10 ms under SCHED_FIFO, so that its waits stay far below a
millisecond whatever else loads the host) and ``billed`` (a workload that
connects and burns CPU when told to), which no platform knows an owner of:
an owner rule (``[smartos] owners_file``) gives it project BILLED, the
default rule every other zone project OTHERS.

* Aodh: a ``gnocchi_resources_threshold`` alarm per zone on
  ``cpu.runqueue.latency.p99`` above 1 ms (aggregation ``max``, granularity
  60: the gauge policy's) -- ``busy`` goes to ``alarm``, ``quiet`` to
  ``ok``, each with the value Gnocchi holds.  An alarm asking for an
  aggregation method the policy lacks is accepted by aodh-api and stays at
  ``insufficient data`` with no reason given (Aodh: an aggregation Gnocchi
  answers 404 for is "insufficient data", and a transition from that state
  to itself records nothing), while Gnocchi answers 404 for that method;
  the test pins that down (tests/test_consumer_configs.py checks that the
  shipped alarms ask only for methods their metric's policy has).
* CloudKitty: the shipped ``etc/cloudkitty/metrics.yml`` (its period cut to
  a minute), flat hashmap prices; N loopback connects and a CPU burn in
  ``billed`` inside one rating period are rated under BILLED with exactly N
  connects and the CPU time its cgroup counted, and nothing of ``billed``
  under OTHERS nor of the other zones under BILLED.

Everything the test starts is stopped by PID at the end (``tools/consumers
down``, ``tools/fullstack down``, the workloads), and the test checks that
nothing it started runs or listens.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from fullstack_helpers import (
    FULLSTACK,
    REPO,
    free_ports,
    gnocchi,
    kill_left,
    listeners,
    read_pids,
    stack_down,
    stack_up,
)
from gnocchiclient import exceptions as gnocchi_exceptions
from linux_workloads import (
    loopback_acceptor,
    python_in,
    scratch_cgroups,
    start_in,
    stop,
)

pytestmark = pytest.mark.root

CONSUMERS = os.path.join(REPO, "tools", "consumers")
SHIPPED_METRICS = os.path.join(REPO, "etc", "cloudkitty", "metrics.yml")
RESOURCES = os.path.join(REPO, "smartos_telemetry", "gnocchi", "resources.yaml")
HOST = "st-consumers-cn1"
INTERVAL = 5  # polling, s
EVALUATION_INTERVAL = 5  # aodh-evaluator, s
PERIOD = 60  # CloudKitty's rating period: the archive policies' finest granularity
BILLED = uuid.uuid4().hex  # keystone-style project ids (32 hex)
OTHERS = uuid.uuid4().hex
P99_THRESHOLD = 1_000_000  # ns
WARM_UP_CONNECTS = 5
CONNECTS = 40
BURN_S = 1.5
CONNECT_PRICE = 0.01
CPU_PRICE = 0.25

#: the billed zone's workload: on "work N S", N connects and S seconds of
#: CPU, then "done"; idle (blocked on stdin) in between
BILLED_WORKLOAD = """
import socket, sys, time
port = int(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    _, n, seconds = line.split()
    for _ in range(int(n)):
        socket.create_connection(("127.0.0.1", port)).close()
    end = time.process_time() + float(seconds)
    while time.process_time() < end:
        pass
    print("done", flush=True)
"""

class Stack:
    def __init__(self, env, cgroups, billed):
        self.env = env
        self.cgroups = cgroups
        self.billed = billed
        self.gnocchi = gnocchi(f"http://127.0.0.1:{env['GNOCCHI_PORT']}")
        self.aodh_url = f"http://127.0.0.1:{env['AODH_PORT']}"

    def consumers(self, *args, timeout=300):
        out = subprocess.run([CONSUMERS, *args], env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    def choose_rating_period(self):
        """The period CloudKitty is to rate first: the next whole minute with
        polls left in this one (the counters' totals before it) and time to
        register it as the projects' start."""
        now = time.time()
        start = now - now % PERIOD + PERIOD
        if start - now < 3 * INTERVAL:
            start += PERIOD
        iso = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat()
        self.consumers("scope", iso, BILLED, OTHERS)
        assert time.time() < start, "the scopes were registered too late"
        self.rating_start = start

    def work(self, connects, seconds):
        """The billed zone's workload: ``connects`` connects, ``seconds`` of CPU."""
        self.billed.stdin.write(f"work {connects} {seconds}\n")
        self.billed.stdin.flush()
        assert self.billed.stdout.readline().strip() == "done"

    def log(self, name):
        path = os.path.join(self.env["STACK_DIR"], "consumers", "log", f"{name}.log")
        return open(path).read()[-3000:] if os.path.exists(path) else ""

    def resource(self, zone):
        return self.gnocchi.resource.get("smartos_zone", f"{HOST}:cgroup:{zone}")

    def aodh(self, method, path, body=None):
        # noauth: the caller says who it is; an operator's project, admin role
        req = urllib.request.Request(
            self.aodh_url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "X-User-Id": "operator",
                     "X-Project-Id": OTHERS, "X-Roles": "admin"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


@pytest.fixture(scope="module")
def stack():
    # Debian packages and the Gnocchi, Aodh and CloudKitty venvs: built once, cached
    subprocess.run([FULLSTACK, "setup"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([CONSUMERS, "setup"], check=True, stdout=subprocess.DEVNULL)
    stack_dir = tempfile.mkdtemp(prefix="st-consumers-", dir="/var/tmp")
    ports = free_ports(6)
    env = {**os.environ, "STACK_DIR": stack_dir, "INTERVAL": str(INTERVAL),
           "STACK_HOST": HOST, "EVALUATION_INTERVAL": str(EVALUATION_INTERVAL),
           "RATING_PERIOD": str(PERIOD), **dict(zip(
               ("GNOCCHI_PORT", "PG_PORT", "AMQP_PORT", "EPMD_PORT", "DIST_PORT",
                "AODH_PORT"), map(str, ports), strict=True))}
    env["CLOUDKITTY_METRICS"] = SHIPPED_METRICS
    procs, stack_pids, consumer_pids = [], {}, {}
    downs = []
    try:
        with scratch_cgroups("busy", "quiet", "billed") as cg, loopback_acceptor() as port:
            parent = "/" + os.path.basename(cg[""])
            owners = os.path.join(stack_dir, "owners.yaml")
            with open(owners, "w") as f:
                yaml.safe_dump({"rules": [{"path": f"{parent}/billed", "project_id": BILLED}],
                                "default": {"project_id": OTHERS}}, f)
            env.update(PLAIN_PARENTS=parent, OWNERS_FILE=owners)
            billed = start_in(cg["billed"], [sys.executable, "-c", BILLED_WORKLOAD, str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(billed)
            assert billed.stdout.readline().strip() == "ready"
            try:
                up, stack_pids = stack_up(env)
                assert up.returncode == 0, up.stderr[-3000:]
                s = Stack(env, cg, billed)
                # Aodh starts while CloudKitty's database and prices are set up
                aodh = subprocess.Popen([CONSUMERS, "up", "aodh"], env=env, text=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                try:
                    s.consumers("price", *(str(x) for pair in prices().items() for x in pair))
                finally:
                    _, err = aodh.communicate(timeout=300)
                assert aodh.returncode == 0, err[-3000:]
                # the hogs once the stack is up: they would slow its start-up
                procs += [python_in(cg["busy"], "while True: pass") for _ in range(3)]
                procs.append(start_in(cg["quiet"], [
                    "chrt", "-f", "1", sys.executable, "-c",
                    "import time\nwhile True: time.sleep(0.01)"]))
                # so that the billed zone's counters have measures before the
                # rated period (its connect counter exists from its first connect)
                s.work(WARM_UP_CONNECTS, 0.1)
                s.choose_rating_period()
                yield s
            finally:
                stop(*procs)  # before the zones' cgroups are removed
                consumer_pids = read_pids(os.path.join(stack_dir, "consumers"))
                for tool in (CONSUMERS, FULLSTACK):
                    downs.append(stack_down(env, tool))
                stack_pids = stack_pids or read_pids(stack_dir)
    finally:
        left = kill_left({**stack_pids, **consumer_pids})
        shutil.rmtree(stack_dir, ignore_errors=True)
    for down in downs:
        assert down.returncode == 0, down.stderr[-3000:]
    assert {"aodh-api", "aodh-evaluator"} <= set(consumer_pids)
    assert not left, f"left running after down: {left}"
    assert not listeners(ports), listeners(ports)


# -- Aodh ---------------------------------------------------------------------------

def p99_alarm(zone, aggregation="max"):
    return {
        "name": f"runq-p99-{zone}-{aggregation}",
        "type": "gnocchi_resources_threshold",
        "gnocchi_resources_threshold_rule": {
            "metric": "cpu.runqueue.latency.p99",
            "resource_type": "smartos_zone",
            "resource_id": f"{HOST}:cgroup:{zone}",
            "aggregation_method": aggregation,
            "granularity": 60,
            "evaluation_periods": 1,
            "comparison_operator": "gt",
            "threshold": P99_THRESHOLD,
        },
    }


def wait_for_states(stack, alarm_ids, wanted, timeout=120):
    """``{alarm_id: alarm}`` once each alarm in ``wanted`` is in its state."""
    deadline = time.monotonic() + timeout
    while True:
        alarms = {}
        for alarm_id in alarm_ids:
            status, alarms[alarm_id] = stack.aodh("GET", f"/v2/alarms/{alarm_id}")
            assert status == 200, alarms[alarm_id]
        if all(alarms[a]["state"] == state for a, state in wanted.items()):
            return alarms
        if time.monotonic() > deadline:
            raise AssertionError(
                f"alarms not in {wanted} after {timeout} s: "
                f"{ {a: (x['state'], x['state_reason']) for a, x in alarms.items()} }\n"
                f"evaluator log:\n{stack.log('aodh-evaluator')}")
        time.sleep(2)


def test_aodh_alarms_on_the_busy_zone_and_not_the_quiet_one(stack):
    ids = {}
    for zone, aggregation in (("busy", "max"), ("quiet", "max"), ("busy", "last")):
        status, alarm = stack.aodh("POST", "/v2/alarms", p99_alarm(zone, aggregation))
        # aodh-api checks the method against Gnocchi's list of all methods,
        # not against the metric's policy: `last` is accepted too
        assert status == 201, alarm
        ids[zone, aggregation] = alarm["alarm_id"]
    busy, quiet, lacking = ids["busy", "max"], ids["quiet", "max"], ids["busy", "last"]
    alarms = wait_for_states(stack, list(ids.values()), {busy: "alarm", quiet: "ok"})

    # each verdict is on the value Gnocchi holds for that zone's p99
    for alarm_id, zone, above in ((busy, "busy", True), (quiet, "quiet", False)):
        status, history = stack.aodh("GET", f"/v2/alarms/{alarm_id}/history")
        assert status == 200, history
        changes = [json.loads(h["detail"]) for h in history
                   if h["type"] == "state transition"]
        assert changes and changes[0]["state"] == alarms[alarm_id]["state"], history
        reason = alarms[alarm_id]["state_reason"]
        assert "most recent: " in reason, alarms[alarm_id]
        value = float(reason.rsplit(":", 1)[1])
        assert (value > P99_THRESHOLD) is above, (zone, reason)
        points = stack.gnocchi.metric.get_measures(
            "cpu.runqueue.latency.p99", resource_id=stack.resource(zone)["id"],
            aggregation="max", granularity=60, refresh=True)
        # the minute's max as it was then: polls since may have raised it
        assert points and value <= max(v for _, _, v in points), (zone, value, points)

    # the alarm whose method the gauge policy lacks: Gnocchi refuses the
    # method outright, and Aodh leaves the alarm where it started, saying
    # nothing -- the silent failure; our shipped alarms never ask for one
    with pytest.raises(gnocchi_exceptions.NotFound, match="last"):
        stack.gnocchi.metric.get_measures(
            "cpu.runqueue.latency.p99", resource_id=stack.resource("busy")["id"],
            aggregation="last", granularity=60)
    silent = alarms[lacking]
    assert silent["state"] == "insufficient data"
    assert silent["state_reason"] == "Not evaluated yet", silent
    status, history = stack.aodh("GET", f"/v2/alarms/{lacking}/history")
    assert status == 200 and not [h for h in history if h["type"] == "state transition"]


# -- CloudKitty ----------------------------------------------------------------------

def cgroup_usage_usec(path):
    with open(os.path.join(path, "cpu.stat")) as f:
        return next(int(line.split()[1]) for line in f if line.startswith("usage_usec "))


def measure_at(stack, zone, metric, when):
    """The zone's stored ``max`` of ``metric`` for the minute starting ``when``."""
    points = stack.gnocchi.metric.get_measures(
        metric, resource_id=stack.resource(zone)["id"], aggregation="max",
        granularity=60, refresh=True)
    return {ts.timestamp(): v for ts, _, v in points}.get(when)


def wait_until(predicate, timeout, what, interval=1.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def rated(stack, project):
    return [json.loads(line) for line in stack.consumers("rated", project).splitlines()]


def zone_entry(metrics, name):
    """The entry of ``name`` that rates zones (``smartos_zone``) in a
    CloudKitty metrics file (one entry, or a list of them with alt_names)."""
    entries = metrics["metrics"][name]
    entries = entries if isinstance(entries, list) else [entries]
    return next(e for e in entries if e["extra_args"]["resource_type"] == "smartos_zone")


def factor(entry):
    num, _, den = str(entry.get("factor", 1)).partition("/")
    return float(num) / float(den or 1)


#: CloudKitty 25's SQL storage keeps a quantity in Numeric(15, 5)
#: (cloudkitty/storage/v1/sqlalchemy/models.py, RatedDataFrame.qty)
QTY_QUANTUM = 0.00001


def prices():
    """``{rated metric (alt_name): flat price}``: connects and CPU time of zones."""
    with open(SHIPPED_METRICS) as f:
        shipped = yaml.safe_load(f)
    return {zone_entry(shipped, "network.tcp.connect.latency.count")["alt_name"]:
            CONNECT_PRICE, zone_entry(shipped, "cpu")["alt_name"]: CPU_PRICE}


def test_cloudkitty_rates_a_zone_under_its_owner_rule_project(stack):
    billed = stack.resource("billed")
    assert billed["project_id"] == BILLED  # the owner rule, through the agent
    assert stack.resource("busy")["project_id"] == OTHERS  # the default rule
    wait_until(lambda: {"network.tcp.connect.latency.count", "cpu"}
               <= set(stack.resource("billed")["metrics"]), 60,
               "the billed zone's counters in Gnocchi")

    services = prices()
    # what CloudKitty runs with: the shipped file, force_granularity = PERIOD
    with open(os.path.join(stack.env["STACK_DIR"], "consumers", "metrics.yml")) as f:
        metrics = yaml.safe_load(f)
    connect_entry = zone_entry(metrics, "network.tcp.connect.latency.count")
    cpu_entry = zone_entry(metrics, "cpu")
    for entry in (connect_entry, cpu_entry):
        assert entry["extra_args"]["force_granularity"] == PERIOD

    # the rated period, chosen at set-up (the Aodh test runs meanwhile), or
    # the next one if that has begun
    if time.time() > stack.rating_start - 2:
        stack.choose_rating_period()
    start = stack.rating_start
    iso = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat()
    time.sleep(max(0.0, start + 1 - time.time()))

    # inside the period: N connects and a CPU burn, done a few seconds in,
    # so that every later poll of the period sees the same totals
    cpu_before = cgroup_usage_usec(stack.cgroups["billed"])
    stack.work(CONNECTS, BURN_S)
    cpu_after = cgroup_usage_usec(stack.cgroups["billed"])
    assert time.time() < start + PERIOD / 2

    # the period over and its last polls in Gnocchi, CloudKitty starts and
    # rates it at once (a period is rated only once it has ended)
    wait_until(lambda: time.time() > start + PERIOD + INTERVAL, PERIOD + 30,
               "the end of the rated period")
    before = measure_at(stack, "billed", "network.tcp.connect.latency.count", start - 60)
    assert before is not None and before >= WARM_UP_CONNECTS
    stack.consumers("up", "cloudkitty")
    wait_until(lambda: {f["metric"] for f in rated(stack, BILLED)
                        if f["begin"].startswith(iso[:19])} >= set(services), 90,
               "BILLED's rated dataframes", interval=2)

    frames = rated(stack, BILLED)
    for frame in frames:  # BILLED pays for its own zone only
        assert frame["project_id"] == BILLED
        assert frame["desc"]["project_id"] == BILLED
        assert frame["desc"]["id"] == billed["id"], frame
    period = {f["metric"]: f for f in frames if f["begin"].startswith(iso[:19])}
    connects = period[connect_entry["alt_name"]]
    # the stored max at the end of the period less the one at the end of the
    # minute before (the warm-up's): exactly the N connects made in between
    assert float(connects["qty"]) == CONNECTS, connects
    assert connects["price"] == pytest.approx(CONNECTS * CONNECT_PRICE), connects
    # CPU: what the zone's cgroup counted across the burst (the zone idles
    # on either side of it), in the file's unit; the price is computed from
    # the quantity before the storage rounds it
    cpu = period[cpu_entry["alt_name"]]
    burnt = (cpu_after - cpu_before) * 1000 * factor(cpu_entry)
    assert cpu["price"] / CPU_PRICE == pytest.approx(burnt, rel=0.01), (cpu, burnt)
    assert abs(float(cpu["qty"]) - burnt) <= QTY_QUANTUM / 2 + 0.01 * burnt, (cpu, burnt)
    assert burnt >= BURN_S * 1e9 * factor(cpu_entry)

    # the other zones are rated under OTHERS, never the billed one
    others = rated(stack, OTHERS)
    assert billed["id"] not in {f["desc"]["id"] for f in others}
    assert stack.resource("busy")["id"] in {f["desc"]["id"] for f in others}, others
