"""The Gnocchi resource definitions against the catalogue, the publisher's
choice of resource type per zone, and ``smartos-telemetry upgrade`` on a fake
Gnocchi (fast; the real round trip is tests/test_gnocchi_roundtrip.py)."""

import fnmatch
import os
import types
from unittest import mock

import pytest
import yaml
from ceilometer import gnocchi_client as ceilometer_gnocchi_client
from ceilometer import sample as ceilometer_sample
from gnocchiclient import exceptions as gnocchi_exc
from oslo_utils import netutils

from smartos_telemetry.gnocchi import publisher as gnocchi_publisher
from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade
from smartos_telemetry.meters import catalogue
from smartos_telemetry.polling.pollsters import zone_metadata, zone_resource_id
from smartos_telemetry.zones import Zone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFS = gnocchi_upgrade.load_definitions()
POLICIES = {p["name"]: p for p in DEFS["archive_policies"]}
BY_TYPE = {rd["resource_type"]: rd for rd in DEFS["resources"]}


def zone_samples():
    """``{name: type}`` of every per-zone sample on any platform (the
    catalogue's meters and the Linux cgroup counters)."""
    counters = {name: kind for name, (kind, _) in catalogue.counter_samples().items()}
    return {**counters, **{name: kind for m in catalogue.CATALOGUE if m.kind != "health"
                           for name, kind, _ in m.samples()}}


def health_samples():
    return {name: kind for m in catalogue.CATALOGUE if m.kind == "health"
            for name, kind, _ in m.samples()}


def test_every_meter_we_emit_has_exactly_its_definitions():
    assert set(BY_TYPE) == {"instance", "smartos_zone", "host"}
    assert len(DEFS["resources"]) == 3
    assert set(BY_TYPE["instance"]["metrics"]) == set(zone_samples())
    assert set(BY_TYPE["smartos_zone"]["metrics"]) == set(zone_samples())
    assert set(BY_TYPE["host"]["metrics"]) == set(health_samples())


@pytest.mark.parametrize("resource_type", ["instance", "smartos_zone", "host"])
def test_gauges_and_cumulatives_get_their_archive_policy(resource_type):
    kinds = {**zone_samples(), **health_samples()}
    for name, extra in BY_TYPE[resource_type]["metrics"].items():
        policy = (extra or {}).get("archive_policy_name", DEFS["archive_policy_default"])
        assert policy in POLICIES, name
        wanted = "smartos-telemetry-gauge" if kinds[name] == "gauge" \
            else "smartos-telemetry-counter-v2"
        assert policy == wanted, name
    # CloudKitty's default aggregation (max) and its rate path (rate:max over
    # max), Aodh's per-resource rate alarms (rate:max); gauges: mean/max/min
    assert set(POLICIES["smartos-telemetry-counter-v2"]["aggregation_methods"]) == {
        "max", "rate:max"}
    assert set(POLICIES["smartos-telemetry-gauge"]["aggregation_methods"]) == {
        "mean", "max", "min"}
    assert DEFS["superseded_archive_policies"] == {
        "smartos-telemetry-counter": "smartos-telemetry-counter-v2"}


def test_every_required_attribute_is_filled_from_our_metadata():
    ours = DEFS["resource_types"]
    theirs = {name: dict(attrs) for name, attrs
              in ceilometer_gnocchi_client.resources_initial.items()}
    for op in ceilometer_gnocchi_client.resources_update_operations:  # as ceilometer-upgrade
        if op["type"] == "update_attribute_type" and op["data"][0]["op"] == "add":
            attr = op["data"][0]["path"].replace("/attributes/", "")
            theirs[op["resource_type"]][attr] = op["data"][0]["value"]
    assert set(ours) == {"smartos_zone"}  # instance and host are ceilometer's
    for resource_type, rd in BY_TYPE.items():
        schema = ours.get(resource_type) or theirs[resource_type]
        required = {a for a, spec in schema.items() if spec.get("required")}
        assert required <= set(rd["attributes"]), resource_type
        assert set(rd["attributes"]) <= set(schema), resource_type


def test_the_pipeline_sends_every_meter_through_the_smartos_sink():
    with open(os.path.join(REPO, "etc", "ceilometer", "pipeline.yaml")) as f:
        pipeline = yaml.safe_load(f)
    (source,) = pipeline["sources"]
    (sink,) = pipeline["sinks"]
    assert source["sinks"] == [sink["name"]]
    for name in {**zone_samples(), **health_samples()}:
        assert any(fnmatch.fnmatch(name, p) for p in source["meters"]), name
    (url,) = sink["publishers"]
    assert url.startswith("smartos-gnocchi://")
    assert "archive_policy=" not in url  # it would override the definitions' policies


