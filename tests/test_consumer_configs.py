"""The shipped consumer configurations cannot drift from our Gnocchi
definitions: every metric that etc/cloudkitty/metrics.yml rates and every
alarm in etc/aodh/alarms.sh names a metric of its resource type in
gnocchi/resources.yaml, whose archive policy keeps the aggregation method
and granularity the consumer will ask Gnocchi for, and groups or reads only
attributes the resource type has.  The files are read by the consumers' own
code: CloudKitty's GnocchiCollector.check_configuration (in its venv) and
aodhclient's ``alarm create`` parser.
"""

import json
import os
import shlex
import subprocess

import pytest
import yaml
from aodhclient.v2 import alarm_cli
from ceilometer import gnocchi_client as ceilometer_gnocchi_client

from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade
from smartos_telemetry.meters import catalogue

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS_YML = os.path.join(REPO, "etc", "cloudkitty", "metrics.yml")
ALARMS_SH = os.path.join(REPO, "etc", "aodh", "alarms.sh")
DEFS = gnocchi_upgrade.load_definitions()
POLICIES = {p["name"]: p for p in DEFS["archive_policies"]}
BY_TYPE = {rd["resource_type"]: rd for rd in DEFS["resources"]}
#: what every Gnocchi resource has, whatever its type (gnocchi/indexer/
#: sqlalchemy_base.py, ResourceMixin)
GENERIC = {"id", "type", "project_id", "user_id", "original_resource_id", "started_at",
           "ended_at", "revision_start", "revision_end", "creator", "created_by_user_id",
           "created_by_project_id"}


def kinds():
    """``{sample name: gauge | cumulative}`` of everything we emit."""
    out = {name: kind for name, (kind, _) in catalogue.counter_samples().items()}
    for meter in catalogue.CATALOGUE:
        out.update({name: kind for name, kind, _ in meter.samples()})
    return out


def attributes(resource_type):
    """The attributes a resource type has in Gnocchi: ours from
    resources.yaml, ceilometer's as ceilometer-upgrade makes them."""
    if resource_type in DEFS["resource_types"]:
        return set(DEFS["resource_types"][resource_type]) | GENERIC
    theirs = dict(ceilometer_gnocchi_client.resources_initial[resource_type])
    for op in ceilometer_gnocchi_client.resources_update_operations:
        if op["resource_type"] == resource_type and op["type"] == "update_attribute_type":
            for change in op["data"]:
                if change["op"] == "add":
                    theirs[change["path"].rsplit("/", 1)[1]] = change["value"]
    return set(theirs) | GENERIC


def policy_of(resource_type, metric):
    metrics = BY_TYPE[resource_type]["metrics"]
    assert metric in metrics, f"{metric} is no metric of {resource_type} in resources.yaml"
    name = (metrics[metric] or {}).get("archive_policy_name", DEFS["archive_policy_default"])
    return POLICIES[name]


def granularities(policy):
    return {gnocchi_upgrade._seconds(d["granularity"]) for d in policy["definition"]}


def cloudkitty_entries(path=METRICS_YML):
    with open(path) as f:
        conf = yaml.safe_load(f)
    for name, entries in conf["metrics"].items():
        for entry in entries if isinstance(entries, list) else [entries]:
            yield name, entry


def check_cloudkitty(path):
    """``(problems, (metric, resource type) rated)`` of a metrics.yml."""
    kind = kinds()
    problems, seen = [], set()
    for name, entry in cloudkitty_entries(path):
        args = entry["extra_args"]
        resource_type = args["resource_type"]
        if name not in BY_TYPE[resource_type]["metrics"]:
            problems.append(f"{name}: no metric of {resource_type} in resources.yaml")
            continue
        policy = policy_of(resource_type, name)
        # the metric is asked for AGGREGATION_METHOD as stored; the
        # re-aggregation runs on the fly over what comes back
        if args["aggregation_method"] not in policy["aggregation_methods"]:
            problems.append(f"{name}: {policy['name']} has no {args['aggregation_method']}")
        if args["force_granularity"] not in granularities(policy):
            problems.append(f"{name}: {policy['name']} has no {args['force_granularity']} s")
        if kind[name] == "cumulative" and not args["re_aggregation_method"].startswith("rate:"):
            problems.append(f"{name}: a running total rated as it is, not its increase")
        have = attributes(resource_type)
        for field in set(entry["groupby"]) | set(entry["metadata"]):
            if field not in have:
                problems.append(f"{name}: {resource_type} has no attribute {field}")
        if "project_id" not in entry["groupby"]:
            problems.append(f"{name}: not grouped by project")
        seen.add((name, resource_type))
    return problems, seen


