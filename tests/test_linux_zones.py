"""Linux zones: tenant cgroups under the unified hierarchy (root; real cgroupfs)."""

import logging
import os
import subprocess

import pytest
from linux_workloads import cgroup_id, scratch_cgroups, start_in, stop, wait_for

from smartos_telemetry.cli.main import main
from smartos_telemetry.errors import ConfigError
from smartos_telemetry.zones.linux_cgroups import (
    CgroupZones,
    ZoneConfig,
    classify,
    libvirt_record,
    os_path,
    unescape_systemd,
    unified_root,
)

pytestmark = pytest.mark.root

VM_SCOPE = r"machine-qemu\x2d7\x2dinstance\x2d0000002a.scope"
DOCKER_ID = "0123456789abcdef" * 4
UUID = "9f1c2a4e-7b3d-4c55-8e21-0a6b5c4d3e2f"


def test_unified_root_comes_from_mountinfo(tmp_path):
    hybrid = tmp_path / "mountinfo"
    hybrid.write_text(
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    assert unified_root(str(hybrid)) == "/sys/fs/cgroup/unified"
    pure = tmp_path / "pure"
    pure.write_text("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
    assert unified_root(str(pure)) == "/sys/fs/cgroup"
    v1 = tmp_path / "v1"
    v1.write_text("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    with pytest.raises(ConfigError, match="cgroup2"):
        unified_root(str(v1))
    # this host: hybrid, so the walk must not be /sys/fs/cgroup (v1 inodes collide)
    assert os.path.exists(os.path.join(unified_root(), "cgroup.procs"))


def test_classification_of_tenant_names():
    cfg = ZoneConfig(plain_parents=("/tenants",))
    assert unescape_systemd(VM_SCOPE) == "machine-qemu-7-instance-0000002a.scope"
    assert classify("/machine.slice/" + VM_SCOPE, cfg) == ("libvirt", "instance-0000002a")
    assert classify("/machine/qemu-3-vm-a.libvirt-qemu", cfg) == ("libvirt", "vm-a")
    assert classify(f"/system.slice/docker-{DOCKER_ID}.scope", cfg) == ("docker", DOCKER_ID[:12])
    assert classify(f"/docker/{DOCKER_ID}", cfg) == ("docker", DOCKER_ID[:12])
    assert classify(f"/kubepods/cri-containerd-{DOCKER_ID}.scope", cfg)[0] == "containerd"
    assert classify(f"/user.slice/libpod-{DOCKER_ID}.scope", cfg)[0] == "podman"
    assert classify("/system.slice/nginx.service", cfg) == ("service", "nginx")
    assert classify("/user.slice/session-3.scope", cfg) == ("scope", "session-3")
    assert classify("/tenants/acme", cfg) == ("cgroup", "acme")
    assert classify("/elsewhere/acme", cfg) is None
    assert classify("/system.slice", cfg) is None
    only_vms = ZoneConfig(kinds=frozenset({"libvirt"}), parents=("/machine.slice",))
    assert classify("/machine.slice/" + VM_SCOPE, only_vms)[0] == "libvirt"
    assert classify("/other.slice/" + VM_SCOPE, only_vms) is None
    assert classify("/system.slice/nginx.service", only_vms) is None
    with pytest.raises(ConfigError):
        ZoneConfig(kinds=frozenset({"jail"}))


def test_tenants_roll_up_resolve_by_cgroup_v2_id_and_expire(tmp_path):
    (tmp_path / "instance-0000002a.xml").write_text(
        f"<domain><name>instance-0000002a</name><uuid>{UUID}</uuid></domain>")
    with scratch_cgroups(f"machine.slice/{VM_SCOPE}/libvirt/vcpu0", "plain/acme/sub",
                      f"system.slice/docker-{DOCKER_ID}.scope", "host-only") as cg:
        top = "/" + os.path.basename(cg[""])
        cfg = ZoneConfig(plain_parents=(top + "/plain",), libvirt_xml_dirs=(str(tmp_path),))
        zones = CgroupZones(cfg, ttl=0.0)
        vm_dir = os.path.join(cg[""], "machine.slice", VM_SCOPE)
        vm = zones.resolve(cgroup_id(vm_dir))
        assert (vm.name, vm.kind, vm.instance_uuid) == ("instance-0000002a", "libvirt", UUID)
        assert vm.id == cgroup_id(vm_dir) and vm.path == f"{top}/machine.slice/{VM_SCOPE}"
        # a vCPU thread's sub-cgroup rolls up to its VM
        assert zones.resolve(cgroup_id(cg[f"machine.slice/{VM_SCOPE}/libvirt/vcpu0"])) == vm
        acme = zones.resolve(cgroup_id(cg["plain/acme/sub"]))
        assert (acme.name, acme.kind) == ("acme", "cgroup")
        docker = zones.resolve(cgroup_id(os.path.join(cg[""], "system.slice",
                                                      f"docker-{DOCKER_ID}.scope")))
        assert (docker.name, docker.kind) == (DOCKER_ID[:12], "docker")
        assert zones.resolve(cgroup_id(cg["host-only"])) is None
        assert zones.resolve(1) is None  # the root: the host, not a tenant
        listed = {z.id: z for z in zones.zones()}
        assert {vm.id, acme.id, docker.id} <= set(listed)
        # a cgroup made after the last walk: found by the rescan a miss triggers
        scans = zones.scans
        late = os.path.join(cg[""], "plain", "late")
        os.mkdir(late)
        zones._scanned_at = None
        assert zones.resolve(cgroup_id(late)).name == "late" and zones.scans == scans + 1
        # gone cgroups expire
        late_id = cgroup_id(late)
        os.rmdir(late)
        zones._scanned_at = None
        assert zones.resolve(late_id) is None
        assert zones.path(late_id) is None


def test_zone_id_is_the_cgroup_bpftrace_reports():
    with scratch_cgroups("t") as cg:
        proc = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && '
                                 'exec bpftrace -e "BEGIN { printf(\\"%d\\n\\", cgroup); '
                                 'exit(); }" 2>/dev/null', cg["t"]],
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            stop(proc)
        # bpftrace needs tracefs only for tracepoints: BEGIN runs without it
        assert int(out.split()[-1]) == cgroup_id(cg["t"])


def test_zones_cli_lists_them(capsys):
    with scratch_cgroups("acme") as cg:
        top = "/" + os.path.basename(cg[""])
        assert main(["zones", "--json", "--plain-parent", top, "--kind", "cgroup"]) == 0
        out = capsys.readouterr().out
        assert f'"path": "{top}/acme"' in out and f'"id": {cgroup_id(cg["acme"])}' in out
        assert main(["zones", "--plain-parent", top]) == 0
        assert "acme" in capsys.readouterr().out


def test_nova_metadata_in_libvirt_xml_gives_project_user_flavor_and_name(tmp_path):
    (tmp_path / "instance-0000002b.xml").write_text(f"""<domain type='kvm'>
  <name>instance-0000002b</name>
  <uuid>{UUID.upper()}</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:name>web-1</nova:name>
      <nova:flavor name="m1.small"><nova:memory>2048</nova:memory></nova:flavor>
      <nova:owner>
        <nova:user uuid="u-1234">alice</nova:user>
        <nova:project uuid="p-5678">acme</nova:project>
      </nova:owner>
    </nova:instance>
  </metadata>
</domain>""")
    record = libvirt_record("instance-0000002b", (str(tmp_path),))
    assert record.uuid == UUID.lower() and record.name == "instance-0000002b"
    assert dict(record.attributes) == {"display_name": "web-1", "flavor_name": "m1.small",
                                       "flavor_id": "m1.small",  # no id: the name
                                       "project_id": "p-5678", "user_id": "u-1234"}
    assert libvirt_record("no-such-domain", (str(tmp_path),)) is None
    (tmp_path / "broken.xml").write_text("<domain><uuid>")
    assert libvirt_record("broken", (str(tmp_path),)) is None


def status_record(name, domain_id, pid, uuid, project="p-5678", user="u-1234"):
    """A domain's status record as libvirt's QEMU driver writes it while the
    domain runs (/run/libvirt/qemu/NAME.xml), with Nova's metadata."""
    return f"""<domstatus state='running' reason='booted' pid='{pid}'>
  <domain type='kvm' id='{domain_id}'>
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <metadata>
      <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:name>web-1</nova:name>
        <nova:owner><nova:user uuid="{user}">alice</nova:user>
          <nova:project uuid="{project}">acme</nova:project></nova:owner>
      </nova:instance>
    </metadata>
  </domain>
</domstatus>"""


def test_a_scope_name_libvirt_could_not_write_reads_no_record(tmp_path):
    evil = r"machine-qemu\x2d91\x2d..\x2f..\x2f..\x2ftmp\x2fevil.scope"
    xml_dir = tmp_path / "run" / "libvirt" / "qemu"
    xml_dir.mkdir(parents=True)
    (tmp_path / "tmp").mkdir()  # what ../../../tmp/evil.xml reaches from xml_dir
    (tmp_path / "tmp" / "evil.xml").write_text(
        f"<domain><name>evil</name><uuid>{UUID}</uuid></domain>")
    # a symlink in libvirt's directory to a record outside it is not followed either
    os.symlink(tmp_path / "tmp" / "evil.xml", xml_dir / "instance-0000000b.xml")
    sym = r"machine-qemu\x2d92\x2dinstance\x2d0000000b.scope"
    with scratch_cgroups(evil, sym, r"machine-qemu\x2d93\x2dcaf\xc3\xa9.scope",
                         r"caf\xc3\xa9.service") as cg:
        zones = {os_path(z.path).rpartition("/")[2]: z
                 for z in CgroupZones(ZoneConfig(libvirt_xml_dirs=(str(xml_dir),))).zones()
                 if z.path.startswith("/" + os.path.basename(cg[""]) + "/")}
    # not a machine name libvirt writes ('/' and '..' never are): a plain scope
    assert (zones[evil].kind, zones[evil].name) == ("scope", "machine-qemu-91-../../../tmp/evil")
    assert zones[evil].instance_uuid is None and zones[evil].attributes == ()
    assert (zones[sym].kind, zones[sym].instance_uuid) == ("libvirt", None)
    # systemd's escapes are bytes: \xc3\xa9 is UTF-8's é
    assert zones[r"caf\xc3\xa9.service"].name == "café"
    assert zones[r"machine-qemu\x2d93\x2dcaf\xc3\xa9.scope"].name == "machine-qemu-93-café"
    assert zones[r"machine-qemu\x2d93\x2dcaf\xc3\xa9.scope"].kind == "scope"  # libvirt drops é


def test_a_libvirt_identity_needs_libvirts_record_of_that_very_scope(tmp_path, caplog):
    """The status record names the domain's id and QEMU pid: only the scope that
    runs that pid gets the UUID and the tenant's project; a second scope naming
    the same domain, or one with another id, gets neither (one warning each)."""
    name = f"instance-{os.getpid():08x}"
    real = rf"machine-qemu\x2d5\x2d{name.replace('-', chr(92) + 'x2d')}.scope"
    other_id = real.replace(r"qemu\x2d5", r"qemu\x2d6")
    with scratch_cgroups(f"machine.slice/{real}/libvirt/emulator", f"fake/{real}",
                         f"fake2/{other_id}") as cg:
        emulator = cg[f"machine.slice/{real}/libvirt/emulator"]
        qemu = start_in(emulator, ["sleep", "60"])
        try:
            assert wait_for(lambda: str(qemu.pid) in open(f"{emulator}/cgroup.procs").read(), 10)
            (tmp_path / f"{name}.xml").write_text(status_record(name, 5, qemu.pid, UUID))
            zones = CgroupZones(ZoneConfig(libvirt_xml_dirs=(str(tmp_path),)))
            with caplog.at_level(logging.WARNING):
                zones.rescan()
                zones.rescan()
            vm = zones.resolve(cgroup_id(os.path.join(cg[""], "machine.slice", real)))
            fake = zones.resolve(cgroup_id(os.path.join(cg[""], "fake", real)))
            fake2 = zones.resolve(cgroup_id(os.path.join(cg[""], "fake2", other_id)))
        finally:
            stop(qemu)
    assert (vm.kind, vm.name, vm.instance_uuid) == ("libvirt", name, UUID)
    assert vm.attribute("project_id") == "p-5678" and vm.attribute("user_id") == "u-1234"
    # the impostors: no identity; both named alike, so only the older is a zone
    assert (fake.kind, fake.instance_uuid, fake.attributes) == ("libvirt", None, ())
    assert fake2 is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "/fake/" in w and "does not run in this scope" in w]) == 1
    assert len([w for w in warnings if "/fake2/" in w and f"machine qemu-5-{name}" in w]) == 1
    assert len([w for w in warnings if "/fake2/" in w and "is already zone" in w]) == 1
    assert not [w for w in warnings if "/machine.slice/" in w.split(":")[1]]


