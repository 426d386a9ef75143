"""SmartOS zone inventory: vmadm and zoneadm, through fixture executables.

``tests/fixtures/smartos/bin/{vmadm,zoneadm,kstat}`` print the fixture the
test put in ``$SMARTOS_FIXTURE_STATE`` (written from vmadm(8)'s
``lookup -j`` / ``get`` JSON and zoneadm(8)'s ``list -p`` format) and record
their arguments; the inventory is pointed at them through its configurable
command paths.
"""

import json
import os
import time

import pytest
from smartos_fixtures import (
    FIXTURES,
    FakeClock,
    Tools,
    make_inventory,
)

from smartos_telemetry.commands import CommandFailed
from smartos_telemetry.errors import TelemetryError
from smartos_telemetry.zones import Zone
from smartos_telemetry.zones.smartos_vmadm import (
    VMADM_FIELDS,
    Nic,
    SmartOSZones,
    VmadmInventory,
    parse_vmadm,
    parse_zoneadm,
)

A = "2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e3f9a01"  # joyent, web01
B = "b3e1c9d2-4a5f-4e8b-a7c6-1d2e3f4a5b02"  # lx, db01
C = "c4f2d0e3-5b6a-4f9c-b8d7-2e3f4a5b6c03"  # kvm, no alias, no cap
D = "d5a3e1f4-6c7b-4a0d-89e8-3f4a5b6c7d04"  # bhyve, stopped
G = "a7c5e3b6-8e9d-4c2f-8b0a-5b6c7d8e9f06"  # builder brand, stopped
E = "e6b4f2a5-7d8c-4b1e-9af9-4a5b6c7d8e05"  # a zone that is not a VM
P1 = "9f0e7d6c-5b4a-4392-8170-6e5d4c3b2a19"
P2 = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"






@pytest.fixture
def tools(tmp_path, monkeypatch):
    monkeypatch.setenv("SMARTOS_FIXTURE_STATE", str(tmp_path))
    t = Tools(str(tmp_path))
    t.answer("vmadm", "vmadm_lookup.json")
    t.answer("zoneadm", "zoneadm_boot1.txt")
    return t




ATTRS_A = (("brand", "joyent"), ("cpu_cap", 200), ("display_name", "web01"),
           ("max_physical_memory", 1024), ("project_id", P1), ("zfs_io_priority", 100),
           ("zonename", A))
ATTRS_B = (("brand", "lx"), ("display_name", "db01"), ("max_physical_memory", 4096),
           ("project_id", P2), ("zfs_io_priority", 100), ("zonename", B))
ATTRS_C = (("brand", "kvm"), ("display_name", C), ("max_physical_memory", 2304),
           ("project_id", P1), ("zfs_io_priority", 50), ("zonename", C))


def test_zones_are_the_vms_that_are_up_with_live_zoneids(tools):
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    assert zones.zones() == [
        Zone(5, "web01", "joyent", A, None, ATTRS_A),
        Zone(7, "db01", "lx", B, None, ATTRS_B),
        Zone(9, C, "kvm", C, None, ATTRS_C),
    ]  # not the global zone (0), not E (no VM), not D (stopped: no zoneid)
    assert tools.calls("vmadm") == ["lookup -j -o " + ",".join(VMADM_FIELDS)]
    assert tools.calls("zoneadm") == ["list -p"]


def test_metadata_for_ceilometer(tools):
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    expected_a = {"display_name": "web01", "project_id": P1, "instance_id": A, "zonename": A,
                  "brand": "joyent", "state": "running", "cpu_cap": 200,
                  "max_physical_memory": 1024, "zfs_io_priority": 100}
    assert zones.metadata(zones.by_zonename(A)) == expected_a
    assert zones.metadata(A) == expected_a
    assert zones.metadata(C)["display_name"] == C  # no alias: the UUID
    assert zones.metadata(C)["cpu_cap"] is None  # vmadm's 0 means uncapped
    assert zones.metadata(D) == {
        "display_name": "builder", "project_id": P2, "instance_id": D, "zonename": D,
        "brand": "bhyve", "state": "stopped", "cpu_cap": 400, "max_physical_memory": 8192,
        "zfs_io_priority": 100}
    assert zones.metadata(E) == {}
    # nics.*.ips supersedes the deprecated nics.*.ip (vmadm.8.md); an old
    # VM's nic with only ip keeps that address
    assert zones.nic(A, "net0") == Nic("net0", "90:b8:d0:1a:2b:3c", "external",
                                       ("203.0.113.10/24", "2001:db8::10/64"), 42, True)
    assert zones.nic(A, "net1") == Nic("net1", "90:b8:d0:1a:2b:3d", "internal",
                                       ("10.0.0.10",))
    assert zones.nic(A, "net7") is None
    # lx zones name their vnics eth0... (proptable.js interface_prefix)
    assert zones.nic(B, "eth0") == Nic("eth0", "90:b8:d0:4d:5e:6f", "external",
                                       ("203.0.113.11/24",), None, True)
    assert zones.nic(B, "net0") is None
    assert zones.nic(C, "net0").ips == ("dhcp",)
    assert zones.metadata(G)["brand"] == "builder"
    assert zones.uuids_by_zonename() == {A: A, B: B, C: C, D: D, G: G}