def test_every_rated_metric_has_the_method_and_granularity_cloudkitty_asks_for():
    problems, seen = check_cloudkitty(METRICS_YML)
    assert problems == []
    # what the issue asks to rate: run-queue events, the ZFS throttle delay, CPU time
    assert {("cpu.runqueue.latency.count", "smartos_zone"),
            ("cpu.runqueue.latency.count", "instance"), ("disk.throttle.delay", "instance"),
            ("cpu", "smartos_zone"), ("cpu", "instance")} <= seen


@pytest.mark.parametrize("change, problem", [
    (("aggregation_method", "last"), "smartos-telemetry-counter-v2 has no last"),
    (("force_granularity", 300), "has no 300 s"),
    (("re_aggregation_method", "max"), "a running total rated as it is"),
    (("resource_type", "host"), "no metric of host"),
])
def test_the_cloudkitty_check_catches_a_drifted_entry(tmp_path, change, problem):
    with open(METRICS_YML) as f:
        conf = yaml.safe_load(f)
    conf["metrics"]["cpu.runqueue.latency.count"][0]["extra_args"][change[0]] = change[1]
    conf["metrics"]["cpu"][0]["metadata"].append("flavor_id")  # not a smartos_zone's
    (tmp_path / "metrics.yml").write_text(yaml.safe_dump(conf))
    problems, _ = check_cloudkitty(str(tmp_path / "metrics.yml"))
    assert any(problem in p for p in problems), problems
    assert "cpu: smartos_zone has no attribute flavor_id" in problems


def test_cloudkittys_own_collector_accepts_the_file():
    """CloudKitty's GnocchiCollector.check_configuration (voluptuous schema,
    defaults filled in) and the operation it builds from each entry."""
    subprocess.run([os.path.join(REPO, "tools", "consumers"), "setup"], check=True,
                   stdout=subprocess.DEVNULL, timeout=1800)
    venv = subprocess.run([os.path.join(REPO, "tools", "consumers"), "venv", "cloudkitty"],
                          check=True, capture_output=True, text=True).stdout.strip()
    script = (
        "import json, sys, yaml\n"
        "from cloudkitty.collector import gnocchi\n"
        "conf = gnocchi.GnocchiCollector.check_configuration(yaml.safe_load(open(sys.argv[1])))\n"
        "print(json.dumps({k: [v['extra_args']['resource_type'], v['groupby'],"
        " gnocchi.GnocchiCollector.generate_aggregation_operation(v['extra_args'], k)]"
        " for k, v in conf.items()}))\n")
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c", script, METRICS_YML],
                         check=True, capture_output=True, text=True, timeout=120)
    checked = json.loads(out.stdout)
    assert len(checked) == len(list(cloudkitty_entries()))  # no alt_name collides
    for key, (resource_type, groupby, operation) in checked.items():
        name = key.split("@#")[0]
        re_aggregation, (metric, metric_name, method) = operation[1], operation[2]
        assert (metric, metric_name) == ("metric", name)
        assert method in policy_of(resource_type, name)["aggregation_methods"], key
        assert re_aggregation == "rate:max", key
        assert "project_id" in groupby  # [collect] scope_key, added by CloudKitty


