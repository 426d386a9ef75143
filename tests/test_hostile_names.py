"""Hostile cgroup names, end to end: the zone layer, ``zones``, ``poll`` (JSON
and text), ``smartos-dtrace-top -b``, ceilometer's sample path and the real
``ceilometer-polling`` with its Prometheus exporter.

Root, real cgroupfs, real bpftrace, real ceilometer 27.  A cgroup name is
any bytes but ``/``, NUL and newline (cgroup_mkdir refuses ``\\n``): invalid
UTF-8, terminal escapes, 255 bytes.  Every one must become a zone whose
every field is valid text, distinct from every other, shown escaped on a
terminal and exact in JSON; none may cost another zone its samples.
"""

import json
import os
import random
import re
import subprocess
import sys
import textwrap

import pytest
from ceilometer import sample as ceilometer_sample
from ceilometer.publisher import utils as publisher_utils
from ceilometer_agent import Agent
from linux_workloads import python_in, scratch_cgroups, start_in, stop, wait_for

from smartos_telemetry.polling import pollsters
from smartos_telemetry.text_format import display_text
from smartos_telemetry.zones.linux_cgroups import (
    CgroupZones,
    ZoneConfig,
    name_bytes,
    name_text,
    os_path,
    unified_root,
)

pytestmark = pytest.mark.root

BIN = os.path.dirname(sys.executable)
HOST = "st-test-cn1"
UUID = "5d0c9c2e-2f4e-4a7b-9c61-3e0f7a1b2c3d"

#: raw directory names, each a zone of its own
HOSTILE = (
    b"bad\xff\xfe",            # not UTF-8
    b"bad\\xff\\xfe",          # the same, spelled out in ASCII: another zone
    b"esc\x1b[31mred\x07",     # ESC (a colour change) and BEL
    b"tab\tcr\rdel\x7f",       # TAB, CR, DEL
    "café".encode(),           # UTF-8, not ASCII
    b"n" * 255,                # the longest name
    b"\xfe" * 255,             # the longest name, none of it UTF-8
)
CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")  # any control byte but newline


def hostile_cgroups(top):
    """Make the HOSTILE cgroups under ``top`` (the scratch dir); their paths."""
    paths = {}
    for raw in HOSTILE:
        path = os.path.join(os.fsencode(top), b"tenants", raw)
        os.makedirs(path)
        paths[raw] = os.fsdecode(path)
    return paths


def test_kernel_names_become_valid_text_reversibly():
    for raw in HOSTILE:
        text = name_text(raw)
        text.encode("utf-8")  # valid text: no lone surrogate
        assert name_bytes(text) == raw
    assert name_text(b"bad\xff\xfe") == r"bad\xff\xfe"
    assert name_text(b"bad\\xff\\xfe") != name_text(b"bad\xff\xfe")
    assert name_text("café".encode()) == "café"
    assert name_text(rb"machine-qemu\x2d1\x2dvm.scope") == r"machine-qemu\x2d1\x2dvm.scope"
    rng = random.Random(17)
    pieces = [b"\\", b"x", b"5", b"c", b"8", b"f", b"\xff", b"\xc3", b"\xa9", b"a", b"\xe2\x82\xac"]
    seen = {}
    for _ in range(20000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        text = name_text(raw)
        text.encode("utf-8")
        assert name_bytes(text) == raw
        assert seen.setdefault(text, raw) == raw  # distinct names stay distinct


def test_hostile_zones_are_valid_text_through_ceilometers_sample_path():
    """The sample fields the pollsters make of each zone pass ceilometer's
    message signing (compute_signature encodes every text as UTF-8; one
    undecodable byte raised UnicodeEncodeError for the whole batch) and fit
    Gnocchi's 255 characters, still distinct."""
    with scratch_cgroups() as cg:
        paths = hostile_cgroups(cg[""])
        top = "/" + os.path.basename(cg[""])
        zones = CgroupZones(ZoneConfig(plain_parents=(f"{top}/tenants",))).zones()
        zones = [z for z in zones if z.path.startswith(top + "/")]
        assert sorted(name_bytes(z.name) for z in zones) == sorted(HOSTILE)
        for zone in zones:  # the path is reversible too
            assert unified_root() + os_path(zone.path) == paths[name_bytes(zone.name)]
    resource_ids = set()
    for zone in zones:
        user_id, project_id = pollsters.zone_owner(zone)
        s = ceilometer_sample.Sample(
            name="cpu.runqueue.latency.p99", type="gauge", unit="ns", volume=1.0,
            user_id=user_id, project_id=project_id,
            resource_id=pollsters.zone_resource_id(HOST, zone),
            resource_metadata=pollsters.zone_metadata(HOST, zone))
        message = publisher_utils.meter_message_from_counter(s, "a-telemetry-secret")
        assert publisher_utils.verify_signature(message, "a-telemetry-secret")
        json.dumps(message, ensure_ascii=False).encode("utf-8")
        assert len(s.resource_id) <= 255 and len(s.resource_metadata["display_name"]) <= 255
        assert s.resource_metadata["zone_name"] == zone.name  # in full
        resource_ids.add(s.resource_id)
    assert len(resource_ids) == len(HOSTILE)


def run_cli(argv, encoding, timeout=120):
    return subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], capture_output=True,
                          timeout=timeout, env={**os.environ, "PYTHONIOENCODING": encoding})