class FakeGnocchi:
    """The parts of gnocchiclient the publisher and the upgrade use, in memory."""

    def __init__(self):
        self.resources, self.measures = {}, {}
        self.policies, self.types, self.type_updates = {}, {}, []
        self.metric = types.SimpleNamespace(
            batch_resources_metrics_measures=self._batch)
        self.resource = types.SimpleNamespace(create=self._create,
                                              update=lambda *a, **k: None)
        self.archive_policy = types.SimpleNamespace(create=self._ap_create, get=self._ap_get)
        self.resource_type = types.SimpleNamespace(get=self._rt_get, create=self._rt_create,
                                                   update=self._rt_update)

    def _batch(self, measures, create_metrics=False):
        unknown = [rid for rid in measures if rid not in self.resources]
        if unknown:
            raise gnocchi_exc.BadRequest(400, {
                "cause": "Unknown resources",
                "detail": [{"resource_id": r, "original_resource_id": r} for r in unknown]})
        for rid, metrics in measures.items():
            for name, m in metrics.items():
                self.measures.setdefault((rid, name), []).extend(m["measures"])

    def _create(self, resource_type, resource):
        self.resources[resource["id"]] = (resource_type, dict(resource))

    def _ap_create(self, policy):
        if policy["name"] in self.policies:
            raise gnocchi_exc.ArchivePolicyAlreadyExists(409, "exists")
        self.policies[policy["name"]] = policy

    def _ap_get(self, name):
        if name not in self.policies:
            raise gnocchi_exc.ArchivePolicyNotFound(404, "no such archive policy")
        return self.policies[name]

    def _rt_get(self, name):
        if name not in self.types:
            raise gnocchi_exc.ResourceTypeNotFound(404, "no such type")
        return {"name": name, "attributes": self.types[name]}

    def _rt_create(self, resource_type):
        self.types[resource_type["name"]] = dict(resource_type["attributes"])

    def _rt_update(self, name, ops):
        self.type_updates.append((name, ops))
        for op in ops:
            self.types[name][op["path"].rsplit("/", 1)[1]] = op["value"]


@pytest.fixture
def conf():
    return gnocchi_upgrade.load_conf([])


def sample(name, kind, zone, host="cn1"):
    return ceilometer_sample.Sample(
        name=name, type=kind, unit="ns", volume=1234, user_id=None,
        project_id=zone.attribute("project_id"), resource_id=zone_resource_id(host, zone),
        resource_metadata=zone_metadata(host, zone))


def test_the_publisher_files_instances_under_instance_and_other_zones_under_smartos_zone(
        conf):
    fake = FakeGnocchi()
    vm = Zone(11, "instance-00000001", "libvirt", "6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01",
              "/machine.slice/vm", (("display_name", "web-1"), ("flavor_name", "m1.small"),
                                    ("project_id", "p-1")))
    box = Zone(12, "tenant-a", "docker", None, "/system.slice/docker-1.scope")
    with mock.patch.object(ceilometer_gnocchi_client, "get_gnocchiclient", return_value=fake):
        publisher = gnocchi_publisher.ZoneGnocchiPublisher(
            conf, netutils.urlsplit("smartos-gnocchi://?enable_filter_project=false"))
        health = ceilometer_sample.Sample(
            name="telemetry.engine.drops", type="cumulative", unit="event", volume=0,
            user_id=None, project_id=None, resource_id="cn1",
            resource_metadata={"host": "cn1", "engine": "bpftrace"})
        publisher.publish_samples([sample("cpu.runqueue.latency.p99", "gauge", vm),
                                   sample("cpu.runqueue.latency.p99", "gauge", box),
                                   sample("network.tcp.retransmits", "cumulative", box),
                                   health])
    kind, resource = fake.resources["6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01"]
    assert kind == "instance"
    assert (resource["display_name"], resource["flavor_name"], resource["flavor_id"],
            resource["host"], resource["project_id"]) == ("web-1", "m1.small", "", "cn1", "p-1")
    kind, resource = fake.resources["cn1:docker:tenant-a"]
    assert kind == "smartos_zone"
    assert (resource["display_name"], resource["zone_kind"], resource["host"]) == \
        ("tenant-a", "docker", "cn1")
    kind, resource = fake.resources["cn1"]
    assert (kind, resource["host_name"]) == ("host", "cn1")
    assert fake.measures[("cn1:docker:tenant-a", "network.tcp.retransmits")][0]["value"] == 1234
    assert set(fake.policies) == set(POLICIES)  # the publisher's own, from our file


def test_upgrade_creates_once_then_finds_everything(conf):
    fake = FakeGnocchi()

    def ceilometer_types(conf):  # what ceilometer-upgrade creates
        for name in ("instance", "host"):
            fake.types.setdefault(name, ceilometer_gnocchi_client.resources_initial[name])

    with mock.patch.object(ceilometer_gnocchi_client, "get_gnocchiclient", return_value=fake), \
            mock.patch.object(ceilometer_gnocchi_client, "upgrade_resource_types",
                              side_effect=ceilometer_types):
        first = gnocchi_upgrade.upgrade(conf)
        second = gnocchi_upgrade.upgrade(conf)
        del fake.types["smartos_zone"]["zone_kind"]  # a type from an older release
        third = gnocchi_upgrade.upgrade(conf)
    assert "archive policy smartos-telemetry-gauge: created" in first
    assert "resource type smartos_zone: created" in first
    assert "archive policy smartos-telemetry-gauge: present" in second
    assert "resource type smartos_zone: present" in second
    assert "resource type smartos_zone: added zone_kind" in third
    assert fake.types["smartos_zone"] == DEFS["resource_types"]["smartos_zone"]


def test_a_policy_that_differs_is_reported_and_left_alone():
    wanted = POLICIES["smartos-telemetry-gauge"]
    as_gnocchi_says = {**wanted, "definition": [
        {"granularity": "0:01:00", "timespan": "7 days, 0:00:00"},
        {"granularity": "1:00:00", "timespan": "365 days, 0:00:00"}]}
    assert not gnocchi_upgrade._policy_differs(as_gnocchi_says, wanted)
    assert gnocchi_upgrade._policy_differs({**as_gnocchi_says, "aggregation_methods": ["mean"]},
                                           wanted)