def test_two_scopes_claiming_one_instance_never_share_its_resource(tmp_path, caplog):
    """A bare definition (no id, no pid) vouches for any scope of its name: the
    first scope keeps the UUID, the second is no zone while the first lives
    (one warning, not one per walk); once the first is gone the second gets it."""
    name = f"instance-{os.getpid() + 1:08x}"
    scope = rf"machine-qemu\x2d7\x2d{name.replace('-', chr(92) + 'x2d')}.scope"
    (tmp_path / f"{name}.xml").write_text(
        f"<domain><name>{name}</name><uuid>{UUID}</uuid></domain>")
    with scratch_cgroups(f"one/{scope}", f"two/{scope}/sub") as cg:
        first = cgroup_id(os.path.join(cg[""], "one", scope))
        second = cgroup_id(os.path.join(cg[""], "two", scope))
        zones = CgroupZones(ZoneConfig(libvirt_xml_dirs=(str(tmp_path),)), ttl=0.0)
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                listed = [z for z in zones.zones() if z.instance_uuid == UUID]
        assert [z.id for z in listed] == [first]
        assert zones.resolve(first).instance_uuid == UUID
        assert zones.resolve(second) is None
        assert zones.resolve(cgroup_id(cg[f"two/{scope}/sub"])) is None
        warned = [r.getMessage() for r in caplog.records
                  if r.levelno == logging.WARNING and UUID in r.getMessage()]
        assert len(warned) == 1 and "/two/" in warned[0], warned
        os.rmdir(os.path.join(cg[""], "one", scope))
        assert [z.id for z in zones.zones() if z.instance_uuid == UUID] == [second]


