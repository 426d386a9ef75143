"""The Linux cgroup counters on real cgroups of this kernel (root).

Zones are scratch cgroups under the unified hierarchy
(linux_workloads.scratch_cgroups), found by the real zone layer
(``plain_parents``) and read by the real counters; every process a test
starts it stops, every cgroup it makes it removes.  Accuracy: a CPU hog's
``cpu`` against the cgroup's own ``cpu.stat`` and its wall time; direct-I/O
writes against ``disk.write.bytes`` (needs the io controller in v2).
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import time

import pytest
from ceilometer_agent import Agent
from linux_workloads import python_in, scratch_cgroups, start_in, stop

from smartos_telemetry.meters import cgroup_counters
from smartos_telemetry.meters.cgroup_counters import CgroupCounters
from smartos_telemetry.meters.saved_totals import SavedTotals, StateFile
from smartos_telemetry.zones.linux_cgroups import CgroupZones, ZoneConfig, identity

pytestmark = pytest.mark.root

#: burns CPU in one thread until it has had argv[1] seconds of it (however
#: loaded the host), then exits; the clock is read every 100,000 turns, so
#: nearly all of it is user time
HOG = ("import sys, time\n"
       "want = float(sys.argv[1])\n"
       "while time.process_time() < want:\n"
       "    for _ in range(100000): pass\n")


def layer_for(cg):
    parent = "/" + os.path.basename(cg[""])
    return CgroupZones(ZoneConfig(plain_parents=(parent,)))


def zone_named(layer, name):
    (zone,) = [z for z in layer.zones() if z.name == name]
    return zone


def usage_ns(path):
    with open(os.path.join(path, "cpu.stat")) as f:
        return 1000 * int(re.search(r"^usage_usec (\d+)$", f.read(), re.MULTILINE).group(1))


def volumes(reading, zone):
    return {s.name: s.volume for s in reading.samples if s.zone == identity(zone)}


def run_hog(path, seconds):
    """Run HOG in cgroup ``path`` until it has used ``seconds`` of CPU; its
    wall time in ns."""
    t0 = time.monotonic_ns()
    hog = start_in(path, [sys.executable, "-c", HOG, str(seconds)])
    try:
        assert hog.wait(timeout=seconds + 60) == 0
    finally:
        stop(hog)
    return time.monotonic_ns() - t0


def test_cpu_is_the_cgroup_s_own_cpu_time_within_2_percent():
    with scratch_cgroups("hog") as cg:
        layer = layer_for(cg)
        zone = zone_named(layer, "hog")
        counters = CgroupCounters(layer.root)
        before = volumes(counters.poll([zone]), zone)
        own_before = usage_ns(cg["hog"])
        wall = run_hog(cg["hog"], 1.5)
        own_after = usage_ns(cg["hog"])
        after = volumes(counters.poll([zone]), zone)
    own = own_after - own_before
    counted = after["cpu"] - before["cpu"]
    assert own >= 1.5e9  # the hog's own CPU time, plus its start-up
    assert abs(counted - own) <= 0.02 * own, (counted, own)
    assert counted <= wall * 1.02, (counted, wall)  # one thread: no more than its wall time
    assert after["cpu.user"] - before["cpu.user"] >= 0.9 * counted  # a busy loop is user time
    assert after["cpu.user"] + after["cpu.system"] <= after["cpu"] * 1.02


def io_enabled(root, top):
    """Enable the io controller for the scratch cgroups if the unified
    hierarchy has it; the controllers enabled here, to undo."""
    if "io" not in cgroup_counters.controllers(root):
        return None
    enabled = []
    for directory in (root, top):
        with open(os.path.join(directory, "cgroup.subtree_control")) as f:
            if "io" in f.read().split():
                continue
        with open(os.path.join(directory, "cgroup.subtree_control"), "w") as f:
            f.write("+io")
        enabled.append(directory)
    return enabled


@contextlib.contextmanager
def io_controller(cg, root):
    enabled = io_enabled(root, cg[""])
    if enabled is None:
        pytest.skip(f"the io controller is not in {root}/cgroup.controllers (bound to a v1 "
                    f"hierarchy on this host): io.stat cannot be read, nothing to measure")
    try:
        yield
    finally:
        for directory in reversed(enabled):
            with open(os.path.join(directory, "cgroup.subtree_control"), "w") as f:
                f.write("-io")


WRITER = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 65536)
for i in range(int(sys.argv[2])):
    os.pwrite(fd, buf, i * 65536)
os.close(fd)
"""


