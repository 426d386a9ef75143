"""SmartOS per-zone counters from ``kstat -p``, through the fixture kstat.

The fixtures (``tests/fixtures/smartos/kstat_boot{1,2,3}.txt``, written
from the documented kstat layouts) are three polls of one host:

1. zones A (joyent, zoneid 5, two vnics), B (lx, 7, vnic eth0, uncapped
   memory: physcap and swapcap ptob(UINT32_MAX), no CPU cap), C (kvm, 9), E
   (12, not a VM), the global zone, a physical NIC, a project's CPU cap and
   three malformed lines; A's kstat names are its UUID cut at 30
   characters; ``caps`` instances are zoneids (rctl.c kstat_create_zone()).
2. A rebooted as zoneid 14 (fresh kstats: its CPU counters already past the
   old values, others not; net1 gone), B gone, C went on.
3. A went on; B is back as zoneid 20.
"""

import os
import re

import pytest
from smartos_fixtures import BIN, FIXTURES, FakeClock, Tools, make_inventory

from smartos_telemetry.commands import CommandFailed
from smartos_telemetry.meters import kstat_counters
from smartos_telemetry.meters.kstat_counters import (
    KSTAT_SELECTORS,
    METERS,
    KstatCounters,
    link_interface,
    parse_kstat_p,
)
from smartos_telemetry.meters.reduce import MeterSample
from smartos_telemetry.zones.smartos_vmadm import SmartOSZones

A = "2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e3f9a01"
B = "b3e1c9d2-4a5f-4e8b-a7c6-1d2e3f4a5b02"
C = "c4f2d0e3-5b6a-4f9c-b8d7-2e3f4a5b6c03"
E = "e6b4f2a5-7d8c-4b1e-9af9-4a5b6c7d8e05"
VMS = {A: A, B: B, C: C}
MIB = 1 << 20


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def by_zone(reading, zone):
    return {s.name: (s.type, s.unit, s.volume) for s in reading.samples if s.zone == zone}


def by_nic(reading, zone):
    return {(n.interface, n.sample.name): n.sample.volume
            for n in reading.nic_samples if n.sample.zone == zone}


def cumulative(reading):
    """Every cumulative sample's volume, by (name, zone, interface or None)."""
    out = {(s.name, s.zone, None): s.volume for s in reading.samples if s.type == "cumulative"}
    out.update({(n.sample.name, n.sample.zone, n.interface): n.sample.volume
                for n in reading.nic_samples})
    return out


def polls(*names, step=300.0, **options):
    clock = FakeClock()
    counters = KstatCounters(clock=clock, **options)
    out = []
    for name in names:
        out.append(counters.fold(fixture(name), VMS))
        clock.now += step
    return out


@pytest.fixture
def tools(tmp_path, monkeypatch):
    monkeypatch.setenv("SMARTOS_FIXTURE_STATE", str(tmp_path))
    return Tools(str(tmp_path))


