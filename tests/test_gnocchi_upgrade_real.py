"""``smartos-telemetry upgrade`` against the real Gnocchi of the full stack,
and the archive policies serving the requests Aodh and CloudKitty make.

``tools/fullstack up`` (free loopback ports; its own upgrade creates our
policies), then, as on a deployment of an earlier release: the superseded
counter policy with a metric that keeps it, our counter policy with other
timespans, and a policy whose aggregation methods differ from the shipped
definitions.  ``upgrade`` must update what Gnocchi lets it update, leave and
report what it cannot, and count the metrics on the superseded policy.  Then
the exact operations CloudKitty's Gnocchi collector and Aodh's evaluators
send are run on metrics under our policies.  ``tools/fullstack down`` stops
everything by PID, also on failure.
"""

import copy
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml
from fullstack_helpers import (
    FULLSTACK,
    free_ports,
    gnocchi,
    kill_left,
    listeners,
    read_pids,
    stack_down,
    stack_up,
)

from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade

pytestmark = pytest.mark.root

BIN = os.path.dirname(sys.executable)
DEFS = gnocchi_upgrade.load_definitions()
POLICIES = {p["name"]: p for p in DEFS["archive_policies"]}
COUNTER, GAUGE = "smartos-telemetry-counter-v2", "smartos-telemetry-gauge"
OLD_COUNTER = "smartos-telemetry-counter"


