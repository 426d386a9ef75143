"""Benchmark: how many zones one Gnocchi carries, on this machine, per
configuration of Gnocchi's own parts and of our metric shape.

A simulated fleet -- ``--hosts`` hosts x ``--zones`` zones, every zone a
plain cgroup with the Linux meters (the catalogue's libbpf meters and the
cgroup-v2 counters), every latency distribution busy -- is filed by the
real ``smartos-gnocchi://`` publisher (``ZoneGnocchiPublisher``, with the
shipped ``resources.yaml`` and its archive policies), one
``publish_samples`` call per host and poll, as ceilometer-agent-notification
makes one per host batch.  The samples are made as the pollsters make them:
``MeterIntervals.samples`` (which applies ``[smartos]
distribution_statistics``) and the pollsters' resource id, owner and
metadata.  Gnocchi is the full stack's (``tools/fullstack up`` with
``AGENTS=0``: PostgreSQL, Redis if asked, the API, metricd), started afresh
for each configuration on ports of its own and stopped by PID afterwards.

Time is compressed: poll ``k`` is stamped ``k * --interval`` seconds after
the first, and sent as soon as Gnocchi has processed the one before, so
that each metricd pass finds one new measure per metric -- what a metricd
that keeps up sees in real time.  Per configuration:

1. create: the first poll of every host (resources and metrics are made);
2. steady: ``--polls`` polls, each drained before the next: measures/s the
   API accepted, metrics and measures processed per second per metricd
   worker, and the CPU each component used per zone and poll, from
   ``/proc/<pid>/stat`` of the stack's recorded PIDs and their descendants
   (the metricd processing workers separately, by process title);
3. batched: ``--batch`` polls sent at once, then drained: what a
   ``metric_processing_delay`` of ``--batch`` intervals lets metricd do
   (several measures of a metric processed together);
4. the backlog (``/v1/status``) sampled every 0.5 s through all of it;
5. queries: one zone's p99 over an hour, and ``max`` across every zone's
   p99 (``/v1/aggregates``);
6. storage: two probe metrics, one per archive policy, given 8 days of
   points at 60 s (the 60 s archive then holds its full 7 days, as at steady
   state); their split files' bytes per point, extrapolated to a year of
   each policy (7 days at 60 s + 365 days at 1 h, per aggregation method):
   the zone's metrics x that.  Both the files' bytes and the file system's
   allocation (``st_blocks``: one small file per split and method).

CPU is counted net of idle: before the steady polls the stack sits idle
for ``--idle`` s, and what each component spends per second then (metricd
scans its sacks whatever the load) is taken off each phase's CPU for its
wall time.  The publisher's own CPU (this process: what
ceilometer-agent-notification would spend) is reported beside.

Capacity, "zones per metricd CPU": an interval ``T`` divided by the metricd
CPU seconds one zone costs per poll (steady: one measure per metric per
pass; batched: ``--batch`` per pass).

Configurations (``--configs``): ``file-1``, ``redis-1``, ``redis-2``,
``redis-4`` (incoming driver, metricd workers; every statistic of each
distribution) and ``lean-redis-2`` (``distribution_statistics =
p99,count,sum``, the default, and the gauge policy without ``min``);
``cheap-redis-2`` has the default statistics and the shipped policies.

Run:  $(tools/bootstrap --venv)/bin/python bench/fleet_gnocchi.py
      (about 13 minutes on this machine; --hosts 2 --zones 3 --polls 1
      --configs redis-2 for a quick look); writes
      bench/results/fleet_gnocchi.txt
"""

import argparse
import base64
import json
import math
import os
import random
import resource as rusage
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

import requests
import yaml
from ceilometer import sample as ceilometer_sample
from oslo_utils import netutils

from smartos_telemetry.gnocchi import publisher as zone_publisher
from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade
from smartos_telemetry.meters import catalogue
from smartos_telemetry.meters.intervals import MeterIntervals
from smartos_telemetry.polling import pollsters
from smartos_telemetry.zones import Zone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULLSTACK = os.path.join(REPO, "tools", "fullstack")
CACHE = os.environ.get("SMARTOS_TELEMETRY_CACHE", "/var/cache/smartos-telemetry")
CLK_TCK = os.sysconf("SC_CLK_TCK")
AUTH = {"Authorization": "basic " + base64.b64encode(b"admin:").decode()}
CHEAP_STATISTICS = ("p99", "count", "sum")