def test_first_poll_every_meter_of_a_zone():
    (r,) = polls("kstat_boot1.txt")
    assert by_zone(r, A) == {
        "cpu": ("cumulative", "ns", 6_000_000_000),
        "cpu.user": ("cumulative", "ns", 5_000_000_000),
        "cpu.system": ("cumulative", "ns", 1_000_000_000),
        "cpu.runqueue.wait": ("cumulative", "ns", 200_000_000),
        "zone.init.restarts": ("cumulative", "event", 0),
        "cpu.cap.usage": ("gauge", "%", 150),
        "cpu.cap.limit": ("gauge", "%", 200),
        "cpu.cap.above": ("cumulative", "s", 30),
        "cpu.cap.below": ("cumulative", "s", 900),
        "cpu.cap.waiting": ("gauge", "thread", 2),
        "memory": ("gauge", "MiB", 1024.0),
        "memory.usage": ("gauge", "MiB", 512.0),
        "memory.swap.usage": ("gauge", "MiB", 256.0),
        "memory.swap.in": ("cumulative", "MiB", 10.0),  # 2560 pages of 4 KiB
        "memory.paged.out": ("cumulative", "B", 1_048_576),
        "memory.cap.exceeded": ("cumulative", "event", 3),
        "memory.anon.alloc.failures": ("cumulative", "event", 1),
        "disk.vfs.read.requests": ("cumulative", "request", 100),
        "disk.vfs.write.requests": ("cumulative", "request", 200),
        "disk.vfs.read.bytes": ("cumulative", "B", 1_000_000),
        "disk.vfs.write.bytes": ("cumulative", "B", 2_000_000),
        "disk.vfs.read.latency": ("cumulative", "ns", 50_000_000),  # rlentime, not rtime
        "disk.vfs.write.latency": ("cumulative", "ns", 80_000_000),  # wlentime: writes
        "disk.vfs.slow.10ms": ("cumulative", "request", 12),
        "disk.vfs.slow.100ms": ("cumulative", "request", 4),
        "disk.vfs.slow.1s": ("cumulative", "request", 1),
        "disk.vfs.slow.10s": ("cumulative", "request", 0),
        "disk.vfs.throttle.count": ("cumulative", "event", 7),
        "disk.vfs.throttle.delay": ("cumulative", "ns", 350_000),  # 350 us
        "disk.zfs.read.requests": ("cumulative", "request", 40),
        "disk.zfs.write.requests": ("cumulative", "request", 80),
        "disk.zfs.read.bytes": ("cumulative", "B", 4_000_000),
        "disk.zfs.write.bytes": ("cumulative", "B", 8_000_000),
        "disk.zfs.read.latency": ("cumulative", "ns", 90_000_000),
        "disk.zfs.read.wait": ("cumulative", "ns", 10_000_000),
    }
    assert by_nic(r, A) == {
        ("net0", "network.incoming.bytes"): 10000, ("net0", "network.outgoing.bytes"): 20000,
        ("net0", "network.incoming.packets"): 100, ("net0", "network.outgoing.packets"): 200,
        ("net0", "network.incoming.packets.error"): 1,
        ("net0", "network.outgoing.packets.error"): 0,
        ("net0", "network.incoming.packets.drop"): 2,
        ("net0", "network.outgoing.packets.drop"): 0,
        ("net1", "network.incoming.bytes"): 3000, ("net1", "network.outgoing.bytes"): 4000,
        ("net1", "network.incoming.packets"): 30, ("net1", "network.outgoing.packets"): 40,
        ("net1", "network.incoming.packets.error"): 0,
        ("net1", "network.outgoing.packets.error"): 0,
        ("net1", "network.incoming.packets.drop"): 0,
        ("net1", "network.outgoing.packets.drop"): 0,
    }
    for n in r.nic_samples:
        assert (n.sample.type, n.sample.unit) == (
            "cumulative", "packet" if "packets" in n.sample.name else "B")


def test_first_poll_the_other_zones_and_what_was_skipped():
    (r,) = polls("kstat_boot1.txt")
    assert {s.zone for s in r.samples} == {A, B, C}  # not global, not E
    b, c = by_zone(r, B), by_zone(r, C)
    assert "memory" not in b  # physcap ptob(UINT32_MAX) = 16 TiB: no cap
    assert b["memory.usage"] == ("gauge", "MiB", 3072.0)
    assert not [name for name in b if name.startswith("cpu.cap.")]  # no CPU cap kstat
    assert b["cpu"][2] == 9_000_000_000
    assert b["zone.init.restarts"] == ("cumulative", "event", 2)
    assert by_nic(r, B)[("eth0", "network.incoming.bytes")] == 50000  # lx: eth0
    assert c["memory"] == c["memory.usage"] == ("gauge", "MiB", 2304.0)
    assert by_nic(r, C)[("net0", "network.outgoing.bytes")] == 80000
    assert r.malformed == 3
    assert r.unattributed == 1  # ixgbe0: a physical link without a zonename
    assert r.unknown_zones == (E,)
    assert r.restarted == ()
    assert r.bad_values == 0


