"""Running totals across agent restarts and host reboots (the state file).

The agent restarts for real here: each ``smartos-telemetry poll`` is a new
agent process with the SmartOS fixture commands, sharing one state file;
the engine meters are checked through the service with a stand-in engine
(a new engine per agent, counting from zero, as a real one does), and on a
real kernel in tests/test_state_file_real.py.
"""

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from agent_conf import linux_agent_conf

from smartos_telemetry.meters import saved_totals
from smartos_telemetry.meters.kstat_counters import KstatCounters
from smartos_telemetry.meters.saved_totals import SavedTotals, StateFile
from smartos_telemetry.platform.linux import Linux
from smartos_telemetry.polling import telemetry_service
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Histogram, Snapshot
from smartos_telemetry.zones import Zone

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "smartos")
BIN = os.path.join(FIXTURES, "bin")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- SmartOS kstat counters: real agent restarts with the fixture commands -----------

class SmartOSAgent:
    """``smartos-telemetry poll --once`` runs (each a new agent) against the
    fixture commands and one state file."""

    def __init__(self, tmp_path, state_file):
        self.fixture = tmp_path / "fixture"
        self.fixture.mkdir()
        shutil.copy(os.path.join(FIXTURES, "vmadm_lookup.json"), self.fixture / "vmadm.out")
        self.conf = tmp_path / "ceilometer.conf"
        self.conf.write_text(f"""[DEFAULT]
host = cn7
[smartos]
platform = smartos
vmadm_path = {BIN}/vmadm
zoneadm_path = {BIN}/zoneadm
kstat_path = {BIN}/kstat
state_file = {state_file}
""")

    def poll(self, kstat, zoneadm):
        """One agent run (two polls of the same kstat output); ``{(meter,
        resource): volume}`` of its cumulative samples, and its stderr."""
        shutil.copy(os.path.join(FIXTURES, zoneadm), self.fixture / "zoneadm.out")
        shutil.copy(os.path.join(FIXTURES, kstat), self.fixture / "kstat.out")
        proc = subprocess.run(
            [sys.executable, "-m", "smartos_telemetry.cli.main", "poll", "--once", "--json",
             "--interval", "0.1", "--config-file", str(self.conf)],
            capture_output=True, text=True, timeout=120, cwd=REPO,
            env={**os.environ, "SMARTOS_FIXTURE_STATE": str(self.fixture)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        samples = [json.loads(line) for line in proc.stdout.splitlines()]
        return {(s["name"], s["resource_id"]): s["volume"] for s in samples
                if s["type"] == "cumulative"}, proc.stderr


BOOTS = (("kstat_boot1.txt", "zoneadm_boot1.txt"), ("kstat_boot2.txt", "zoneadm_boot2.txt"),
         ("kstat_boot3.txt", "zoneadm_boot2.txt"))


def one_agent_totals():
    """What one agent that never restarted reports after the same polls."""
    uuids = {vm["zonename"]: vm["uuid"]
             for vm in json.load(open(os.path.join(FIXTURES, "vmadm_lookup.json")))
             if isinstance(vm, dict) and "zonename" in vm}
    counters, out = KstatCounters(), []
    for kstat, zoneadm in BOOTS:
        running = {line.split(":")[1] for line in open(os.path.join(FIXTURES, zoneadm))
                   if line.count(":") >= 6}
        text = open(os.path.join(FIXTURES, kstat)).read()
        for _ in range(2):  # each agent run polls twice
            reading = counters.fold(text, {z: u for z, u in uuids.items() if z in running})
        totals = {(s.name, s.zone): s.volume for s in reading.samples if s.type == "cumulative"}
        totals.update({(n.sample.name, f"{n.sample.zone}-{n.interface}"): n.sample.volume
                       for n in reading.nic_samples if n.sample.type == "cumulative"})
        out.append(totals)
    return out


def test_kstat_totals_go_on_across_agent_restarts_exactly(tmp_path):
    agent = SmartOSAgent(tmp_path, tmp_path / "state" / "totals.json")
    expected = one_agent_totals()
    for (kstat, zoneadm), want in zip(BOOTS, expected, strict=True):
        got, _ = agent.poll(kstat, zoneadm)
        assert got == want, kstat
    # the zone that rebooted between boot1 and boot2 (new zoneid, new kstats):
    # its cpu total is boot1's plus boot2's, not boot2's alone
    rebooted = "2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e3f9a01"
    assert expected[1][("cpu", rebooted)] > expected[0][("cpu", rebooted)]


def test_without_a_state_file_a_restart_starts_again(tmp_path):
    # the setting that turns saving off; shows what the state file is for
    agent = SmartOSAgent(tmp_path, "")
    expected = one_agent_totals()
    agent.poll(*BOOTS[0])
    got, _ = agent.poll(*BOOTS[1])
    rebooted = ("cpu", "2a7c1e4f-8d3b-4f6a-9c2e-5b1d7e3f9a01")
    assert got[rebooted] < expected[1][rebooted]


CORRUPT = [
    b"", b"{", b"\xff\xfe not text", b"[]", b'{"format": "something else"}',
    json.dumps({"format": saved_totals.FORMAT, "version": 99}).encode(),
    json.dumps({"format": saved_totals.FORMAT, "version": 1, "zones": {"z": 5},
                "kstat": {}}).encode(),
    json.dumps({"format": saved_totals.FORMAT, "version": 1, "zones": {},
                "kstat": {"counters": {"cpu": [["u", -5, 0, 1]]}, "kstats": []}}).encode(),
]


@pytest.mark.parametrize("content", CORRUPT)
def test_a_corrupt_state_file_is_one_warning_and_nothing_read(tmp_path, caplog, content):
    state = tmp_path / "totals.json"
    state.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        back = StateFile(str(state)).load()
    assert (back.zones, back.kstat) == ({}, {})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(state) in warnings[0] and "afresh" in warnings[0]


def test_an_agent_with_a_corrupt_state_file_starts_afresh_and_replaces_it(tmp_path):
    state = tmp_path / "totals.json"
    state.write_bytes(b'{"format": "smartos-telemetry running totals", "vers')  # cut short
    agent = SmartOSAgent(tmp_path, state)
    got, stderr = agent.poll(*BOOTS[0])
    assert "Traceback" not in stderr
    warnings = [line for line in stderr.splitlines() if "state file" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and str(state) in warnings[0], \
        warnings
    assert got == one_agent_totals()[0]  # a fresh start: nothing from the bad file
    assert saved_totals.decode(json.loads(state.read_text())).kstat["counters"]  # replaced


def test_an_unwritable_state_directory_is_one_warning_and_polling_goes_on(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    agent = SmartOSAgent(tmp_path, blocker / "totals.json")
    got, stderr = agent.poll(*BOOTS[0])
    assert got == one_agent_totals()[0]
    warnings = [line for line in stderr.splitlines() if "state file" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], warnings


# -- the file itself -------------------------------------------------------------------

def sample_totals():
    return SavedTotals(
        {"cn1:cgroup:web": {"cpu.runqueue.latency:runq_ns": (
            saved_totals.Saved(634, "h", 2.0), "id")}},
        {"counters": {"cpu": {"uuid-1": saved_totals.Saved(10, "c", 0.0, 7),
                              ("uuid-1", "net0"): saved_totals.Saved(3, "c", 1.0, 3)}},
         "kstats": {("zones", "uuid-1"): ((5, "uuid-1", 10.5), 0.0)}})


def test_the_file_round_trips_and_names_its_format_and_version(tmp_path):
    path = tmp_path / "totals.json"
    assert StateFile(str(path)).save(sample_totals())
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == (saved_totals.FORMAT, 1)
    back = saved_totals.decode(data)
    assert back.zones == sample_totals().zones
    assert back.kstat == sample_totals().kstat


def test_a_write_is_atomic_and_synced_before_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "totals.json"
    first = StateFile(str(path))
    assert first.save(sample_totals())
    before = path.read_bytes()
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(
        f"/proc/self/fd/{fd}"))), real_fsync(fd)))

    def crash(src, dst):
        calls.append(("replace", src))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    bigger = sample_totals()
    bigger.zones["cn1:cgroup:db"] = dict(bigger.zones["cn1:cgroup:web"])
    assert not first.save(bigger)  # the rename failed: a crash at that moment
    assert path.read_bytes() == before  # the old file, whole
    assert sorted(os.listdir(tmp_path)) == ["totals.json", "totals.json.lock"]  # no leftovers
    tmp = calls[-1][1]
    assert calls[0] == ("fsync", tmp)  # the data reached the disk before the rename
    monkeypatch.setattr(os, "replace", lambda s, d: (calls.append(("replace", s)),
                                                     real_replace(s, d)))
    calls.clear()
    assert first.save(bigger)
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync"]
    assert calls[2][1] == str(tmp_path)  # and the directory entry too
    assert "cn1:cgroup:db" in saved_totals.decode(json.loads(path.read_text())).zones