def test_resolve_and_by_zonename(tools):
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    assert zones.resolve(5).instance_uuid == A
    assert zones.resolve(9).kind == "kvm"
    assert zones.resolve(0) is None  # the global zone
    assert zones.resolve(12) is None  # a zone, but not a VM
    assert zones.by_zonename(B).id == 7
    assert zones.by_zonename(D) is None  # stopped
    assert zones.by_zonename("global") is None
    assert zones.by_zonename("nonesuch") is None


def test_reboot_gives_a_new_zoneid_and_resolve_finds_it_without_waiting(tools):
    clock = FakeClock()
    zones = SmartOSZones(make_inventory(tools, clock))
    assert zones.resolve(5).instance_uuid == A
    tools.answer("zoneadm", "zoneadm_boot2.txt")  # A rebooted as 14; B went away
    clock.now += 2  # well within zoneid_ttl, past zoneid_min_refresh_interval
    assert zones.resolve(14) == Zone(14, "web01", "joyent", A, None, ATTRS_A)
    assert zones.resolve(5) is None
    assert [z.id for z in zones.zones()] == [9, 14]
    assert zones.by_zonename(B) is None
    assert len(tools.calls("vmadm")) == 1  # vmadm knew them all: not asked again


def test_zoneids_are_cached_for_their_ttl_only(tools):
    clock = FakeClock()
    inventory = make_inventory(tools, clock, zoneid_ttl=10.0)
    zones = SmartOSZones(inventory)
    zones.zones()
    zones.zones()
    assert inventory.zoneadm_runs == 1
    clock.now += 11
    zones.zones()
    assert inventory.zoneadm_runs == 2


def test_vmadm_answer_is_cached_for_refresh_interval(tools):
    clock = FakeClock()
    inventory = make_inventory(tools, clock, refresh_interval=300.0)
    zones = SmartOSZones(inventory)
    for _ in range(3):
        zones.zones()
        clock.now += 20
    assert inventory.vmadm_runs == 1
    clock.now += 300
    zones.zones()
    assert inventory.vmadm_runs == 2


def test_a_new_vm_makes_vmadm_run_early_but_a_non_vm_zone_does_not_keep_it_running(tools):
    with open(os.path.join(FIXTURES, "vmadm_lookup.json")) as f:
        vms = json.load(f)
    with open(os.path.join(FIXTURES, "zoneadm_boot1.txt")) as f:
        zoneadm = f.read()
    tools.answer("vmadm", text=json.dumps([v for v in vms if A not in str(v)]))
    tools.answer("zoneadm", text="".join(ln for ln in zoneadm.splitlines(keepends=True)
                                         if A not in ln))
    clock = FakeClock()
    inventory = make_inventory(tools, clock, min_refresh_interval=10.0, zoneid_ttl=10.0)
    zones = SmartOSZones(inventory)
    assert [z.id for z in zones.zones()] == [7, 9]
    assert inventory.vmadm_runs == 1  # E (not a VM) is up: vmadm had just run anyway
    tools.answer("vmadm", "vmadm_lookup.json")  # A is created and boots as zoneid 5
    tools.answer("zoneadm", "zoneadm_boot1.txt")
    clock.now += 11
    assert [z.id for z in zones.zones()] == [5, 7, 9]
    assert inventory.vmadm_runs == 2
    for _ in range(3):
        clock.now += 11
        zones.zones()
    assert inventory.vmadm_runs == 2  # E alone does not make vmadm run again


def test_a_vm_booted_just_after_vmadm_ran_is_found_once_vmadm_may_run_again(tools):
    with open(os.path.join(FIXTURES, "vmadm_lookup.json")) as f:
        vms = json.load(f)
    tools.answer("vmadm", text=json.dumps([v for v in vms if A not in str(v)]))
    clock = FakeClock()
    inventory = make_inventory(tools, clock, min_refresh_interval=10.0, zoneid_ttl=1.0)
    zones = SmartOSZones(inventory)
    inventory.vms()  # vmadm runs before A exists...
    tools.answer("vmadm", "vmadm_lookup.json")
    clock.now += 5  # ...A boots; too soon to run vmadm again
    assert [z.id for z in zones.zones()] == [7, 9]
    clock.now += 6
    assert [z.id for z in zones.zones()] == [5, 7, 9]
    assert inventory.vmadm_runs == 2