def test_direct_io_writes_are_disk_write_bytes_within_5_percent(tmp_path):
    writes = 400
    with scratch_cgroups("writer") as cg:
        root = os.path.dirname(cg[""])
        # a new cgroup has no io files until its parent enables the controller
        with io_controller(cg, root):
            layer = layer_for(cg)
            zone = zone_named(layer, "writer")
            counters = CgroupCounters(layer.root)
            scratch = os.path.join("/var/tmp", f"st-test-cgroup-io-{os.getpid()}")
            try:
                first = start_in(cg["writer"], [sys.executable, "-c", WRITER, scratch,
                                                str(writes)])
                assert first.wait(timeout=120) == 0  # allocates the blocks
                before = volumes(counters.poll([zone]), zone)
                again = start_in(cg["writer"], [sys.executable, "-c", WRITER, scratch,
                                                str(writes)])
                assert again.wait(timeout=120) == 0  # overwrites them in place
                after = volumes(counters.poll([zone]), zone)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(scratch)
    n = writes * 65536
    written = after["disk.write.bytes"] - before["disk.write.bytes"]
    assert abs(written - n) <= 0.05 * n, (written, n)
    assert after["disk.write.requests"] > before["disk.write.requests"]


def test_a_re_created_cgroup_and_an_agent_restart_never_go_backwards(tmp_path):
    """The same zone identity in a new cgroup counts on from its totals; the
    totals saved in the state file go on in the next agent, the same cgroup
    adding only what it gained meanwhile."""
    with scratch_cgroups("web") as cg:
        layer = layer_for(cg)
        counters = CgroupCounters(layer.root)
        run_hog(cg["web"], 0.3)
        first = zone_named(layer, "web")
        total1 = volumes(counters.poll([first]), first)["cpu"]
        old_usage = usage_ns(cg["web"])
        assert total1 == old_usage
        os.rmdir(cg["web"])
        os.mkdir(cg["web"])  # re-created: a new cgroup id, the same zone
        second = zone_named(layer, "web")
        assert second.id != first.id
        run_hog(cg["web"], 0.3)
        reading = counters.poll([second])
        total2 = volumes(reading, second)["cpu"]
        assert reading.restarted == (identity(second),)
        assert total2 == total1 + usage_ns(cg["web"])  # never below, nothing twice

        path = str(tmp_path / "state.json")
        state = StateFile(path)
        assert state.save(SavedTotals(cgroup=counters.export()))
        state.close()
        run_hog(cg["web"], 0.3)  # while no agent runs
        usage_at_save = total2 - total1
        loaded = StateFile(path)
        saved = loaded.load()
        loaded.close()
        fresh = CgroupCounters(layer.root)
        fresh.carry(saved.cgroup)
        total3 = volumes(fresh.poll([second]), second)["cpu"]
        gained = usage_ns(cg["web"]) - usage_at_save
        assert gained > 0
        assert total3 == total2 + gained


def test_pressure_files_hidden_are_no_sample_and_said_once(caplog):
    with scratch_cgroups("quiet", "busy") as cg:
        layer = layer_for(cg)
        with open(os.path.join(cg["quiet"], "cgroup.pressure"), "w") as f:
            f.write("0")  # hides the cgroup's *.pressure files
        run_hog(cg["busy"], 0.3)
        quiet, busy = zone_named(layer, "quiet"), zone_named(layer, "busy")
        counters = CgroupCounters(layer.root)
        with caplog.at_level("INFO"):
            reading = counters.poll([quiet, busy])
            counters.poll([quiet, busy])
    assert reading.no_psi == ("quiet",)
    assert not any(".pressure." in name for name in volumes(reading, quiet))
    assert "cpu" in volumes(reading, quiet)
    got = volumes(reading, busy)
    assert got["cpu.pressure.some"] >= 0 and "memory.pressure.full" in got
    said = [r.getMessage() for r in caplog.records if "pressure stall" in r.getMessage()]
    assert len(said) == 1  # once, not per file or poll