def test_one_agent_keeps_a_file_at_a_time(tmp_path, caplog):
    path = str(tmp_path / "totals.json")
    first = StateFile(path)
    first.load()
    # a second agent process: a separate open file description (flock is per
    # open file, so a second StateFile in this process shows the same)
    second = StateFile(path)
    with caplog.at_level(logging.WARNING):
        assert second.load().zones == {}
        assert not second.save(sample_totals())
        assert not second.save(sample_totals())
    assert len([r for r in caplog.records if "another agent" in r.getMessage()]) == 1
    assert first.save(sample_totals())


# -- engine meters: the service with a stand-in engine ---------------------------------

class Engines:
    """An engine set whose snapshots the test writes; each start is a new
    engine that counts from zero (cumulative since it started)."""

    instances = []

    def __init__(self, name, scripts, options=None, **settings):
        self.rows = {}
        Engines.instances.append(self)

    def start(self):
        pass

    def stop(self):
        pass

    def snapshot(self):
        runq = Aggregation("runq_ns", "llquantize", {
            (zone,): Histogram.from_counts([(1000, 1099, n)]) for zone, n in self.rows.items()})
        retx = Aggregation("retransmits", "count", {
            (zone,): n for zone, n in self.rows.items()})
        snap = Snapshot("bpftrace", {"runq_ns": runq, "retransmits": retx}, EngineHealth())
        return {"linux/runqueue.bt": snap, "linux/tcp.bt": snap}