def test_a_zone_reboot_with_a_new_zoneid_never_goes_backwards():
    r1, r2, r3 = polls("kstat_boot1.txt", "kstat_boot2.txt", "kstat_boot3.txt")
    assert r2.restarted == (A,)
    a2 = by_zone(r2, A)
    # the new boot's CPU counters (6e9 user) are already past the old ones
    # (5e9): the totals add them from zero, not 6e9 - 5e9
    assert a2["cpu"][2] == 6_000_000_000 + 6_500_000_000
    assert a2["cpu.user"][2] == 5_000_000_000 + 6_000_000_000
    assert a2["cpu.system"][2] == 1_000_000_000 + 500_000_000
    assert a2["disk.vfs.read.requests"][2] == 100 + 30
    assert a2["disk.vfs.write.requests"][2] == 200 + 250
    assert a2["disk.vfs.throttle.delay"][2] == (350 + 20) * 1000
    assert a2["disk.zfs.read.latency"][2] == 90_000_000 + 100_000_000
    assert a2["memory.swap.in"][2] == (2560 + 100) * 4096 / MIB
    assert a2["cpu.cap.below"][2] == 900 + 60
    assert a2["memory.usage"] == ("gauge", "MiB", 128.0)  # gauges are the new values
    assert by_nic(r2, A) == {
        ("net0", "network.incoming.bytes"): 10500, ("net0", "network.outgoing.bytes"): 20600,
        ("net0", "network.incoming.packets"): 105, ("net0", "network.outgoing.packets"): 206,
        ("net0", "network.incoming.packets.error"): 1,
        ("net0", "network.outgoing.packets.error"): 0,
        ("net0", "network.incoming.packets.drop"): 2,
        ("net0", "network.outgoing.packets.drop"): 0}  # net1 is gone
    a3 = by_zone(r3, A)
    assert r3.restarted == (B,)  # A's kstats are the same as in poll 2
    assert a3["cpu"][2] == 12_500_000_000 + 1_100_000_000
    assert a3["disk.vfs.throttle.delay"][2] == (350 + 100) * 1000
    assert by_zone(r2, A)["zone.init.restarts"][2] == 0
    assert a3["zone.init.restarts"][2] == 1  # init restarted once in the new boot
    assert by_nic(r3, A)[("net0", "network.incoming.bytes")] == 11500
    assert by_zone(r2, C)["cpu"][2] == 13_000_000_005
    for earlier, later in ((r1, r2), (r2, r3)):
        before, after = cumulative(earlier), cumulative(later)
        assert len(after) > 60
        for key in after.keys() & before.keys():
            assert after[key] >= before[key], key


def test_a_vanished_zone_has_no_samples_and_goes_on_when_back_within_the_ttl():
    r1, r2, r3 = polls("kstat_boot1.txt", "kstat_boot2.txt", "kstat_boot3.txt")
    assert by_zone(r2, B) == {} and not by_nic(r2, B)
    b3 = by_zone(r3, B)
    assert b3["cpu"][2] == 9_000_000_000 + 1_100_000_000
    assert b3["disk.vfs.read.requests"][2] == 1000 + 10
    assert by_nic(r3, B)[("eth0", "network.incoming.bytes")] == 50000 + 100
    assert b3["zone.init.restarts"][2] == 2 + 0  # a boot starts init_restarts at 0


def test_a_zone_gone_longer_than_the_ttl_starts_again():
    _, _, r3 = polls("kstat_boot1.txt", "kstat_boot2.txt", "kstat_boot3.txt", step=1000.0,
                     ttl=900.0)
    assert by_zone(r3, B)["cpu"][2] == 1_100_000_000
    assert by_zone(r3, A)["cpu"][2] == 13_600_000_000  # seen every poll: kept