def test_hostile_cgroup_names_are_read_from_their_own_cgroups():
    names = (b"bad\xff\xfe", b"bad\\xff\\xfe", "café".encode(), b"esc\x1b[31m")
    with scratch_cgroups() as cg:
        top = os.fsencode(cg[""])
        paths = {raw: os.path.join(top, raw) for raw in names}
        for path in paths.values():
            os.mkdir(path)
        try:
            run_hog(os.fsdecode(paths[b"bad\xff\xfe"]), 0.3)
            layer = layer_for(cg)
            zones = {z.id: z for z in layer.zones()}
            assert len(zones) == len(names)
            reading = CgroupCounters(layer.root).poll(list(zones.values()))
            by_raw = {raw: volumes(reading, zones[os.stat(p).st_ino])
                      for raw, p in paths.items()}
        finally:
            for path in paths.values():
                os.rmdir(path)
    assert reading.malformed == [] and reading.unreadable == [] and reading.gone == ()
    assert by_raw[b"bad\xff\xfe"]["cpu"] > 0.1e9
    for raw in names[1:]:
        assert by_raw[raw]["cpu"] == 0, raw  # none of the hog's time


def test_the_agent_polls_the_cgroup_families(tmp_path):
    """Under the real ceilometer-polling with the shipped polling.yaml."""
    with scratch_cgroups("tenant-c") as cg:
        parent = "/" + os.path.basename(cg[""])
        agent = Agent(tmp_path, f"plain_parents = {parent}\n")
        hog = python_in(cg["tenant-c"], "while True: pass")
        try:
            resource = "st-test-cn1:cgroup:tenant-c"
            pattern = rf'^ceilometer_cpu{{[^}}]*resource="{re.escape(resource)}"[^}}]*}} (\S+)$'
            first = float(re.search(pattern, agent.wait_for(pattern), re.MULTILINE).group(1))
            text = agent.wait_until(
                lambda t: (m := re.search(pattern, t, re.MULTILINE)) is not None
                and float(m.group(1)) > first)
        finally:
            stop(hog)
            agent.stop()
        state = (tmp_path / "state.json").read_text()
    for meter in ("cpu_user", "cpu_system", "cpu_pressure_some", "io_pressure_full"):
        assert re.search(rf'^ceilometer_{meter}{{[^}}]*resource="{re.escape(resource)}"',
                         text, re.MULTILINE), meter
    assert '"cgroup"' in state and "tenant-c" in state  # its totals are kept
    log = agent.log_text()
    assert "Traceback" not in log
    assert "pressure stall information is off" not in log  # this kernel has PSI
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode


def test_check_says_which_counters_and_whether_pressure_can_be_read():
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "smartos-telemetry"),
                          "check", "--json"], capture_output=True, text=True).stdout
    report = json.loads(out)
    root = report["cgroup2_root"]
    with open(os.path.join(root, "cgroup.controllers")) as f:
        assert report["cgroup_controllers"] == f.read().split()
    with open(os.path.join(root, "cpu.pressure")) as f:  # this kernel runs with psi=1
        assert "total=" in f.read()
    assert report["pressure"] == "enabled"
    text = subprocess.run([os.path.join(os.path.dirname(sys.executable), "smartos-telemetry"),
                           "check"], capture_output=True, text=True).stdout
    assert "pressure:     enabled" in text
    (line,) = [t for t in text.splitlines() if "cgroup counters:" in t]
    for controller in ("cpu", "memory", "io", "pids"):
        lacking = controller not in report["cgroup_controllers"]
        assert (f" {controller}," in line or f" {controller} controller" in line) == lacking, \
            (controller, line)
