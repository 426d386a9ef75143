"""An instance zone's flavor reaches Gnocchi's ``instance`` resource.

Linux: Nova's metadata in libvirt's domain record, ``<nova:flavor name=...
id=...>`` -- the ``id`` attribute written by Nova from 2025.2 on, read by
ceilometer 27's libvirt discovery (ceilometer/compute/discovery.py,
InstanceDiscovery._get_flavor_id: ``flavor_xml.attrib.get("id")``, else
Nova's API, else the flavor's name).  SmartOS: vmadm's ``billing_id``
(vmadm.8.md: the VM's billing category, a UUID; default
00000000-0000-0000-0000-000000000000, i.e. none).  The ``instance``
definition maps ``resource_metadata.flavor_id`` to the resource's
``flavor_id`` (gnocchi/resources.yaml).
"""

import json
import os
from unittest import mock

from ceilometer import gnocchi_client as ceilometer_gnocchi_client
from oslo_utils import netutils
from test_gnocchi_resources import FakeGnocchi, sample

from smartos_telemetry.gnocchi import publisher as gnocchi_publisher
from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade
from smartos_telemetry.polling.pollsters import zone_metadata
from smartos_telemetry.zones.linux_cgroups import libvirt_record
from smartos_telemetry.zones.smartos_vmadm import parse_vmadm

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "smartos")
UUID = "6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01"
FLAVOR_ID = "3f1e5a7c-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
PACKAGE = "8d1c2b3a-4e5f-4a6b-9c7d-0e1f2a3b4c5d"

#: a running domain's status record as libvirt keeps it (<domstatus> around
#: the <domain>), with the metadata Nova's libvirt driver writes
#: (nova/virt/libvirt/config.py, LibvirtConfigGuestMetaNovaInstance and
#: LibvirtConfigGuestMetaNovaFlavor.format_dom: name, memory, disk, swap,
#: ephemeral, vcpus; the flavor's id as an attribute since 2025.2)
STATUS = """<domstatus state='running' reason='booted' pid='4242'>
  <domain type='kvm' id='3'>
    <name>instance-0000002b</name>
    <uuid>{uuid}</uuid>
    <metadata>
      <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:package version="32.0.0"/>
        <nova:name>web-1</nova:name>
        <nova:creationTime>2026-11-30 09:12:44</nova:creationTime>
        <nova:flavor name="m1.small"{id}>
          <nova:memory>2048</nova:memory>
          <nova:disk>20</nova:disk>
          <nova:swap>0</nova:swap>
          <nova:ephemeral>0</nova:ephemeral>
          <nova:vcpus>1</nova:vcpus>
        </nova:flavor>
        <nova:owner>
          <nova:user uuid="0b7e5c1d2f3a4b6c8d9e0f1a2b3c4d5e">alice</nova:user>
          <nova:project uuid="6f0c3b1e9a8d4c2b8e5f7a1d3c9b2e40">acme</nova:project>
        </nova:owner>
        <nova:root type="image" uuid="5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"/>
      </nova:instance>
    </metadata>
  </domain>
</domstatus>
"""


def record(tmp_path, flavor_attr):
    (tmp_path / "instance-0000002b.xml").write_text(STATUS.format(uuid=UUID, id=flavor_attr))
    return dict(libvirt_record("instance-0000002b", (str(tmp_path),)).attributes)


def test_nova_2025_2_metadata_gives_the_flavors_id(tmp_path):
    attrs = record(tmp_path, f' id="{FLAVOR_ID}"')
    assert (attrs["flavor_id"], attrs["flavor_name"]) == (FLAVOR_ID, "m1.small")


def test_older_nova_metadata_gives_the_name_as_ceilometer_does_without_an_api(tmp_path):
    attrs = record(tmp_path, "")
    assert (attrs["flavor_id"], attrs["flavor_name"]) == ("m1.small", "m1.small")


def vm_zone(billing_id):
    entry = json.load(open(os.path.join(FIXTURES, "vmadm_get.json")))  # a real `vmadm get`
    if billing_id is None:
        del entry["billing_id"]
    else:
        entry["billing_id"] = billing_id
    (vm,) = parse_vmadm(json.dumps(entry))[0].values()
    return vm


def test_smartos_billing_id_is_the_flavor_and_vmadms_default_is_none():
    vm = vm_zone(PACKAGE)
    assert vm.metadata()["flavor_id"] == PACKAGE
    assert vm.zone().attribute("flavor_id") == PACKAGE
    for unset in ("00000000-0000-0000-0000-000000000000", None, ""):
        vm = vm_zone(unset)
        assert "flavor_id" not in vm.metadata()
        assert zone_metadata("cn1", vm.zone())["flavor_id"] == ""


def test_the_flavor_id_reaches_the_gnocchi_instance_resource(tmp_path):
    from smartos_telemetry.zones import Zone

    attrs = record(tmp_path, f' id="{FLAVOR_ID}"')
    vm = Zone(11, "instance-0000002b", "libvirt", UUID, "/machine.slice/vm",
              tuple(sorted(attrs.items())))
    smartos = vm_zone(PACKAGE).zone()
    fake = FakeGnocchi()
    conf = gnocchi_upgrade.load_conf([])
    with mock.patch.object(ceilometer_gnocchi_client, "get_gnocchiclient", return_value=fake):
        publisher = gnocchi_publisher.ZoneGnocchiPublisher(
            conf, netutils.urlsplit("smartos-gnocchi://?enable_filter_project=false"))
        publisher.publish_samples([sample("cpu.runqueue.latency.p99", "gauge", vm),
                                   sample("cpu.runqueue.latency.p99", "gauge", smartos)])
    kind, resource = fake.resources[UUID]
    assert kind == "instance"
    assert (resource["flavor_id"], resource["flavor_name"]) == (FLAVOR_ID, "m1.small")
    kind, resource = fake.resources[smartos.instance_uuid]
    assert (kind, resource["flavor_id"]) == ("instance", PACKAGE)