def test_zones_lists_hostile_names_exact_in_json_escaped_in_text():
    with scratch_cgroups() as cg:
        hostile_cgroups(cg[""])
        parent = "/" + os.path.basename(cg[""]) + "/tenants"
        as_json = run_cli(["smartos-telemetry", "zones", "--json", "--kind", "cgroup",
                           "--plain-parent", parent], "ascii")
        texts = {enc: run_cli(["smartos-telemetry", "zones", "--kind", "cgroup",
                               "--plain-parent", parent], enc) for enc in ("ascii", "utf-8")}
    assert as_json.returncode == 0, as_json.stderr
    listed = [z for z in json.loads(as_json.stdout) if z["path"].startswith(parent + "/")]
    assert sorted(name_bytes(z["name"]) for z in listed) == sorted(HOSTILE)
    for enc, text in texts.items():
        assert text.returncode == 0, (enc, text.stderr)
        assert not CONTROL.search(text.stdout), (enc, text.stdout)
        shown = text.stdout.decode(enc)
        for raw in HOSTILE:
            name = display_text(name_text(raw))
            assert (name if enc == "utf-8" else name.replace("é", r"\xe9")) in shown


def poll_config(tmp_path, parent):
    conf = tmp_path / "ceilometer.conf"
    conf.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        host = {HOST}
        [smartos]
        plain_parents = {parent}
        state_file =
        """))
    return str(conf)


def test_poll_json_and_text_with_hostile_zones(tmp_path):
    """Hogs in three hostile zones: --json has their samples with the exact
    names (valid JSON, one object a line); text mode on an ASCII stdout prints
    them escaped and does not crash."""
    busy = (b"bad\xff\xfe", b"esc\x1b[31mred\x07", "café".encode())
    with scratch_cgroups() as cg:
        paths = hostile_cgroups(cg[""])
        parent = "/" + os.path.basename(cg[""]) + "/tenants"
        conf = poll_config(tmp_path, parent)
        hogs = [python_in(paths[raw], "while True: pass") for raw in busy for _ in range(2)]
        try:
            runs = {mode: run_cli(["smartos-telemetry", "poll", "--once", "--interval", "3",
                                   "--meter", "cpu.runqueue.latency", "--config-file", conf]
                                  + (["--json"] if mode == "json" else []), "ascii", 180)
                    for mode in ("json", "text")}
        finally:
            stop(*hogs)
    for mode, run in runs.items():
        assert run.returncode == 0, (mode, run.stderr[-2000:])
        assert b"Traceback" not in run.stderr, run.stderr[-2000:]
    samples = [json.loads(line) for line in runs["json"].stdout.decode("ascii").splitlines()]
    by_name = {s["resource_metadata"]["zone_name"]: s for s in samples
               if s["name"] == "cpu.runqueue.latency.count"}
    for raw in busy:
        s = by_name[name_text(raw)]  # the exact name
        assert s["resource_id"] == f"{HOST}:cgroup:{name_text(raw)}"
        assert s["volume"] > 0 and s["project_id"] == pollsters.NO_OWNER
    text = runs["text"].stdout
    assert not CONTROL.search(text), text
    for raw in busy:
        shown = display_text(f"{HOST}:cgroup:{name_text(raw)}").replace("é", r"\xe9")
        assert shown.encode("ascii") in text


def test_top_batch_escapes_hostile_names_and_reads_their_cpu():
    busy = (b"bad\xff\xfe", b"esc\x1b[31mred\x07", b"tab\tcr\rdel\x7f", "café".encode())
    with scratch_cgroups() as cg:
        paths = hostile_cgroups(cg[""])
        parent = "/" + os.path.basename(cg[""]) + "/tenants"
        hogs = [python_in(paths[raw], "while True: pass") for raw in busy]
        try:
            runs = {out: run_cli(["smartos-dtrace-top", "-b", "-n", "1", "-i", "2", "-o", out,
                                  "-e", "bpftrace", "--plain-parent", parent], "ascii", 180)
                    for out in ("table", "json")}
        finally:
            stop(*hogs)
    for run in runs.values():
        assert run.returncode == 0, run.stderr[-2000:]
    table = runs["table"].stdout
    assert not CONTROL.search(table), table
    assert rb"esc\x1b[31mred\x07" in table and rb"caf\xe9" in table
    # JSON: exact names, and each busy zone's CPU read from its own cgroup
    zones = {z["name"]: z for z in json.loads(runs["json"].stdout)["zones"]}
    for raw in busy:
        assert (zones[name_text(raw)]["meters"].get("cpu.util") or 0) > 1, zones[name_text(raw)]


def test_a_non_utf8_cgroup_name_costs_no_zone_its_series(tmp_path):
    """ceilometer-polling signs every sample (compute_signature) before any
    publisher or the exporter sees it: one undecodable name raised there for
    the whole batch, every cycle, and every zone lost the meter."""
    with scratch_cgroups("tenants/good") as cg:
        paths = hostile_cgroups(cg[""])
        parent = "/" + os.path.basename(cg[""]) + "/tenants"
        agent = Agent(tmp_path, f"plain_parents = {parent}\nstate_file =\n")
        hogs = [python_in(path, "while True: pass")
                for path in (cg["tenants/good"], paths[b"bad\xff\xfe"]) for _ in range(2)]
        try:
            # prometheus_client writes a label's backslash as \\
            bad = re.escape(f"{HOST}:cgroup:bad\\\\xff\\\\xfe")
            agent.wait_for(rf'^ceilometer_cpu_runqueue_latency_count{{.*resource="{bad}"')
            agent.wait_for(r'^ceilometer_cpu_runqueue_latency_count{.*resource='
                           rf'"{HOST}:cgroup:good"')
            log = agent.log_text()
        finally:
            stop(*hogs)
            agent.stop()
    assert "UnicodeEncodeError" not in log and "Traceback" not in log, log[-3000:]


def status_record(name, domain_id, pid, uuid):
    return f"""<domstatus state='running' reason='booted' pid='{pid}'>
  <domain type='kvm' id='{domain_id}'>
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <metadata>
      <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:name>web-1</nova:name>
        <nova:flavor name="m1.small"/>
        <nova:owner><nova:user uuid="u-4242">alice</nova:user>
          <nova:project uuid="p-4242">acme</nova:project></nova:owner>
      </nova:instance>
    </metadata>
  </domain>