def test_vmadm_failing_with_no_good_answer_is_a_clear_error(tools):
    tools.answer("vmadm", text="", rc=1, stderr="Error: vminfod is not running")
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    with pytest.raises(CommandFailed) as info:
        zones.zones()
    err = info.value
    assert isinstance(err, TelemetryError)
    assert err.command[0] == tools.path("vmadm")
    assert str(err).startswith(f"`{tools.path('vmadm')} lookup -j -o uuid,")
    assert "exit status 1: Error: vminfod is not running" in str(err)
    assert "fix: check that" in str(err) and "vmadm path/timeout" in str(err)


def test_last_good_inventory_stands_in_for_max_stale_then_the_error(tools):
    clock = FakeClock()
    inventory = make_inventory(tools, clock, refresh_interval=60.0, max_stale=600.0,
                               min_refresh_interval=10.0)
    zones = SmartOSZones(inventory)
    before = zones.zones()
    tools.answer("vmadm", text="", rc=1, stderr="boom")
    clock.now += 100
    assert zones.zones() == before  # stale, but within max_stale
    assert isinstance(inventory.last_error, CommandFailed)
    runs = inventory.vmadm_runs
    clock.now += 1
    zones.zones()
    assert inventory.vmadm_runs == runs  # a failing vmadm is not re-run every call
    clock.now += 600
    with pytest.raises(CommandFailed, match="boom"):
        zones.zones()
    tools.answer("vmadm", "vmadm_lookup.json")
    clock.now += 11
    assert zones.zones() == before
    assert inventory.last_error is None


def test_vmadm_timeout_kills_it_and_says_so(tools):
    tools.answer("vmadm", "vmadm_lookup.json", sleep=5)
    zones = SmartOSZones(make_inventory(tools, FakeClock(), vmadm_timeout=0.3))
    started = time.monotonic()
    with pytest.raises(CommandFailed, match=r"no answer within 0\.3 s \(killed\)"):
        zones.zones()
    assert time.monotonic() - started < 3


def test_missing_command_and_non_json_output(tools, tmp_path):
    zones = SmartOSZones(VmadmInventory(vmadm=str(tmp_path / "no-vmadm"),
                                        zoneadm=tools.path("zoneadm"), clock=FakeClock()))
    with pytest.raises(CommandFailed, match="cannot run .*no-vmadm: No such file"):
        zones.zones()
    tools.answer("vmadm", "not_json.txt")
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    with pytest.raises(CommandFailed, match="output is not vmadm's JSON"):
        zones.zones()


def test_zoneadm_failing_is_a_clear_error(tools):
    tools.answer("zoneadm", text="", rc=1, stderr="zoneadm: not permitted")
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    with pytest.raises(CommandFailed, match=r"zoneadm list -p` failed: exit status 1: "
                                            r"zoneadm: not permitted \(fix: "):
        zones.resolve(5)


def test_parse_vmadm_skips_what_is_not_a_vm():
    with open(os.path.join(FIXTURES, "vmadm_lookup.json")) as f:
        vms, skipped = parse_vmadm(f.read())
    assert sorted(vms) == sorted([A, B, C, D, G])
    assert vms[G].brand == "builder"
    assert skipped == 3  # no uuid; a uuid that is not one; a string
    assert vms[B].zfs_io_priority == 100  # "100": read as a number
    assert vms[B].cpu_cap is None
    assert vms[D].zoneid is None and vms[D].state == "stopped"


def test_parse_vmadm_reads_vmadm_get_output_too():
    with open(os.path.join(FIXTURES, "vmadm_get.json")) as f:
        vms, skipped = parse_vmadm(f.read())
    assert skipped == 0
    (vm,) = vms.values()
    assert (vm.uuid, vm.alias, vm.brand, vm.owner_uuid, vm.max_physical_memory) == \
        (A, "web01", "joyent", P1, 1024)
    assert vm.zoneid is None  # vmadm's zoneid is never trusted: zoneadm's is live
    with pytest.raises(ValueError):
        parse_vmadm('"just a string"')


def test_parse_zoneadm():
    with open(os.path.join(FIXTURES, "zoneadm_boot1.txt")) as f:
        live, malformed = parse_zoneadm(f.read())
    assert malformed == 1
    assert sorted((z.zoneid, z.zonename, z.brand) for z in live.values()) == [
        (5, A, "joyent"), (7, B, "lx"), (9, C, "kvm"), (12, E, "joyent-minimal")]
    live, malformed = parse_zoneadm("-:" + A + ":installed:/zones/x:" + A + ":joyent:excl:1\n")
    assert (live, malformed) == ({}, 0)
    # zoneadm.c zone_print(): the 8th field, debugid, is empty for a zone without one
    live, malformed = parse_zoneadm("14:" + A + ":running:/zones/" + A + ":" + A +
                                    ":joyent:excl:\n")
    assert (live[A].zoneid, live[A].brand, malformed) == (14, "joyent", 0)