LEAN_GAUGE_METHODS = ("mean", "max")

#: name -> (incoming driver, metricd workers, distribution statistics, gauge
#: policy methods: None for resources.yaml's own)
CONFIGS = {
    "file-1": ("file", 1, catalogue.DISTRIBUTION_SUFFIXES, None),
    "redis-1": ("redis", 1, catalogue.DISTRIBUTION_SUFFIXES, None),
    "redis-2": ("redis", 2, catalogue.DISTRIBUTION_SUFFIXES, None),
    "redis-4": ("redis", 4, catalogue.DISTRIBUTION_SUFFIXES, None),
    "cheap-redis-2": ("redis", 2, CHEAP_STATISTICS, None),
    "lean-redis-2": ("redis", 2, CHEAP_STATISTICS, LEAN_GAUGE_METHODS),
}
DEFAULT_CONFIGS = ("file-1", "redis-1", "redis-2", "redis-4", "lean-redis-2")


def say(msg):
    print(f"fleet_gnocchi: {msg}", file=sys.stderr, flush=True)


# -- the stack ----------------------------------------------------------------------

class Stack:
    """One ``tools/fullstack`` Gnocchi (AGENTS=0) on ports of its own."""

    def __init__(self, name, incoming, workers, port_base, processing_delay):
        self.dir = os.path.join(CACHE, f"fleet-bench-{name}")
        self.env = {**os.environ, "STACK_DIR": self.dir, "AGENTS": "0",
                    "INCOMING": incoming, "METRICD_WORKERS": str(workers),
                    "METRIC_PROCESSING_DELAY": str(processing_delay),
                    "GNOCCHI_PORT": str(port_base + 41), "PG_PORT": str(port_base + 24),
                    "REDIS_PORT": str(port_base + 79), "AMQP_PORT": str(port_base + 72),
                    "EPMD_PORT": str(port_base + 69), "DIST_PORT": str(port_base + 82),
                    "STACK_HOST": "fleet-bench"}
        self.url = f"http://127.0.0.1:{port_base + 41}"
        self.workers = workers

    def __enter__(self):
        subprocess.run([FULLSTACK, "purge"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        try:
            subprocess.run([FULLSTACK, "up"], env=self.env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except subprocess.CalledProcessError as exc:
            subprocess.run([FULLSTACK, "down"], env=self.env)
            raise RuntimeError(f"tools/fullstack up failed: {exc.stderr[-2000:]}") from None
        with open(os.path.join(self.dir, "pids.json")) as f:
            self.pids = json.load(f)
        return self

    def __exit__(self, *exc):
        rc = subprocess.run([FULLSTACK, "purge"], env=self.env).returncode
        if rc:
            raise RuntimeError(f"tools/fullstack down left something behind ({self.dir})")

    @property
    def conf_file(self):
        return os.path.join(self.dir, "ceilometer", "ceilometer.conf")

    @property
    def storage(self):
        return os.path.join(self.dir, "gnocchi", "storage")

    def get(self, path, **params):
        r = requests.get(self.url + path, headers=AUTH, params=params, timeout=120)
        r.raise_for_status()
        return r.json()

    def post(self, path, body, **params):
        r = requests.post(self.url + path, headers=AUTH, params=params, json=body, timeout=300)
        if r.status_code >= 400:
            raise RuntimeError(f"POST {path} {params}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def backlog(self):
        """``(metrics, measures)`` waiting for metricd (/v1/status)."""
        summary = self.get("/v1/status", details="false")["storage"]["summary"]
        return summary["metrics"], summary["measures"]

    def cpu(self):
        """CPU seconds so far: {component: s}, and per metricd processing worker."""
        procs = _processes()
        out = {}
        for name in ("postgresql", "redis", "gnocchi-api", "gnocchi-metricd"):
            if name in self.pids:
                out[name] = sum(procs[p][1] for p in _tree(procs, self.pids[name]))
        workers = {procs[p][2]: procs[p][1] for p in _tree(procs, self.pids["gnocchi-metricd"])
                   if "processing worker" in procs[p][2]}
        return out, workers


def _processes():
    """{pid: (ppid, cpu seconds incl. reaped children, title)} of every process."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        procs[int(entry)] = (int(fields[1]), ticks / CLK_TCK, title)
    return procs


def _tree(procs, root):
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


class BacklogWatch(threading.Thread):
    """``/v1/status`` every 0.5 s: (seconds since start, metrics, measures)."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.series, self.done = stack, [], threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.done.is_set():
            try:
                metrics, measures = self.stack.backlog()
                self.series.append((time.monotonic() - self.t0, metrics, measures))
            except requests.RequestException:
                pass
            self.done.wait(0.5)


def wait_drained(stack, timeout):
    """Seconds until /v1/status shows nothing to process (None: timed out)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if stack.backlog() == (0, 0):
            return time.monotonic() - t0
        time.sleep(0.25)
    return None


# -- the fleet --------------------------------------------------------------------------

def fleet_zones(hosts, zones):
    return {f"fleet-cn{h:03d}": [
        Zone(1000 + z, f"zone-{z:04d}", "cgroup", None, f"/tenants/zone-{z:04d}",
             (("project_id", f"project-{z % 7}"),)) for z in range(zones)]
        for h in range(hosts)}


class FleetFeed:
    """Every host's samples of poll ``k``, made as the pollsters make them."""

    def __init__(self, fleet, statistics, seed=1):
        self.fleet, self.statistics = fleet, statistics
        self.rng = random.Random(seed)
        self.meters = catalogue.meters_for("linux", "libbpf")
        self.counters = catalogue.counter_samples()
        self.totals = {}

    def host_samples(self, host, when):
        zones = self.fleet[host]
        n = len(zones)
        rng = self.rng
        out = []
        for meter in self.meters:
            key = (host, meter.name)
            deltas = [rng.randint(1, 5000) for _ in zones]
            totals = self.totals[key] = [a + d for a, d in
                                         zip(self.totals.get(key, [0] * n), deltas, strict=True)]
            if meter.kind == "distribution":
                p50 = [rng.lognormvariate(9, 1) for _ in zones]
                p95 = [v * rng.uniform(2, 5) for v in p50]
                p99 = [v * rng.uniform(1.2, 3) for v in p95]
                top = [int(v * rng.uniform(1.5, 4)) for v in p99]
                sums = [t * 12000.5 for t in totals]
                mi = MeterIntervals(meter, zones, totals, deltas, sums, p50, p95, p99, top)
            else:
                mi = MeterIntervals(meter, zones, totals, deltas)
            out.extend(mi.samples(self.statistics))
        for name, (kind, unit) in self.counters.items():
            key = (host, name)
            if kind == "cumulative":
                values = self.totals[key] = [a + rng.randint(0, 10 ** 6) for a in
                                             self.totals.get(key, [0] * n)]
            else:
                values = [rng.uniform(1, 4096) for _ in zones]
            out.extend(zip([name] * n, [kind] * n, [unit] * n, values, zones, strict=True))
        stamp = when.isoformat()
        samples = []
        for name, kind, unit, volume, zone in out:
            user_id, project_id = pollsters.zone_owner(zone)
            samples.append(ceilometer_sample.Sample(
                name=name, type=kind, unit=unit, volume=volume, user_id=user_id,
                project_id=project_id, resource_id=pollsters.zone_resource_id(host, zone),
                resource_metadata=pollsters.zone_metadata(host, zone), timestamp=stamp))
        for name in ("telemetry.engine.drops", "telemetry.engine.errors",
                     "telemetry.engine.restarts"):
            samples.append(ceilometer_sample.Sample(
                name=name, type="cumulative", unit="event", volume=0, user_id=None,
                project_id=None, resource_id=host,
                resource_metadata={"host": host, "engine": "libbpf"}, timestamp=stamp))
        return samples


def make_publisher(stack, definitions=None):
    conf = gnocchi_upgrade.load_conf([stack.conf_file])
    query = "enable_filter_project=false"
    if definitions:
        query += f"&resources_definition_file={definitions}"
    return zone_publisher.ZoneGnocchiPublisher(
        conf, netutils.urlsplit(f"smartos-gnocchi://?{query}"))


def publish(publisher, batches):
    """Publish each host's batch; ``(samples, seconds)``."""
    count, t0 = 0, time.monotonic()
    for samples in batches:
        publisher.publish_samples(list(samples))
        count += len(samples)
    return count, time.monotonic() - t0


# -- storage -----------------------------------------------------------------------

def policies(definitions):
    with open(definitions) as f:
        data = yaml.safe_load(f)
    return {p["name"]: p for p in data["archive_policies"]}


def default_policy(definitions):
    with open(definitions) as f:
        data = yaml.safe_load(f)
    return policies(definitions)[data["archive_policy_default"]]


def lean_definitions(methods, directory):
    """resources.yaml with its default (gauge) policy keeping only ``methods``,
    under a name of its own: everything else as shipped."""
    with open(zone_publisher.DEFINITIONS) as f:
        data = yaml.safe_load(f)
    old = data["archive_policy_default"]
    new = old + "-lean"
    for policy in data["archive_policies"]:
        if policy["name"] == old:
            policy["name"], policy["aggregation_methods"] = new, list(methods)
    data["archive_policy_default"] = new
    for resource in data["resources"]:
        for spec in (resource["metrics"] or {}).values():
            if spec and spec.get("archive_policy_name") == old:
                spec["archive_policy_name"] = new
    path = os.path.join(directory, "resources-lean.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


def _seconds(text):
    number, unit = text.split()
    return float(number) * {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600,
                            "day": 86400, "days": 86400}[unit]


def storage_probe(stack, definitions):
    """Per archive policy: bytes and allocated bytes per metric after a year, from
    a probe metric given 8 days of points at 60 s."""
    rng = random.Random(7)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = now - timedelta(days=8)
    points = 8 * 1440
    out = {}
    for name, policy in policies(definitions).items():
        metric = stack.post("/v1/metric", {"archive_policy_name": name,
                                           "name": f"probe-{name}"})
        counter = "rate:max" in policy["aggregation_methods"] or \
            any(m.startswith("rate:") for m in policy["aggregation_methods"])
        total, measures = 0, []
        for i in range(points):
            if counter:
                total += rng.randint(0, 5000)
                value = total
            else:
                value = rng.lognormvariate(9, 1)
            measures.append({"timestamp": (start + timedelta(minutes=i)).isoformat(),
                             "value": value})
        stack.post(f"/v1/metric/{metric['id']}/measures", measures)
        out[name] = (metric["id"], policy)
    if wait_drained(stack, 600) is None:
        raise RuntimeError("the storage probe was not processed in 600 s")
    gauge_id = out[default_policy(definitions)["name"]][0]
    hour_ago = (now - timedelta(hours=1)).isoformat()
    times = []
    for _ in range(20):
        t0 = time.monotonic()
        stack.get(f"/v1/metric/{gauge_id}/measures", aggregation="max", granularity=60,
                  start=hour_ago)
        times.append(time.monotonic() - t0)
    result = {"hour_query_s": statistics.median(times)}
    for name, (metric_id, policy) in out.items():
        files = []
        for dirpath, _, names in os.walk(stack.storage):
            if metric_id in dirpath:
                for n in names:
                    st = os.stat(os.path.join(dirpath, n))
                    files.append((os.path.join(dirpath, n), st.st_size, st.st_blocks * 512))
        per_gran = {}
        for path, size, alloc in files:
            base = os.path.basename(path)
            if base.startswith("none"):
                gran = "unaggregated"
            else:
                gran = base.split("_")[1]
            b, a, n = per_gran.get(gran, (0, 0, 0))
            per_gran[gran] = (b + size, a + alloc, n + 1)
        # bytes per point from the 60 s archive, which holds at least its 7 days
        # (the probe has 8; old splits go whole): the same serialization for
        # every granularity
        methods = len(policy["aggregation_methods"])
        b60, _, _ = per_gran.get("60.0", (0, 0, 0))
        held = len(stack.get(f"/v1/metric/{metric_id}/measures", granularity=60,
                             aggregation=policy["aggregation_methods"][0], start=0))
        bpp = b60 / (methods * held)
        year_bytes = year_alloc = 0.0
        for d in policy["definition"]:
            kept = _seconds(d["timespan"]) / _seconds(d["granularity"])
            year_bytes += methods * kept * bpp
            # one file per split of 3600 points (carbonara.SplitKey.POINTS_PER_SPLIT)
            # and method, each allocated in whole 4 KiB blocks
            splits = math.ceil(kept / 3600)
            year_alloc += methods * splits * math.ceil(3600 * bpp / 4096) * 4096
        b, a, n = per_gran.get("unaggregated", (0, 0, 0))
        year_bytes += b
        year_alloc += a
        result[name] = {"files": len(files), "bytes_per_point": bpp,
                        "bytes_now": sum(f[1] for f in files),
                        "alloc_now": sum(f[2] for f in files), "year_bytes": year_bytes,
                        "year_alloc": year_alloc, "per_granularity": per_gran}
    return result


def metric_policies(statistics, definitions):
    """{policy name: metrics per zone} of one zone's metrics in ``definitions``."""
    with open(definitions) as f:
        data = yaml.safe_load(f)
    default = data.get("archive_policy_default")
    zone_def = next(r for r in data["resources"] if r["resource_type"] == "smartos_zone")
    names = set()
    for meter in catalogue.meters_for("linux", "libbpf"):
        names.update(n for n, _, _ in meter.samples(statistics))
    names.update(catalogue.counter_samples())
    out = {}
    for name in names:
        spec = zone_def["metrics"].get(name) or {}
        policy = spec.get("archive_policy_name", default)
        out[policy] = out.get(policy, 0) + 1
    return out


# -- one configuration -------------------------------------------------------------------

def run_config(name, args, port_base):
    incoming, workers, stats, gauge_methods = CONFIGS[name]
    say(f"{name}: {incoming} incoming, {workers} metricd workers, statistics "
        f"{','.join(stats)}; {args.hosts} hosts x {args.zones} zones")
    definitions = zone_publisher.DEFINITIONS
    if gauge_methods:
        definitions = lean_definitions(gauge_methods, args.tmp)
    fleet = fleet_zones(args.hosts, args.zones)
    zones = args.hosts * args.zones
    feed = FleetFeed(fleet, stats)
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(
        seconds=args.interval * (args.polls + args.batch + 2))
    result = {"name": name, "incoming": incoming, "workers": workers,
              "statistics": ",".join(stats), "zones": zones,
              "gauge_methods": ",".join(gauge_methods or default_policy(definitions)[
                  "aggregation_methods"])}
    with Stack(name, incoming, workers, port_base, args.processing_delay) as stack:
        publisher = make_publisher(stack, None if definitions == zone_publisher.DEFINITIONS
                                   else definitions)
        watch = BacklogWatch(stack)
        watch.start()
        poll = 0

        def batches(k):
            when = base + timedelta(seconds=args.interval * k)
            return [feed.host_samples(h, when) for h in fleet]

        # 1. create
        count, secs = publish(publisher, batches(poll))
        drained = wait_drained(stack, args.timeout)
        n_metrics = len(_all_metric_ids(stack))
        result.update(create_s=secs, create_drain_s=drained, metrics=n_metrics,
                      samples_per_poll=count,
                      metrics_per_zone=(n_metrics - 3 * args.hosts) / zones)
        # idle: what metricd's own scanning of the sacks costs with nothing to do
        cpu0, workers0 = stack.cpu()
        t0 = time.monotonic()
        time.sleep(args.idle)
        cpu1, workers1 = stack.cpu()
        idle_s = time.monotonic() - t0
        result["idle"] = {k: (cpu1[k] - cpu0.get(k, 0)) / idle_s for k in cpu1}
        result["idle_workers"] = sum(workers1[k] - workers0.get(k, 0)
                                     for k in workers1) / idle_s
        # 2. steady
        made = [batches(poll + 1 + i) for i in range(args.polls)]
        cpu0, workers0 = stack.cpu()
        t0, client0 = time.monotonic(), _client_cpu()
        accepted = accept_s = drain_s = 0.0
        for i in range(args.polls):
            poll += 1
            count, secs = publish(publisher, made[i])
            accepted += count
            accept_s += secs
            d = wait_drained(stack, args.timeout)
            if d is None:
                raise RuntimeError(f"{name}: a poll was not processed in {args.timeout} s")
            drain_s += secs + d
        cpu1, workers1 = stack.cpu()
        result["steady"] = _phase(args.polls, accepted, accept_s, drain_s, cpu0, cpu1,
                                  workers0, workers1, zones, time.monotonic() - t0, result,
                                  _client_cpu() - client0)
        # 3. batched: --batch polls at once, per host one publish
        made = [batches(poll + 1 + i) for i in range(args.batch)]
        poll += args.batch
        per_host = [sum((made[i][h] for i in range(args.batch)), [])
                    for h in range(len(fleet))]
        cpu0, workers0 = stack.cpu()
        t0, client0 = time.monotonic(), _client_cpu()
        count, secs = publish(publisher, per_host)
        d = wait_drained(stack, args.timeout * args.batch)
        if d is None:
            raise RuntimeError(f"{name}: the batched polls were not processed")
        cpu1, workers1 = stack.cpu()
        result["batched"] = _phase(args.batch, count, secs, secs + d, cpu0, cpu1,
                                   workers0, workers1, zones, time.monotonic() - t0, result,
                                   _client_cpu() - client0)
        # 5. queries
        result["queries"] = queries(stack, fleet, base, poll, args)
        # 6. storage
        result["probe"] = storage_probe(stack, definitions)
        result["probe_hour_s"] = result["probe"].pop("hour_query_s")
        result["run_alloc"] = _du(stack.storage)
        result["publish_failures"] = (publisher.failures.failed_batches,
                                      publisher.failures.lost)
        watch.done.set()
        watch.join()
        result["backlog"] = watch.series
    result["policies"] = metric_policies(stats, definitions)
    return result


def _all_metric_ids(stack):
    ids, marker = [], None
    while True:
        params = {"limit": 1000}
        if marker:
            params["marker"] = marker
        page = stack.get("/v1/metric", **params)
        if not page:
            return ids
        ids.extend(m["id"] for m in page)
        marker = page[-1]["id"]


def _du(path):
    total = files = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                total += os.stat(os.path.join(dirpath, n)).st_blocks * 512
                files += 1
            except OSError:
                pass
    return total, files


def _client_cpu():
    """This process's CPU seconds: the publisher's side (ceilometer-agent-notification's)."""
    usage = rusage.getrusage(rusage.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _phase(polls, measures, accept_s, busy_s, cpu0, cpu1, workers0, workers1, zones, wall,
           result, client):
    """One phase's figures; ``net``: CPU less what the same components spend
    idle over the same wall time (metricd scans its sacks whatever the load),
    the part that grows with zones."""
    cpu = {k: cpu1[k] - cpu0.get(k, 0) for k in cpu1}
    net = {k: max(v - result["idle"].get(k, 0) * wall, 0) for k, v in cpu.items()}
    per_worker = {k: workers1[k] - workers0.get(k, 0) for k in workers1}
    metricd = sum(per_worker.values())
    metricd_net = max(metricd - result["idle_workers"] * wall, 1e-9)
    return {"polls": polls, "measures": measures, "accept_s": accept_s, "busy_s": busy_s,
            "accepted_per_s": measures / accept_s if accept_s else 0, "wall": wall,
            "cpu": cpu, "net": net, "worker_cpu": per_worker, "metricd_cpu": metricd,
            "metricd_net": metricd_net, "client_cpu": client,
            "metricd_cpu_per_zone_poll": metricd / (zones * polls),
            "metricd_net_per_zone_poll": metricd_net / (zones * polls)}


def queries(stack, fleet, base, polls, args):
    host = next(iter(fleet))
    rid = pollsters.zone_resource_id(host, fleet[host][0])
    end = base + timedelta(seconds=args.interval * (polls + 1))
    start = (end - timedelta(hours=1)).isoformat()

    def timed(fn, n):
        times = []
        for _ in range(n):
            t0 = time.monotonic()
            value = fn()
            times.append(time.monotonic() - t0)
        return statistics.median(times), value

    one_s, points = timed(lambda: stack.get(
        f"/v1/resource/smartos_zone/{requests.utils.quote(rid, safe='')}/metric/"
        "cpu.runqueue.latency.p99/measures", aggregation="max", granularity=60,
        start=start), 20)
    agg_s, agg = timed(lambda: stack.post(
        "/v1/aggregates", {"operations": "(aggregate max (metric cpu.runqueue.latency.p99 max))",
                           "resource_type": "smartos_zone",
                           "search": {"=": {"zone_kind": "cgroup"}}},
        granularity=60, start=start, details="false"), 3)
    return {"one_zone_s": one_s, "one_zone_points": len(points), "all_zones_s": agg_s,
            "all_zones_metrics": sum(len(h) for h in fleet.values()),
            "all_zones_points": len(agg["measures"]["aggregated"])
            if isinstance(agg, dict) and "measures" in agg else None}


# -- report -------------------------------------------------------------------------

def report(results, args, wall):
    lines = [
        "bench/fleet_gnocchi.py: the fleet on one Gnocchi (tools/fullstack, AGENTS=0) on this "
        "machine",
        f"fleet: {args.hosts} hosts x {args.zones} zones = {args.hosts * args.zones} zones, "
        f"interval {args.interval} s (compressed time), {args.polls} steady polls, "
        f"{args.batch} batched; metric_processing_delay {args.processing_delay} s; "
        f"{os.cpu_count()} CPUs; load average at start {args.load0}; total {wall:.0f} s",
        "",
    ]
    for r in results:
        s, b = r["steady"], r["batched"]
        w = max(r["workers"], 1)
        lines += [
            f"== {r['name']}: {r['incoming']} incoming, {r['workers']} metricd worker(s), "
            f"statistics {r['statistics']}, gauge policy {r['gauge_methods']}",
            f"metrics: {r['metrics']} ({r['metrics_per_zone']:.0f} per zone + 3 per host); "
            f"{r['samples_per_poll']} measures per poll",
            f"create: first poll published in {r['create_s']:.1f} s (resources and metrics "
            f"made), processed {r['create_drain_s'] or float('nan'):.1f} s later",
        ]
        for label, p in (("steady (1 measure per metric per pass)", s),
                         (f"batched ({args.batch} measures per metric per pass)", b)):
            cpu = p["cpu"]
            per_zp = {k: v / (r["zones"] * p["polls"]) * 1000 for k, v in p["net"].items()}
            per_zp["publisher (client)"] = p["client_cpu"] / (r["zones"] * p["polls"]) * 1000
            lines += [
                f"{label}: {p['measures']} measures accepted at {p['accepted_per_s']:.0f}/s "
                f"(one client); processed in {p['busy_s']:.1f} s wall: "
                f"{p['measures'] / p['busy_s']:.0f} measures/s, "
                f"{r['metrics'] * p['polls'] / p['busy_s'] / w:.0f} metric-updates/s "
                f"per worker (wall)",
                "  CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
                + "; metricd workers " + ", ".join(f"{v:.1f}" for v in
                                                   p["worker_cpu"].values()),
                f"  per metricd CPU-second (net of idle): "
                f"{p['measures'] / p['metricd_net']:.0f} measures, "
                f"{r['metrics'] * p['polls'] / p['metricd_net']:.0f} metric-updates; "
                f"gross {p['measures'] / max(p['metricd_cpu'], 1e-9):.0f} measures",
                "  CPU ms per zone and poll (net of idle): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in per_zp.items()),
            ]
        q = r["queries"]
        lines.append(
            "idle CPU (s per s): " + ", ".join(f"{k} {v:.3f}" for k, v in r["idle"].items()))
        lines.append(f"queries: one zone's p99 over an hour {q['one_zone_s'] * 1000:.1f} ms "
                     f"({q['one_zone_points']} points; a probe metric with a full hour "
                     f"{r['probe_hour_s'] * 1000:.1f} ms); max across "
                     f"{q['all_zones_metrics']} zones' p99 {q['all_zones_s'] * 1000:.0f} ms")
        year = 0.0
        year_alloc = 0.0
        for policy, count in r["policies"].items():
            pr = r["probe"].get(policy)
            if pr is None:
                continue
            year += count * pr["year_bytes"]
            year_alloc += count * pr["year_alloc"]
        lines.append(
            "storage per zone per year: " + f"{year / 2**20:.1f} MiB of split data, "
            f"{year_alloc / 2**20:.1f} MiB allocated (file driver); per metric: " +
            "; ".join(f"{p} {v['year_bytes'] / 1024:.0f} KiB data / "
                      f"{v['year_alloc'] / 1024:.0f} KiB allocated, "
                      f"{v['bytes_per_point']:.1f} B a point "
                      f"({r['policies'].get(p, 0)} per zone)"
                      for p, v in r["probe"].items()))
        batches, lost = r["publish_failures"]
        lines.append(f"publisher: {batches} batches failed, {lost} samples lost "
                     f"(telemetry.publish.failures)")
        alloc, files = r["run_alloc"]
        lines.append(f"storage now: {alloc / 2**20:.1f} MiB allocated in {files} files")
        series = r["backlog"]
        step = max(1, len(series) // 24)
        lines.append("backlog (s: metrics/measures): " + " ".join(
            f"{t:.0f}:{m}/{n}" for t, m, n in series[::step]))
        lines.append("")
    lines += capacity(results, args)
    return "\n".join(lines) + "\n"


def capacity(results, args):
    lines = [f"zones per metricd CPU = T / (metricd CPU s per zone and poll, net of idle); "
             f"steady: one measure per metric per pass; batched: {args.batch} (a "
             f"metric_processing_delay of {args.batch} intervals, greedy off); all: API + "
             f"PostgreSQL + Redis + metricd, net of idle",
             "config          metrics/zone  metricd ms/zone-poll  10 s: steady  batched  "
             "60 s: steady  batched   all, 60 s steady"]
    for r in results:
        s = r["steady"]["metricd_net_per_zone_poll"]
        b = r["batched"]["metricd_net_per_zone_poll"]
        whole = sum(r["steady"]["net"].values()) / (r["zones"] * r["steady"]["polls"])
        lines.append(f"{r['name']:15} {r['metrics_per_zone']:12.0f}  {s * 1000:9.1f} / "
                     f"{b * 1000:6.1f}   {10 / s:12.0f}  {10 / b:7.0f}  {60 / s:12.0f}  "
                     f"{60 / b:7.0f}   {60 / whole:16.0f}")
    return lines


def main(argv=None):
    configs = "\n".join(
        f"  {name:14} {incoming} incoming, {workers} metricd worker(s), statistics "
        f"{','.join(stats)}, gauge policy {','.join(methods) if methods else 'as shipped'}"
        for name, (incoming, workers, stats, methods) in CONFIGS.items())
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"configurations (--configs):\n{configs}\n\nexample: a 200-zone fleet, "
               "two configurations, figures to a file of its own:\n  bench/fleet_gnocchi.py "
               "--hosts 10 --zones 20 --configs redis-1,cheap-redis-2 "
               "--out bench/results/fleet_gnocchi_200.txt")
    parser.add_argument("--hosts", type=int, default=2, help="simulated compute hosts")
    parser.add_argument("--zones", type=int, default=10, help="zones per host")
    parser.add_argument("--polls", type=int, default=2, help="steady polls")
    parser.add_argument("--batch", type=int, default=3, help="polls sent at once")
    parser.add_argument("--interval", type=int, default=10, help="polling interval, s")
    parser.add_argument("--processing-delay", type=int, default=2,
                        help="[metricd] metric_processing_delay, s")
    parser.add_argument("--idle", type=float, default=8.0,
                        help="seconds of idle stack measured before the steady polls")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one poll may take to be processed")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--port-base", type=int, default=17000,
                        help="first of the ports the stacks listen on (127.0.0.1)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "fleet_gnocchi.txt"),
                        help="where the figures are written (default: %(default)s)")
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        parser.error(f"--configs: unknown {', '.join(bad)} (choose from {', '.join(CONFIGS)})")
    args.load0 = " ".join(open("/proc/loadavg").read().split()[:3])
    args.tmp = tempfile.mkdtemp(prefix="fleet-gnocchi-")
    t0 = time.monotonic()
    results = []
    for i, name in enumerate(names):
        results.append(run_config(name, args, args.port_base + 100 * i))
    shutil.rmtree(args.tmp, ignore_errors=True)
    text = report(results, args, time.monotonic() - t0)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(args.out), delete=False) as f:
        f.write(text)
    os.replace(f.name, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
