"""The Linux cgroup-v2 counters from fixture files (tests/fixtures/cgroup/,
README.rst there says where each came from): parsing, scales, what is not
emitted, restarts of cgroups and of the agent, bad and hostile input.
Fast, no root; the real-kernel accuracy tests are test_cgroup_counters_real.py."""

import errno
import logging
import os
import re
import shutil

import pytest

from smartos_telemetry.meters import cgroup_counters
from smartos_telemetry.meters.cgroup_counters import (
    BY_NAME,
    FILES,
    LIBVIRT_COVERED,
    METERS,
    CgroupCounters,
    Malformed,
    parse_cpu_max,
    parse_flat,
    parse_io_stat,
    parse_pressure,
    parse_single,
    psi_state,
)
from smartos_telemetry.meters.saved_totals import SavedTotals, StateFile
from smartos_telemetry.zones import Zone
from smartos_telemetry.zones.linux_cgroups import identity, name_text, os_path

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "cgroup")
REAL = os.path.join(FIXTURES, "real-6.18")
DOC = os.path.join(FIXTURES, "kernel-doc")
REPO = os.path.dirname(HERE)
UUID = "6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01"
MIB = 1 << 20


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def fixture(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read()


def make_zone(root, rel, files=(REAL, DOC), cgroup_id=None, kind="cgroup", name=None,
              uuid=None):
    """A zone directory ``root``/``rel`` holding copies of the fixture files
    (later directories win), and its Zone."""
    path = os.path.join(os.fsencode(root), os.fsencode(rel))
    os.makedirs(path, exist_ok=True)
    for directory in files:
        for f in os.listdir(directory):
            if f in FILES:
                shutil.copy(os.path.join(directory, f), os.path.join(path, os.fsencode(f)))
    text = name_text(b"/" + os.fsencode(rel))
    return Zone(cgroup_id or os.stat(path).st_ino, name or text.rsplit("/", 1)[1], kind,
                uuid, text)


def write(root, zone, name, text):
    with open(os.path.join(root, os_path(zone.path).lstrip("/"), name), "w") as f:
        f.write(text)


def volumes(reading, key):
    return {s.name: s.volume for s in reading.samples if s.zone == key}


# -- the kernel's formats ----------------------------------------------------------

def test_the_real_files_of_this_kernel_parse():
    assert parse_flat(fixture(REAL, "cpu.stat")) == {
        "usage_usec": 373965, "user_usec": 366255, "system_usec": 7710, "nice_usec": 0}
    assert parse_pressure(fixture(REAL, "cpu.pressure")) == {"some": 684443, "full": 680326}
    assert parse_pressure(fixture(REAL, "io.pressure")) == {"some": 16967, "full": 16967}
    assert parse_pressure(fixture(REAL, "memory.pressure")) == {"some": 0, "full": 0}


def test_the_controller_files_parse_in_the_kernel_s_documented_formats():
    assert parse_flat(fixture(DOC, "cpu.stat"))["throttled_usec"] == 35000
    assert parse_cpu_max(fixture(DOC, "cpu.max")) == {"limit": 50.0}
    assert parse_cpu_max("max 100000\n") == {"limit": None}
    assert parse_cpu_max("250000 100000\n") == {"limit": 250.0}
    assert parse_single(fixture(DOC, "memory.max")) == {"value": 512 * MIB}
    assert parse_single("max\n") == {"value": None}
    assert parse_flat(fixture(DOC, "memory.events"))["oom_kill"] == 1
    assert parse_io_stat(fixture(DOC, "io.stat")) == {
        "rbytes": 1459200 + 90430464, "wbytes": 314773504 + 299008000,
        "rios": 192 + 8950, "wios": 353 + 1252}
    assert parse_io_stat("") == {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}


@pytest.mark.parametrize("parser, text", [
    (parse_flat, "usage_usec -5\n"),
    (parse_flat, "usage_usec\n"),
    (parse_flat, "usage_usec 12 34\n"),
    (parse_single, "12 MiB\n"),
    (parse_single, "\n"),
    (parse_cpu_max, "50000\n"),
    (parse_cpu_max, "50000 0\n"),
    (parse_io_stat, "8:16 rbytes=12 wbytes\n"),
    (parse_io_stat, "sda rbytes=12\n"),
    (parse_io_stat, "8:16 rbytes=1e3\n"),
    (parse_pressure, "some avg10=0.00 avg60=0.00 avg300=0.00\n"),
    (parse_pressure, "most avg10=0.00 total=5\n"),
])
def test_text_not_in_the_kernel_s_format_is_malformed(parser, text):
    with pytest.raises(Malformed):
        parser(text)


# -- one poll ------------------------------------------------------------------------

def test_every_meter_of_a_zone_with_every_controller(tmp_path):
    zone = make_zone(tmp_path, "tenants/web")
    reading = CgroupCounters(str(tmp_path), clock=FakeClock()).poll([zone])
    got = volumes(reading, ("cgroup", "web"))
    assert got == {
        "cpu": 2500000 * 1000, "cpu.user": 2000000 * 1000, "cpu.system": 500000 * 1000,
        "cpu.cap.limit": 50.0, "cpu.cap.throttled": 7, "cpu.cap.throttled.time": 35000 * 1000,
        "memory": 512.0, "memory.usage": 100.0, "memory.usage.peak": 200.0,
        "memory.swap.usage": 4096 / MIB, "memory.cap.exceeded": 12, "memory.oom": 2,
        "memory.oom.kills": 1,
        "disk.read.bytes": 1459200 + 90430464, "disk.write.bytes": 314773504 + 299008000,
        "disk.read.requests": 192 + 8950, "disk.write.requests": 353 + 1252,
        "pids": 5, "pids.limit.exceeded": 3,  # pids.max is "max": no pids.limit
        "cpu.pressure.some": 684443000, "cpu.pressure.full": 680326000,
        "io.pressure.some": 16967000, "io.pressure.full": 16967000,
        "memory.pressure.some": 0, "memory.pressure.full": 0,
    }
    assert {(s.type, s.unit) for s in reading.samples if s.name == "cpu"} == \
        {("cumulative", "ns")}
    assert (reading.malformed, reading.unreadable, reading.absent, reading.no_psi) == \
        ([], [], {}, ())


def test_a_zone_on_this_host_has_what_its_v2_cgroup_has(tmp_path, caplog):
    """This host's own v2 cgroups (real-6.18: no controllers): CPU time and
    pressure, nothing else, and one INFO line per missing file, once."""
    zones = [make_zone(tmp_path, f"tenants/z{i}", files=(REAL,)) for i in range(3)]
    counters = CgroupCounters(str(tmp_path), clock=FakeClock())
    with caplog.at_level(logging.INFO):
        reading = counters.poll(zones)
        counters.poll(zones)
    assert set(volumes(reading, ("cgroup", "z0"))) == {
        "cpu", "cpu.user", "cpu.system", "cpu.pressure.some", "cpu.pressure.full",
        "io.pressure.some", "io.pressure.full", "memory.pressure.some",
        "memory.pressure.full"}
    assert set(reading.absent) == {"cpu.max", "memory.max", "memory.current", "memory.peak",
                                   "memory.swap.current", "memory.events", "io.stat",
                                   "pids.current", "pids.max", "pids.events"}
    told = [r.getMessage() for r in caplog.records if "cgroup counters" in r.getMessage()]
    assert len(told) == 4  # two polls, each controller said once: cpu, io, memory, pids
    assert any("io.stat missing for 3 zones" in t and "io controller is not enabled" in t
               for t in told)
    assert any(t.startswith("smartos-telemetry: cgroup counters: memory.current, "
                            "memory.events, memory.max, memory.peak, memory.swap.current "
                            "missing") for t in told)


def test_uncapped_limits_make_no_sample(tmp_path):
    zone = make_zone(tmp_path, "tenants/web")
    for name, text in (("cpu.max", "max 100000\n"), ("memory.max", "max\n"),
                       ("pids.max", "max\n")):
        write(tmp_path, zone, name, text)
    got = volumes(CgroupCounters(str(tmp_path)).poll([zone]), identity(zone))
    assert not {"cpu.cap.limit", "memory", "pids.limit"} & set(got)
    write(tmp_path, zone, "pids.max", "64\n")
    assert volumes(CgroupCounters(str(tmp_path)).poll([zone]), identity(zone))[
        "pids.limit"] == 64


def test_a_nova_instance_gets_none_of_what_libvirt_pollsters_emit(tmp_path):
    vm = make_zone(tmp_path, "machine.slice/vm", kind="libvirt", name="instance-00000001",
                   uuid=UUID)
    box = make_zone(tmp_path, "tenants/web")
    reading = CgroupCounters(str(tmp_path)).poll([vm, box])
    for_vm = set(volumes(reading, ("instance", UUID)))
    assert LIBVIRT_COVERED == {"cpu", "memory", "memory.usage", "disk.read.bytes",
                               "disk.write.bytes", "disk.read.requests",
                               "disk.write.requests"}
    assert not for_vm & LIBVIRT_COVERED
    assert for_vm == {m.name for m in METERS} - LIBVIRT_COVERED - {"pids.limit"}
    assert set(volumes(reading, ("cgroup", "web"))) >= LIBVIRT_COVERED  # not an instance


def test_the_libvirt_names_are_ceilometer_s():
    """Each meter said to be covered names a pollster ceilometer's compute
    namespace registers, with our type and unit where the name is the same."""
    from importlib import metadata
    eps = {ep.name: ep for ep in metadata.entry_points(group="ceilometer.poll.compute")
           if ep.value.startswith("ceilometer.")}
    for meter in METERS:
        if meter.libvirt is None:
            assert meter.name not in eps, meter.name  # never shadow one of theirs
            continue
        cls = eps[meter.libvirt].load()
        if meter.libvirt == meter.name:
            assert (cls.sample_type, cls.sample_unit) == (meter.type, meter.unit), meter.name


def test_pressure_off_is_no_sample_and_said_once(tmp_path, caplog):
    a = make_zone(tmp_path, "tenants/a")
    b = make_zone(tmp_path, "tenants/b")
    for name in cgroup_counters.PRESSURE_FILES:  # cgroup.pressure 0 hides them
        os.unlink(os.path.join(tmp_path, "tenants/a", name))

    def reader(path):  # psi=0 at boot: the files are there, reading fails
        if path.rsplit("/", 1)[1].endswith(".pressure") and "/b/" in path:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return cgroup_counters.read_file(path)

    counters = CgroupCounters(str(tmp_path), reader=reader)
    with caplog.at_level(logging.INFO):
        reading = counters.poll([a, b])
        counters.poll([a, b])
    assert set(reading.no_psi) == {"a", "b"}
    assert not any(".pressure." in s.name for s in reading.samples)
    assert "cpu" in volumes(reading, ("cgroup", "a"))
    assert (reading.malformed, reading.unreadable) == ([], [])
    said = [r.getMessage() for r in caplog.records if "pressure stall" in r.getMessage()]
    assert len(said) == 1  # once, not per file, poll or zone
    assert "cpu.pressure, io.pressure, memory.pressure missing for 2 zones" in said[0]


def test_psi_state_says_whether_it_can_be_read(tmp_path):
    assert psi_state(str(tmp_path)).startswith("not available")
    shutil.copy(os.path.join(REAL, "cpu.pressure"), tmp_path)
    assert psi_state(str(tmp_path)) == "enabled"


def test_a_bad_file_loses_its_statistics_only(tmp_path, caplog):
    good = make_zone(tmp_path, "tenants/good")
    bad = make_zone(tmp_path, "tenants/bad")
    write(tmp_path, bad, "cpu.stat", "usage_usec lots\n")
    write(tmp_path, bad, "io.stat", "8:0 rbytes=5 wbytes=7 rios=1 wios=1\n8:16 rbytes=x\n")
    write(tmp_path, bad, "memory.current", b"\xff\xfe".decode("latin-1"))
    # longer than one read takes, cut at a line's end: it would parse
    write(tmp_path, bad, "memory.events", "oom 222\n" * 9000)

    def reader(path):
        if path.endswith("/bad/pids.events"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return cgroup_counters.read_file(path)

    counters = CgroupCounters(str(tmp_path), reader=reader)
    with caplog.at_level(logging.WARNING):
        reading = counters.poll([good, bad])
        again = counters.poll([good, bad])  # still bad: not said again
    got = volumes(reading, ("cgroup", "bad"))
    lost = {"cpu", "cpu.user", "cpu.system", "cpu.cap.throttled", "cpu.cap.throttled.time",
            "disk.read.bytes", "disk.write.bytes", "disk.read.requests",
            "disk.write.requests", "memory.usage", "pids.limit.exceeded", "memory.oom",
            "memory.oom.kills", "memory.cap.exceeded"}
    assert not lost & set(got)
    assert {"memory", "memory.usage.peak", "cpu.pressure.some", "pids"} <= set(got)
    assert len(volumes(reading, ("cgroup", "good"))) == len(METERS) - 1  # all but pids.limit
    assert sorted(f for _, f, _ in reading.malformed) == ["cpu.stat", "io.stat",
                                                          "memory.current", "memory.events"]
    assert [(z, f) for z, f, _ in reading.unreadable] == [("bad", "pids.events")]
    assert again.malformed == reading.malformed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one line for each kind of problem, once
    assert "'bad'" in warnings[0]
    write(tmp_path, bad, "cpu.stat", "usage_usec lots\n")
    write(tmp_path, bad, "io.stat", "")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        counters.poll([good, bad])  # fewer bad files: nothing new to say
        write(tmp_path, bad, "io.stat", "8:0 rbytes=x\n")  # bad again: said again
        counters.poll([good, bad])
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "io.stat" in said[0]


def test_a_zone_whose_cgroup_is_gone_has_no_samples(tmp_path):
    zone = make_zone(tmp_path, "tenants/web")
    shutil.rmtree(os.path.join(tmp_path, "tenants/web"))
    reading = CgroupCounters(str(tmp_path)).poll([zone])
    assert (reading.samples, reading.gone, reading.absent) == ([], ("web",), {})


def test_hostile_names_are_read_from_their_own_bytes(tmp_path):
    """A name that is not UTF-8 and one that spells the same bytes out in
    ASCII are two zones, each with its own files (name_text / os_path)."""
    raw = make_zone(tmp_path, b"tenants/bad\xff\xfe".decode("utf-8", "surrogateescape"))
    spelled = make_zone(tmp_path, "tenants/bad\\xff\\xfe")
    write(tmp_path, spelled, "cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\n")
    assert raw.name == "bad\\xff\\xfe" and spelled.name == "bad\\x5cxff\\x5cxfe"
    reading = CgroupCounters(str(tmp_path)).poll([raw, spelled])
    assert volumes(reading, identity(raw))["cpu"] == 2500000 * 1000
    assert volumes(reading, identity(spelled))["cpu"] == 7000
    assert reading.gone == () and reading.malformed == []


# -- counters that never go backwards -------------------------------------------------

def cpu_stat(usage):
    return f"usage_usec {usage}\nuser_usec {usage}\nsystem_usec 0\n"


def test_a_re_created_cgroup_goes_on_from_the_totals(tmp_path):
    """Same zone identity, new cgroup (a restarted container): its counters
    start from zero; the totals add them, whether the new values are below
    or already above the old ones."""
    clock = FakeClock()
    counters = CgroupCounters(str(tmp_path), clock=clock)
    first = make_zone(tmp_path, "tenants/web", files=(REAL,), cgroup_id=101)
    write(tmp_path, first, "cpu.stat", cpu_stat(5000))
    assert volumes(counters.poll([first]), ("cgroup", "web"))["cpu"] == 5_000_000
    write(tmp_path, first, "cpu.stat", cpu_stat(8000))
    assert volumes(counters.poll([first]), ("cgroup", "web"))["cpu"] == 8_000_000
    again = first.__class__(**{**first.as_dict(), "id": 102})  # re-created: new id
    write(tmp_path, again, "cpu.stat", cpu_stat(3000))  # below the old value
    reading = counters.poll([again])
    assert reading.restarted == (("cgroup", "web"),)
    assert volumes(reading, ("cgroup", "web"))["cpu"] == 11_000_000
    third = first.__class__(**{**first.as_dict(), "id": 103})
    write(tmp_path, third, "cpu.stat", cpu_stat(20000))  # above it: still a new cgroup
    assert volumes(counters.poll([third]), ("cgroup", "web"))["cpu"] == 31_000_000


def test_a_device_gone_from_io_stat_is_never_counted_twice(tmp_path):
    counters = CgroupCounters(str(tmp_path))
    zone = make_zone(tmp_path, "tenants/web")
    key = identity(zone)
    two = "8:0 rbytes=100 wbytes=1000 rios=1 wios=10\n8:16 rbytes=50 wbytes=500 rios=1 wios=5\n"
    write(tmp_path, zone, "io.stat", two)
    assert volumes(counters.poll([zone]), key)["disk.write.bytes"] == 1500
    write(tmp_path, zone, "io.stat", "8:0 rbytes=100 wbytes=1200 rios=1 wios=12\n")
    assert volumes(counters.poll([zone]), key)["disk.write.bytes"] == 1500  # re-based
    write(tmp_path, zone, "io.stat", "8:0 rbytes=100 wbytes=1300 rios=1 wios=13\n")
    assert volumes(counters.poll([zone]), key)["disk.write.bytes"] == 1600


def test_a_zone_gone_longer_than_the_ttl_starts_again(tmp_path):
    clock = FakeClock()
    counters = CgroupCounters(str(tmp_path), ttl=60, clock=clock)
    zone = make_zone(tmp_path, "tenants/web", files=(REAL,))
    counters.poll([zone])
    clock.now += 61
    counters.poll([])
    write(tmp_path, zone, "cpu.stat", cpu_stat(10))
    assert volumes(counters.poll([zone]), identity(zone))["cpu"] == 10_000


def restart_agent(tmp_path, counters, clock):
    """Save as the agent does after a poll, load as the next agent does."""
    path = str(tmp_path / "state" / "state.json")
    state = StateFile(path)
    assert state.save(SavedTotals(cgroup=counters.export()))
    state.close()
    again = StateFile(path)
    saved = again.load()
    again.close()
    fresh = CgroupCounters(str(tmp_path / "root"), clock=clock)
    fresh.carry(saved.cgroup)
    return fresh


@pytest.mark.parametrize("re_created", [False, True])
def test_an_agent_restart_loses_nothing_and_counts_nothing_twice(tmp_path, re_created):
    """Through the real state file: the same cgroup adds only what it gained
    while the agent was away; a cgroup re-created meanwhile adds its value in full."""
    clock = FakeClock()
    root = tmp_path / "root"
    counters = CgroupCounters(str(root), clock=clock)
    zone = make_zone(root, "system.slice/web.service", kind="service", name="web")
    write(root, zone, "cpu.stat", cpu_stat(4000))
    write(root, zone, "io.stat", "8:0 rbytes=0 wbytes=4096 rios=0 wios=1\n")
    before = volumes(counters.poll([zone]), ("service", "web"))
    assert (before["cpu"], before["disk.write.bytes"]) == (4_000_000, 4096)
    fresh = restart_agent(tmp_path, counters, clock)
    clock.now += 30
    if re_created:
        zone = zone.__class__(**{**zone.as_dict(), "id": zone.id + 1})
    write(root, zone, "cpu.stat", cpu_stat(1000 if re_created else 6000))
    write(root, zone, "io.stat", "8:0 rbytes=0 wbytes=8192 rios=0 wios=2\n")
    after = volumes(fresh.poll([zone]), ("service", "web"))
    if re_created:
        assert (after["cpu"], after["disk.write.bytes"]) == (5_000_000, 4096 + 8192)
    else:
        assert (after["cpu"], after["disk.write.bytes"]) == (6_000_000, 8192)
    # memory.events is the same file: the same cgroup's unchanged counter adds
    # nothing, a new cgroup's events are new
    assert after["memory.oom"] == (4 if re_created else 2)


def test_a_state_file_without_cgroup_totals_reads_as_none(tmp_path):
    path = tmp_path / "state.json"
    state = StateFile(str(path))
    assert state.save(SavedTotals())
    state.close()
    import json
    data = json.loads(path.read_text())
    del data["cgroup"]  # a file an agent before the cgroup counters wrote
    path.write_text(json.dumps(data))
    again = StateFile(str(path))
    assert again.load().cgroup == {"counters": {}, "cgroups": {}}
    again.close()


# -- the documentation ------------------------------------------------------------

def docstring_rows(text):
    rows = {}
    for line in text.splitlines():
        m = re.match(r"(\S+)\s+(cumulative|gauge)\s+(\S+)\s+(\S+?):?(?:\s+(.*))?\Z", line)
        if m:
            rows[m.group(1)] = (*m.groups()[1:4], m.group(5) or "")
    return rows


def test_the_docstring_table_is_the_meter_table_and_the_readme_has_it():
    rows = docstring_rows(cgroup_counters.__doc__)
    assert list(rows) == [m.name for m in METERS]
    for meter in METERS:
        type_, unit, source, detail = rows[meter.name]
        assert (type_, unit, source) == (meter.type, meter.unit, meter.file), meter.name
        if meter.field not in ("value", "limit"):
            assert meter.field in re.split(r"[\s,]+", detail), meter.name
        assert ("x 1000" in detail) == (meter.scale == 1000), meter.name
        assert ("2^20" in detail) == (meter.scale == 1 / MIB), meter.name
    lines = cgroup_counters.__doc__.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("=====")]
    table = "\n".join(lines[rules[0]:rules[2] + 1])
    assert len(table.splitlines()) == len(METERS) + 4
    with open(os.path.join(REPO, "README.rst")) as f:
        assert table in f.read()
    assert set(BY_NAME) == {m.name for m in METERS}


# -- through the pollsters and the agent's service -------------------------------------

class Layer:
    """The zone layer's part the cgroup counters use: its root."""

    def __init__(self, root):
        self.root = str(root)


def service_for(tmp_path, state_file):
    """A new agent process's service (a fresh conf: nothing shared)."""
    from agent_conf import linux_agent_conf

    from smartos_telemetry.polling import telemetry_service

    conf = linux_agent_conf(state_file)
    service = telemetry_service.TelemetryService(conf)
    service._zones = Layer(tmp_path / "root")
    telemetry_service._SERVICES[id(conf)] = service
    return conf, service


def test_the_pollsters_emit_their_family_for_their_zones_and_save_the_totals(tmp_path):
    from smartos_telemetry.polling import telemetry_service
    from smartos_telemetry.polling.cgroup_pollsters import CGROUP_POLLSTERS

    root = tmp_path / "root"
    vm = make_zone(root, "machine.slice/vm", kind="libvirt", name="instance-00000001",
                   uuid=UUID)
    vm = vm.__class__(**{**vm.as_dict(), "attributes": (("project_id", "p-1"),)})
    box = make_zone(root, "tenants/web")
    state = tmp_path / "state.json"
    conf, service = service_for(tmp_path, state)
    try:
        cache, by_family = {}, {}
        # ceilometer may hand a pollster fewer resources than another: the
        # first family of the cycle sees one zone, the others both
        only_box = list(CGROUP_POLLSTERS["cgroup.pids"](conf).get_samples(None, cache, [box]))
        for name, cls in CGROUP_POLLSTERS.items():
            pollster = cls(conf)
            assert pollster.default_discovery == "local_zones"
            by_family[name] = list(pollster.get_samples(None, cache, [vm, box]))
        write(root, box, "cpu.stat", cpu_stat(2600000))
        again = list(CGROUP_POLLSTERS["cgroup.cpu"](conf).get_samples(None, cache, [vm, box]))
    finally:
        service.stop()
        telemetry_service._SERVICES.pop(id(conf), None)
    assert {s.resource_id for s in only_box} == {"cn1:cgroup:web"}
    assert {s.resource_id for s in by_family["cgroup.pids"]} == {"cn1:cgroup:web", UUID}
    # one read per cycle and set of zones: the file changed, the cycle's values did not
    assert [s.volume for s in again] == [s.volume for s in by_family["cgroup.cpu"]]
    for name, samples in by_family.items():
        assert samples and {BY_NAME[s.name].family for s in samples} == {name[7:]}, name
    every = [s for samples in by_family.values() for s in samples]
    vm_names = {s.name for s in every if s.resource_id == UUID}
    assert vm_names and not vm_names & LIBVIRT_COVERED  # libvirt's pollsters emit those
    assert {s.project_id for s in every if s.resource_id == UUID} == {"p-1"}
    web = {s.name: s for s in every if s.resource_id == "cn1:cgroup:web"}
    assert web["cpu"].volume == 2500000 * 1000 and web["cpu"].type == "cumulative"
    assert web["cpu"].resource_metadata["zone_kind"] == "cgroup"
    assert web["cpu"].project_id == "none"
    saved = StateFile(str(state))
    totals = saved.load().cgroup
    saved.close()
    assert totals["counters"]["cpu"][("cgroup", "web")].total == 2500000  # usage_usec
    assert ("instance", UUID) not in totals["counters"]["cpu"]
    assert totals["cgroups"][("cgroup", "web")][0] == box.id


def test_off_linux_the_pollsters_have_no_discovery_and_say_so_once(tmp_path, caplog):
    from smartos_telemetry.platform.smartos import SmartOS
    from smartos_telemetry.polling import pollsters, telemetry_service
    from smartos_telemetry.polling.cgroup_pollsters import CGROUP_POLLSTERS

    conf, service = service_for(tmp_path, tmp_path / "state.json")
    service.platform = SmartOS()
    pollsters._SAID_NOT_HERE.discard("cgroup")
    try:
        with caplog.at_level(logging.INFO):
            found = [cls(conf).default_discovery for cls in CGROUP_POLLSTERS.values()]
            samples = list(CGROUP_POLLSTERS["cgroup.cpu"](conf).get_samples(
                None, {}, [make_zone(tmp_path / "root", "tenants/web")]))
    finally:
        service.stop()
        telemetry_service._SERVICES.pop(id(conf), None)
    assert found == [None] * len(CGROUP_POLLSTERS) and samples == []
    said = [r.getMessage() for r in caplog.records if "cgroup counter pollsters" in
            r.getMessage()]
    assert len(said) == 1 and "Linux only" in said[0]


def test_off_smartos_the_kstat_pollsters_stand_down_as_the_cgroup_ones_do(tmp_path, caplog):
    # the two platform-only families share one base: each says so once, in its own words
    from smartos_telemetry.polling import pollsters, telemetry_service

    conf, service = service_for(tmp_path, tmp_path / "state.json")
    pollsters._SAID_NOT_HERE.discard("kstat")
    try:
        with caplog.at_level(logging.INFO):
            found = [cls(conf).default_discovery for cls in pollsters.KSTAT_POLLSTERS.values()]
            found += [cls(conf).default_discovery for cls in pollsters.KSTAT_POLLSTERS.values()]
            samples = list(pollsters.KSTAT_POLLSTERS["cpu"](conf).get_samples(
                None, {}, [make_zone(tmp_path / "root", "tenants/web")]))
    finally:
        service.stop()
        telemetry_service._SERVICES.pop(id(conf), None)
    assert found == [None] * 2 * len(pollsters.KSTAT_POLLSTERS) and samples == []
    said = [r.getMessage() for r in caplog.records if "counter pollsters" in r.getMessage()]
    assert len(said) == 1 and "kstat counter pollsters (cpu, cpu.cap" in said[0]
    assert "SmartOS only" in said[0]