@pytest.fixture(scope="module")
def stack():
    """``(gnocchi client, ceilometer.conf of the stack)`` of a running stack."""
    subprocess.run([FULLSTACK, "setup"], check=True, stdout=subprocess.DEVNULL)
    stack_dir = tempfile.mkdtemp(prefix="st-upgrade-", dir="/var/tmp")
    ports = free_ports(5)
    env = {**os.environ, "STACK_DIR": stack_dir, "INTERVAL": "60", **dict(zip(
        ("GNOCCHI_PORT", "PG_PORT", "AMQP_PORT", "EPMD_PORT", "DIST_PORT"),
        map(str, ports), strict=True))}
    pids = {}
    try:
        up, pids = stack_up(env)
        assert up.returncode == 0, up.stderr[-3000:]
        yield gnocchi(f"http://127.0.0.1:{ports[0]}"), os.path.join(
            stack_dir, "ceilometer", "ceilometer.conf")
    finally:
        down = stack_down(env)
        pids = pids or read_pids(stack_dir)
        left = kill_left(pids)
        shutil.rmtree(stack_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not left, f"left running after down: {left}"
    assert not listeners(ports), listeners(ports)


def run_upgrade(conf, *extra):
    out = subprocess.run([os.path.join(BIN, "smartos-telemetry"), "upgrade",
                          "--config-file", conf, *extra],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_the_stacks_upgrade_made_the_shipped_policies(stack):
    g, _ = stack
    for name, wanted in POLICIES.items():
        got = g.archive_policy.get(name)
        assert set(got["aggregation_methods"]) == set(wanted["aggregation_methods"]), name
        assert not gnocchi_upgrade._policy_differs(got, wanted), name


def test_an_existing_deployment_is_upgraded_as_far_as_gnocchi_allows(stack, tmp_path):
    g, conf = stack
    # an earlier release's counter policy, and a metric made under it
    g.archive_policy.create({"name": OLD_COUNTER, "aggregation_methods": ["last", "rate:last"],
                             "back_window": 0, "definition": [
                                 {"granularity": "1 minute", "timespan": "7 days"},
                                 {"granularity": "1 hour", "timespan": "365 days"}]})
    old = g.metric.create({"name": "cpu.runqueue.latency.count",
                           "archive_policy_name": OLD_COUNTER})
    # our counter policy with a shorter week (Gnocchi allows that change)
    g.archive_policy.update(COUNTER, {"definition": [
        {"granularity": "1 minute", "timespan": "1 day"},
        {"granularity": "1 hour", "timespan": "365 days"}]})
    # a policy of the definitions whose methods Gnocchi has otherwise
    g.archive_policy.create({"name": "st-test-methods", "aggregation_methods": ["mean"],
                             "back_window": 0,
                             "definition": [{"granularity": "1 minute", "timespan": "1 day"}]})
    defs = copy.deepcopy(DEFS)
    defs["archive_policies"].append({"name": "st-test-methods",
                                     "aggregation_methods": ["max"], "back_window": 0,
                                     "definition": [{"granularity": "1 minute",
                                                     "timespan": "1 day"}]})
    with open(tmp_path / "defs.yaml", "w") as f:
        yaml.safe_dump(defs, f)

    report = run_upgrade(conf, "--definitions", str(tmp_path / "defs.yaml"))

    assert f"archive policy {GAUGE}: present" in report
    assert any(re.fullmatch(rf"archive policy {COUNTER}: timespans or back window updated "
                            rf"to the shipped ones; its \d+ metric\(s\) follow", line)
               for line in report), report
    assert not gnocchi_upgrade._policy_differs(g.archive_policy.get(COUNTER),
                                               POLICIES[COUNTER])
    (methods,) = [line for line in report if line.startswith("archive policy st-test-methods")]
    assert "aggregation methods mean (shipped: max)" in methods
    assert "cannot change in place; left as it is" in methods
    assert g.archive_policy.get("st-test-methods")["aggregation_methods"] == ["mean"]
    (superseded,) = [line for line in report
                     if line.startswith(f"archive policy {OLD_COUNTER} (")]
    assert f"(superseded by {COUNTER}): 1 metric(s) keep it" in superseded
    assert old["id"] in superseded and "upgrade --migrate-superseded" in superseded
    # and again: nothing left to do but the same report of the superseded policy
    again = run_upgrade(conf, "--definitions", str(tmp_path / "defs.yaml"))
    assert f"archive policy {COUNTER}: present" in again
    assert superseded in again
    g.metric.delete(old["id"])
    assert any(line.startswith(f"archive policy {OLD_COUNTER} (superseded by {COUNTER}): no "
                               f"metric uses it") for line in run_upgrade(conf))


def hour(n):
    """The start of the n-th whole hour before the current one (UTC)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0,
                                                               microsecond=0)
    return now - datetime.timedelta(hours=n)


def test_our_policies_answer_what_cloudkitty_and_aodh_ask(stack):
    """A counter rising by a known amount per hour and a gauge, on a
    smartos_zone resource: CloudKitty's operation (aggregate rate:max (metric
    NAME max)) at its default 3600 s over [H-1, H+1) gives hour H's increase
    (cloudkitty/collector/gnocchi.py, generate_aggregation_operation and
    get_aggregation_api_arguments); Aodh's per-resource rule reads rate:max of
    the counter and max of the gauge; a method no policy has is a 404 (what
    left an Aodh alarm at insufficient data)."""
    from gnocchiclient import exceptions

    g, _ = stack
    project = "6f0c3b1e9a8d4c2b8e5f7a1d3c9b2e40"
    resource = g.resource.create("smartos_zone", {
        "id": "st-upgrade-cn1:cgroup:billed", "host": "st-upgrade-cn1",
        "project_id": project, "display_name": "billed", "zone_kind": "cgroup",
        "metrics": {"cpu.runqueue.latency.count": {"archive_policy_name": COUNTER},
                    "cpu.runqueue.latency.p99": {"archive_policy_name": GAUGE}}})
    count, p99 = (resource["metrics"][n] for n in ("cpu.runqueue.latency.count",
                                                    "cpu.runqueue.latency.p99"))
    # a poll a minute over hours H-2 and H-1: the counter adds 7 per poll
    start, total, measures = hour(3), 1000, []
    for minute in range(120):
        total += 7
        measures.append({"timestamp": (start + datetime.timedelta(minutes=minute)).isoformat(),
                         "value": total})
    g.metric.add_measures(count, measures)
    g.metric.add_measures(p99, [{"timestamp": m["timestamp"], "value": 1e6 + i}
                                for i, m in enumerate(measures)])
    rates = g.metric.get_measures(count, aggregation="rate:max", granularity=60, refresh=True)
    ck = g.aggregates.fetch(
        ["aggregate", "rate:max", ["metric", "cpu.runqueue.latency.count", "max"]],
        resource_type="smartos_zone", search={"and": [{"=": {"project_id": project}}]},
        groupby=["id", "project_id"], granularity=3600, start=hour(3), stop=hour(1),
        needed_overlap=0)
    (group,) = ck
    assert group["group"]["project_id"] == project
    points = group["measures"]["measures"]["aggregated"]
    # hour H-2 (hour(2)) rose by 60 polls x 7: the first point CloudKitty rates
    assert [(t.timestamp() if hasattr(t, "timestamp") else t, v) for t, _, v in points][:1] \
        in ([(hour(2).timestamp(), 420.0)], [(hour(2).isoformat(), 420.0)])
    assert {v for _, _, v in rates} == {7.0}
    worst = g.metric.get_measures(p99, aggregation="max", granularity=3600, refresh=True)
    assert [v for _, _, v in worst] == [1e6 + 59, 1e6 + 119]
    with pytest.raises(exceptions.NotFound):
        g.metric.get_measures(p99, aggregation="last", granularity=60, refresh=True)


def test_migrate_superseded_moves_a_metric_with_its_measures(stack):
    """A zone's counter on the superseded policy, three hours of a poll a
    minute: --migrate-superseded puts a metric under the new policy in its
    place on the resource with the same values, and deletes the old one."""
    from gnocchiclient import exceptions

    g, conf = stack
    try:
        g.archive_policy.get(OLD_COUNTER)
    except exceptions.NotFound:
        g.archive_policy.create({
            "name": OLD_COUNTER, "aggregation_methods": ["last", "rate:last"],
            "back_window": 0, "definition": [
                {"granularity": "1 minute", "timespan": "7 days"},
                {"granularity": "1 hour", "timespan": "365 days"}]})
    resource = g.resource.create("smartos_zone", {
        "id": "st-upgrade-cn1:cgroup:old", "host": "st-upgrade-cn1", "zone_kind": "cgroup",
        "metrics": {"network.tcp.retransmits": {"archive_policy_name": OLD_COUNTER},
                    "network.tcp.rtt.p99": {"archive_policy_name": GAUGE}}})
    old_id = resource["metrics"]["network.tcp.retransmits"]
    start = hour(3)
    g.metric.add_measures(old_id, [
        {"timestamp": (start + datetime.timedelta(minutes=m)).isoformat(), "value": 5 * m}
        for m in range(180)])
    before = {grain: [(t, v) for t, _, v in g.metric.get_measures(
        old_id, aggregation="last", granularity=grain, refresh=True)] for grain in (60, 3600)}
    assert len(before[60]) == 180 and len(before[3600]) == 3

    report = run_upgrade(conf, "--migrate-superseded")

    assert (f"archive policy {OLD_COUNTER}: 1 metric(s) moved to {COUNTER} with their "
            f"measures") in report
    assert any(line.startswith(f"archive policy {OLD_COUNTER} (superseded by {COUNTER}): no "
                               f"metric uses it") for line in report), report
    after = g.resource.get("smartos_zone", resource["id"])
    new_id = after["metrics"]["network.tcp.retransmits"]
    assert new_id != old_id
    assert after["metrics"]["network.tcp.rtt.p99"] == resource["metrics"]["network.tcp.rtt.p99"]
    assert g.metric.get(new_id)["archive_policy"]["name"] == COUNTER
    for grain in (60, 3600):
        moved = [(t, v) for t, _, v in g.metric.get_measures(
            new_id, aggregation="max", granularity=grain, refresh=True)]
        assert moved == before[grain], grain
    with pytest.raises(exceptions.NotFound):
        g.metric.get(old_id)