def test_plain_parents_trailing_slash_relative_and_missing(caplog):
    with scratch_cgroups("tenants/acme") as cg:
        top = "/" + os.path.basename(cg[""])
        acme = cgroup_id(cg["tenants/acme"])
        for spelled in (f"{top}/tenants/", f"{top}//tenants", f"{top}/tenants"):
            zones = CgroupZones(ZoneConfig(plain_parents=(spelled,)))
            assert zones.resolve(acme).name == "acme", spelled
        with pytest.raises(ConfigError, match=r"plain_parents.*fix: /tenants\b"):
            ZoneConfig(plain_parents=("tenants/",))
        missing = f"{top}/no-such-parent"
        zones = CgroupZones(ZoneConfig(plain_parents=(missing, f"{top}/tenants")))
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                assert [z.id for z in zones.zones() if z.path.startswith(top)] == [acme]
        warned = [r.getMessage() for r in caplog.records if missing in r.getMessage()]
        assert len(warned) == 1 and "no such cgroup" in warned[0], warned
        # the full filesystem path is a common slip: the warning says what to write
        full = unified_root() + f"{top}/tenants"
        with caplog.at_level(logging.WARNING):
            CgroupZones(ZoneConfig(plain_parents=(full,))).zones()
        assert any(f"under the unified root: {top}/tenants" in r.getMessage()
                   for r in caplog.records)


def test_a_relative_plain_parent_is_one_error_line_naming_the_fix(tmp_path, capsys):
    assert main(["zones", "--plain-parent", "tenants"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "plain_parents" in err and "fix: /tenants" in err
    conf = tmp_path / "ceilometer.conf"
    conf.write_text("[smartos]\nplain_parents = /ok, tenants/\nstate_file =\n")
    assert main(["poll", "--once", "--config-file", str(conf)]) == 1  # before any engine
    err = capsys.readouterr().err
    assert "plain parent 'tenants/'" in err and "fix: /tenants" in err
    assert "Traceback" not in err
