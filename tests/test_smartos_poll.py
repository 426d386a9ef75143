"""Issue 7's end to end on this (non-SmartOS) host: `smartos-telemetry poll
--once --json` with fixture commands in place of vmadm, zoneadm and kstat
prints the SmartOS samples of every fixture zone."""

import json
import os
import shutil
import subprocess
import sys

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "smartos")
BIN = os.path.join(FIXTURES, "bin")


def run_poll(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(os.path.join(FIXTURES, "vmadm_lookup.json"), state / "vmadm.out")
    shutil.copy(os.path.join(FIXTURES, "zoneadm_boot1.txt"), state / "zoneadm.out")
    shutil.copy(os.path.join(FIXTURES, "kstat_boot1.txt"), state / "kstat.out")
    conf = tmp_path / "ceilometer.conf"
    conf.write_text(f"""[DEFAULT]
host = cn7
[smartos]
platform = smartos
vmadm_path = {BIN}/vmadm
zoneadm_path = {BIN}/zoneadm
kstat_path = {BIN}/kstat
state_file = {tmp_path / 'state.json'}
""")
    proc = subprocess.run(
        [sys.executable, "-m", "smartos_telemetry.cli.main", "poll", "--once", "--json",
         "--interval", "0.5", "--config-file", str(conf)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "SMARTOS_FIXTURE_STATE": str(state)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_poll_prints_the_kstat_samples_of_every_fixture_zone(tmp_path):
    samples, stderr = run_poll(tmp_path)
    # the fixture holds malformed entries on purpose; the well-formed VMs:
    vms = {vm["uuid"]: vm for vm in json.load(open(os.path.join(FIXTURES, "vmadm_lookup.json")))
           if isinstance(vm, dict) and "zonename" in vm}
    running = {line.split(":")[1] for line in open(os.path.join(FIXTURES, "zoneadm_boot1.txt"))
               if line.count(":") >= 6 and line.split(":")[1] != "global"}
    fixture_zones = {u for u in vms if vms[u]["zonename"] in running}
    assert fixture_zones, "the fixture has running zones"
    by_zone = {}
    for s in samples:
        by_zone.setdefault(s["resource_metadata"]["instance_id"], []).append(s)
    assert set(by_zone) == fixture_zones
    for uuid in fixture_zones:
        names = {s["name"] for s in by_zone[uuid]}
        assert {"cpu", "cpu.user", "memory.usage", "disk.vfs.read.bytes"} <= names, uuid
        zone_samples = [s for s in by_zone[uuid] if s["resource_id"] == uuid]
        assert zone_samples
        for s in zone_samples:
            assert s["project_id"] == vms[uuid]["owner_uuid"]
            assert s["resource_metadata"]["display_name"] == (vms[uuid].get("alias") or uuid)
        cpu = next(s for s in zone_samples if s["name"] == "cpu")
        assert cpu["type"] == "cumulative" and cpu["unit"] == "ns" and cpu["volume"] > 0
    # per-vnic samples: one resource per interface, as ceilometer's network meters
    nic = [s for s in samples if s["name"] == "network.incoming.bytes"]
    assert nic and all(s["resource_id"] == f"{s['resource_metadata']['instance_id']}-"
                                           f"{s['resource_metadata']['interface']}"
                       for s in nic)
    # no libdtrace on this host: the D meters are disabled (one line, naming the
    # cause and the next step), the counters are not
    lines = [line for line in stderr.splitlines() if "dtrace not available" in line]
    assert len(lines) == 1 and "smartos-telemetry check" in lines[0], lines


def test_the_readme_documents_every_kstat_counter_and_its_source():
    from smartos_telemetry.meters.kstat_counters import METERS
    readme = open(os.path.join(os.path.dirname(FIXTURES), "..", "..", "README.rst")).read()
    for meter in METERS:
        assert f"\n{meter.name} " in readme, meter.name