def alarm_bodies(path=ALARMS_SH):
    """The request bodies aodhclient makes of each ``openstack alarm create``
    line of alarms.sh (its own parser and validation)."""
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    bodies = []
    for line in text.splitlines():
        if line.startswith("openstack alarm create"):
            command = alarm_cli.CliAlarmCreate(None, None)
            args = command.get_parser("openstack alarm create").parse_args(
                shlex.split(line)[3:])
            command._validate_args(args)
            bodies.append(command._alarm_from_args(args))
    return bodies


def check_alarms(path):
    """``(problems, {name: (type, rule)})`` of an alarms file."""
    problems, rules = [], {}
    for body in alarm_bodies(path):
        rule = body[f"{body['type']}_rule"]
        if rule["metric"] not in BY_TYPE[rule["resource_type"]]["metrics"]:
            problems.append(f"{body['name']}: {rule['metric']} is no metric of "
                            f"{rule['resource_type']}")
            continue
        policy = policy_of(rule["resource_type"], rule["metric"])
        method = rule["aggregation_method"]
        if body["type"] == "gnocchi_resources_threshold":
            # the metric is asked for the method as stored
            # (GnocchiResourceThresholdEvaluator._statistics)
            wanted = method
        else:
            # each metric is asked for it without rate: (GnocchiAggregation-
            # ResourcesThresholdEvaluator._statistics), the rate computed over them
            wanted = method[len("rate:"):] if method.startswith("rate:") else method
            json.loads(rule["query"])
        if wanted not in policy["aggregation_methods"]:
            problems.append(f"{body['name']}: {policy['name']} has no {wanted}")
        if float(rule["granularity"]) not in granularities(policy):
            problems.append(f"{body['name']}: {policy['name']} has no {rule['granularity']} s")
        if not body.get("description"):
            problems.append(f"{body['name']}: no description")
        rules[body["name"]] = (body["type"], rule)
    return problems, rules


def test_every_alarm_asks_for_what_its_metrics_policy_keeps():
    problems, rules = check_alarms(ALARMS_SH)
    assert problems == [] and len(rules) == 4
    # a p99 threshold per zone, and engine drops per host
    kind, rule = rules["runqueue-p99-web"]
    assert (kind, rule["metric"], rule["resource_type"], rule["aggregation_method"]) == (
        "gnocchi_resources_threshold", "cpu.runqueue.latency.p99", "smartos_zone", "max")
    kind, rule = rules["engine-drops-cn1"]
    assert (kind, rule["metric"], rule["resource_type"], rule["aggregation_method"]) == (
        "gnocchi_resources_threshold", "telemetry.engine.drops", "host", "rate:max")


def test_the_alarm_check_catches_what_left_an_alarm_at_insufficient_data(tmp_path):
    """``last`` on a gauge (Aodh accepts it, Gnocchi answers 404 for ever),
    a granularity no policy keeps, a metric of another type."""
    with open(ALARMS_SH) as f:
        text = f.read()
    text = text.replace("--aggregation-method max --granularity 60 --evaluation-periods 3 \\\n"
                        "  --comparison-operator gt --threshold 10000000 \\\n"
                        "  --alarm-action log:// --ok-action log://",
                        "--aggregation-method last --granularity 60 --evaluation-periods 3 \\\n"
                        "  --comparison-operator gt --threshold 10000000 \\\n"
                        "  --alarm-action log:// --ok-action log://", 1)
    text = text.replace("6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01 \\\n"
                        "  --aggregation-method max --granularity 60",
                        "6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01 \\\n"
                        "  --aggregation-method max --granularity 300")
    text = text.replace("--resource-type host --resource-id cn1",
                        "--resource-type smartos_zone --resource-id cn1")
    (tmp_path / "alarms.sh").write_text(text)
    problems, _ = check_alarms(str(tmp_path / "alarms.sh"))
    assert problems == [
        "runqueue-p99-web: smartos-telemetry-gauge has no last",
        "runqueue-p99-vm: smartos-telemetry-gauge has no 300 s",
        "engine-drops-cn1: telemetry.engine.drops is no metric of smartos_zone"], problems