</domstatus>"""


def test_a_nova_zone_and_a_plain_zone_share_a_meter_on_the_exporter(tmp_path):
    """The exporter fixes a metric's labels at its first sample: an instance's
    sample (project, user) and a plain cgroup's in one meter gave "Incorrect
    label count" and lost the batch.  Both zones' series must appear."""
    name = f"instance-{os.getpid() + 7:08x}"
    scope = rf"machine-qemu\x2d3\x2d{name.replace('-', chr(92) + 'x2d')}.scope"
    xml_dir = tmp_path / "libvirt"
    xml_dir.mkdir()
    with scratch_cgroups(f"machine.slice/{scope}/libvirt/emulator", "tenants/plain") as cg:
        emulator = cg[f"machine.slice/{scope}/libvirt/emulator"]
        qemu = start_in(emulator, [sys.executable, "-c", "while True: pass"])
        hogs = [qemu] + [python_in(p, "while True: pass")
                         for p in (emulator, cg["tenants/plain"], cg["tenants/plain"])]
        try:
            assert wait_for(lambda: str(qemu.pid) in open(f"{emulator}/cgroup.procs").read(), 10)
            (xml_dir / f"{name}.xml").write_text(status_record(name, 3, qemu.pid, UUID))
            parent = "/" + os.path.basename(cg[""]) + "/tenants"
            agent = Agent(tmp_path, f"plain_parents = {parent}\nlibvirt_xml_dirs = {xml_dir}\n"
                                    "state_file =\n")
            try:
                agent.wait_for(rf'^ceilometer_cpu_runqueue_latency_count{{.*resource="{UUID}"')
                text = agent.wait_for(r'^ceilometer_cpu_runqueue_latency_count{.*resource='
                                      rf'"{HOST}:cgroup:plain"')
                log = agent.log_text()
            finally:
                agent.stop()
        finally:
            stop(*hogs)
    vm = re.search(rf'^ceilometer_cpu_runqueue_latency_count{{([^}}]*resource="{UUID}"[^}}]*)}}',
                   text, re.MULTILINE).group(1)
    assert 'project="p-4242"' in vm and 'user="u-4242"' in vm
    plain = re.search(r'^ceilometer_cpu_runqueue_latency_count{([^}]*resource='
                      rf'"{HOST}:cgroup:plain"[^}}]*)}}', text, re.MULTILINE).group(1)
    assert f'project="{pollsters.NO_OWNER}"' in plain and f'user="{pollsters.NO_OWNER}"' in plain
    assert "Incorrect label count" not in log and "Traceback" not in log, log[-3000:]