class BpftraceLinux(Linux):
    """Linux, where ``auto`` is bpftrace whatever this host has."""

    def choose_engine(self, requested="auto"):
        return "bpftrace", "test"


class Layer:
    def __init__(self, zones):
        self.live = zones

    def zones(self):
        return list(self.live)

    def resolve(self, cgroup_id):
        return next((z for z in self.live if z.id == cgroup_id), None)


def agent(monkeypatch, state_file, zones):
    """A new agent process's service (a fresh conf: nothing shared)."""
    monkeypatch.setattr(telemetry_service, "EngineSet", Engines)
    conf = linux_agent_conf(state_file)
    service = telemetry_service.TelemetryService(conf)
    service.platform = BpftraceLinux()
    service._zones = Layer(zones)
    return service


def totals(samples, name):
    return {s.zone: s.volume for s in samples if s.name == name}


def test_engine_totals_go_on_across_an_agent_restart_without_double_counting(
        tmp_path, monkeypatch):
    state = tmp_path / "totals.json"
    web, db = Zone(101, "web", "cgroup", path="/t/web"), Zone(102, "db", "cgroup", path="/t/db")
    first = agent(monkeypatch, state, [web, db])
    first.samples_for_cycle({})  # starts the engine
    engine = Engines.instances[-1]
    engine.rows = {101: 634, 102: 10}
    samples = first.samples_for_cycle({})
    assert totals(samples, "network.tcp.retransmits") == {101: 634, 102: 10}
    first.stop()

    # the agent restarts: a new engine that counts from zero
    second = agent(monkeypatch, state, [web, db])
    second.samples_for_cycle({})
    engine = Engines.instances[-1]
    engine.rows = {101: 5}  # 5 retransmits since the new engine started
    samples = second.samples_for_cycle({})
    assert totals(samples, "network.tcp.retransmits") == {101: 639}  # 634 + 5, not 171
    assert totals(samples, "cpu.runqueue.latency.count") == {101: 639}
    assert totals(samples, "cpu.runqueue.latency.sum")[101] == pytest.approx(
        639 * 1049.5, rel=1e-9)  # the estimated sum goes on too
    engine.rows = {101: 7, 102: 1}
    samples = second.samples_for_cycle({})
    assert totals(samples, "network.tcp.retransmits") == {101: 641, 102: 11}
    second.stop()


def test_engine_totals_go_on_across_a_host_reboot_under_new_cgroup_ids(tmp_path, monkeypatch):
    state = tmp_path / "totals.json"
    first = agent(monkeypatch, state, [Zone(101, "web", "cgroup", path="/t/web")])
    first.samples_for_cycle({})
    Engines.instances[-1].rows = {101: 634}
    first.samples_for_cycle({})
    first.stop()
    # after the reboot the same cgroup has a new id, and appears only later
    web = Zone(9001, "web", "cgroup", path="/t/web")
    second = agent(monkeypatch, state, [])
    second.samples_for_cycle({})
    second._zones.live = [web]
    Engines.instances[-1].rows = {9001: 3}
    samples = second.samples_for_cycle({})
    assert totals(samples, "network.tcp.retransmits") == {9001: 637}
    second.stop()
    # a third agent still has it (the zone's total was saved under its name)
    third = agent(monkeypatch, state, [web])
    third.samples_for_cycle({})
    Engines.instances[-1].rows = {9001: 1}
    assert totals(third.samples_for_cycle({}), "network.tcp.retransmits") == {9001: 638}
    third.stop()


def test_a_thousand_zones_are_saved_and_read_back(tmp_path, monkeypatch):
    # the cost of a save is measured by bench/state_file_cost.py
    state = tmp_path / "totals.json"
    zones = [Zone(1000 + i, f"z{i}", "cgroup", path=f"/t/z{i}") for i in range(1000)]
    service = agent(monkeypatch, state, zones)
    service.samples_for_cycle({})
    Engines.instances[-1].rows = {z.id: 3 for z in zones}
    service.samples_for_cycle({})
    service.stop()
    back = StateFile(str(state)).load()
    assert len([rid for rid in back.zones if rid.startswith("cn1:cgroup:z")]) == 1000
