"""Linux zones: tenant cgroups under the unified hierarchy (root; real cgroupfs)."""

import os
import subprocess

import pytest
from linux_workloads import cgroup_id, scratch_cgroups, stop

from smartos_telemetry.cli.main import main
from smartos_telemetry.errors import ConfigError
from smartos_telemetry.zones.linux_cgroups import (
    CgroupZones,
    ZoneConfig,
    classify,
    libvirt_domain,
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
    uuid, attrs = libvirt_domain("instance-0000002b", (str(tmp_path),))
    assert uuid == UUID.lower()
    assert dict(attrs) == {"display_name": "web-1", "flavor_name": "m1.small",
                           "project_id": "p-5678", "user_id": "u-1234"}
    assert libvirt_domain("no-such-domain", (str(tmp_path),)) == (None, ())
    (tmp_path / "broken.xml").write_text("<domain><uuid>")
    assert libvirt_domain("broken", (str(tmp_path),)) == (None, ())