def test_without_a_zone_list_every_non_global_zone_counts_by_zonename():
    r = KstatCounters(clock=FakeClock()).fold(fixture("kstat_boot1.txt"))
    assert {s.zone for s in r.samples} == {A, B, C, E}
    assert r.unknown_zones == ()


def memory_cap_kstat(physcap):
    name = "2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e"
    return "".join(f"memory_cap:5:{name}:{stat}\t{value}\n" for stat, value in (
        ("crtime", "1000.5"), ("physcap", physcap), ("rss", 1 << 29), ("zonename", A)))


@pytest.mark.parametrize("page_size", [4096, 8192])
def test_an_uncapped_zone_has_no_memory_cap_in_any_encoding(page_size):
    # 0; UINT64_MAX (older images: zone_phys_mem_ctl as is); ptob(UINT32_MAX)
    # (current images): every one means "no cap", never a 16 TiB cap
    for physcap in (0, 2**64 - 1, (2**32 - 1) * page_size):
        r = KstatCounters(clock=FakeClock(), page_size=page_size).fold(
            memory_cap_kstat(physcap), VMS)
        assert by_zone(r, A) == {"memory.usage": ("gauge", "MiB", 512.0)}, physcap
    # a real cap one page below the sentinel is a cap
    capped = (2**32 - 2) * page_size
    r = KstatCounters(clock=FakeClock(), page_size=page_size).fold(
        memory_cap_kstat(capped), VMS)
    assert by_zone(r, A)["memory"] == ("gauge", "MiB", capped / MIB)


def test_caps_kstats_are_found_whatever_their_instance():
    # caps:<zoneid>:cpucaps_zone_<zoneid> (rctl.c creates it in the zone)
    lines = [ln for ln in fixture("kstat_boot1.txt").splitlines() if ln.startswith("caps:")]
    assert {ln.split(":")[1] for ln in lines if "cpucaps_zone_5:" in ln} == {"5"}
    (r,) = polls("kstat_boot1.txt")
    assert by_zone(r, A)["cpu.cap.limit"] == ("gauge", "%", 200)


def test_parse_kstat_p():
    text = ("zones:5:2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e:zonename\t" + A + "\n"
            "zones:5:2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e:nsec_user\t18446744073709551615\n"
            "zones:5:2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e:crtime\t1000.123456789\n"
            "odd:0:name:with:colons:stat\tsome text\twith a tab\n"
            "\n"
            "no tab here\n"
            "a:b:c:d\t1\n"
            "a:1:c\t1\n"
            ":1:c:d\t1\n"
            "a:1:c:\t1\n")
    kstats, malformed = parse_kstat_p(text)
    assert malformed == 5
    assert [(k.module, k.instance, k.name) for k in kstats] == [
        ("zones", 5, "2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e"), ("odd", 0, "name:with:colons")]
    assert kstats[0].stats == {"zonename": A, "nsec_user": 2**64 - 1, "crtime": 1000.123456789}
    assert kstats[1].stats == {"stat": "some text\twith a tab"}


def test_link_interface():
    assert link_interface("z5_net0") == "net0"
    assert link_interface("z7_eth0") == "eth0"
    assert link_interface("z123_external_0") == "external_0"
    assert link_interface("net0") == "net0"
    assert link_interface("zfoo_net0") == "zfoo_net0"


def test_missing_statistics_are_counted_not_guessed():
    text = "\n".join(line for line in fixture("kstat_boot1.txt").splitlines()
                     if not line.startswith("zones:5:") or ":nsec_sys\t" not in line)
    r = KstatCounters(clock=FakeClock()).fold(text, VMS)
    a = by_zone(r, A)
    assert "cpu" not in a and "cpu.system" not in a
    assert a["cpu.user"][2] == 5_000_000_000
    assert r.bad_values == 2


def test_poll_runs_the_configured_kstat_with_the_selectors(tools):
    tools.answer("kstat", "kstat_boot1.txt")
    counters = KstatCounters(kstat=os.path.join(BIN, "kstat"), clock=FakeClock())
    r = counters.poll(VMS)
    assert tools.calls("kstat") == ["-p " + " ".join(KSTAT_SELECTORS)]
    assert by_zone(r, A)["cpu"] == ("cumulative", "ns", 6_000_000_000)
    tools.answer("kstat", text="", rc=2, stderr="kstat: kstat_open failed")
    with pytest.raises(CommandFailed, match=r"kstat -p zones::: .* failed: exit status 2: "
                                            r"kstat: kstat_open failed \(fix: "):
        counters.poll(VMS)


def test_zone_inventory_and_counters_together(tools):
    tools.answer("vmadm", "vmadm_lookup.json")
    tools.answer("zoneadm", "zoneadm_boot1.txt")
    tools.answer("kstat", "kstat_boot1.txt")
    zones = SmartOSZones(make_inventory(tools, FakeClock()))
    counters = KstatCounters(kstat=os.path.join(BIN, "kstat"), clock=FakeClock())
    r = counters.poll(zones.uuids_by_zonename())
    assert {s.zone for s in r.samples} == {z.instance_uuid for z in zones.zones()}
    assert MeterSample("memory.usage", "gauge", "MiB", 512.0, A) in r.samples


def test_the_docstring_table_is_the_meter_table():
    rows = {}
    for line in kstat_counters.__doc__.splitlines():
        m = re.match(r"(\S+)\s+(cumulative|gauge)\s+(\S+)\s+(\S+)\s+(.*)\Z", line)
        if m:
            rows[m.group(1)] = m.groups()[1:]
    assert list(rows) == [m.name for m in METERS]
    for meter in METERS:
        type_, unit, source, detail = rows[meter.name]
        assert (type_, unit) == (meter.type, meter.unit), meter.name
        assert source.startswith(meter.module + ":"), meter.name
        assert all(f in detail.replace("+", " ").split() for f in meter.fields), meter.name


def test_the_fixtures_follow_the_platform_s_formats():
    """What the fixtures were written from, so that they cannot drift back to
    the code's assumptions."""
    import json
    vms = [v for v in json.load(open(os.path.join(FIXTURES, "vmadm_lookup.json")))
           if isinstance(v, dict) and "zonename" in v]
    lx = {v["zonename"] for v in vms if v["brand"] == "lx"}
    assert lx and {v["brand"] for v in vms} >= {"joyent", "lx", "kvm", "bhyve", "builder"}
    for v in vms:  # proptable.js: lx vnics are eth<N>, the others net<N>
        prefix = "eth" if v["zonename"] in lx else "net"
        assert all(re.fullmatch(prefix + r"\d+", n["interface"]) for n in v["nics"]), v
    assert any("ips" in n and "ip" not in n for v in vms for n in v["nics"])
    for name in ("kstat_boot1.txt", "kstat_boot2.txt", "kstat_boot3.txt"):
        kstats, _ = parse_kstat_p(fixture(name))
        for ks in kstats:
            m = re.fullmatch(r"cpucaps_zone_(\d+)", ks.name)
            if ks.module == "caps" and m:  # rctl.c: kstat_create_zone("caps", zoneid, ...)
                assert ks.instance == int(m.group(1)), (name, ks.name, ks.instance)
            m = re.fullmatch(r"z(\d+)_(\w+)", ks.name)
            if ks.module == "link" and m:
                prefix = "eth" if ks.stats["zonename"] in lx else "net"
                assert m.group(2).startswith(prefix), (name, ks.name)
            if ks.module == "zones" and ks.stats.get("zonename") != "global":
                assert "init_restarts" in ks.stats, (name, ks.name)
            if ks.module == "memory_cap":  # current images: uncapped = ptob(UINT32_MAX)
                assert ks.stats["physcap"] != 2**64 - 1, (name, ks.name)
    for name in ("zoneadm_boot1.txt", "zoneadm_boot2.txt"):  # zoneadm.c zone_print()
        for line in fixture(name).splitlines():
            if line[:1].isdigit():
                assert line.replace("\\:", "").count(":") == 7, line
