"""The Platform: one place decides SmartOS or Linux and what follows from it."""

import os

import pytest

from smartos_telemetry import platform
from smartos_telemetry.errors import ConfigError, EngineUnavailable
from smartos_telemetry.meters import catalogue
from smartos_telemetry.platform.linux import CgroupCpu, Linux
from smartos_telemetry.platform.smartos import SmartOS


def test_detect_follows_the_kernel_name(monkeypatch):
    real = os.uname()
    assert platform.detect().name == ("smartos" if real.sysname == "SunOS" else "linux")
    fake = os.uname_result(("SunOS", *real[1:]))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert isinstance(platform.detect(), SmartOS)
    assert isinstance(platform.named("auto"), SmartOS)


def test_named_platforms_and_a_bad_name():
    assert isinstance(platform.named("linux"), Linux)
    assert isinstance(platform.named("smartos"), SmartOS)
    with pytest.raises(ConfigError, match="unknown platform 'solaris'; choose one of auto"):
        platform.named("solaris")


def test_what_each_platform_decides():
    linux, smartos = Linux(), SmartOS()
    assert (linux.host_row_name, smartos.host_row_name) == ("(host)", "global")
    assert linux.rolls_up_children and not smartos.rolls_up_children
    assert linux.tracks_departed_zones and not smartos.tracks_departed_zones
    assert smartos.has_kstat_counters and not linux.has_kstat_counters
    assert smartos.scripts("dtrace") == catalogue.scripts_for("smartos", "dtrace")
    assert all(s.startswith("smartos/") for s in smartos.scripts("dtrace"))
    assert linux.scripts("bpftrace") == catalogue.scripts_for("linux", "bpftrace")
    assert smartos.scripts("bpftrace") == []  # no SmartOS bpftrace scripts


def test_auto_means_dtrace_on_smartos():
    try:
        name, _ = SmartOS().choose_engine("auto")
    except EngineUnavailable as exc:
        assert exc.engine == "dtrace"
    else:
        assert name == "dtrace"


def test_plain_parents_are_for_linux_only(tmp_path):
    with pytest.raises(ConfigError, match="--plain-parent is for Linux cgroups"):
        SmartOS().zone_layer(plain_parents=["/tenants"])
    layer = Linux().zone_layer(plain_parents=["/tenants/"])
    assert layer.config.plain_parents == ("/tenants",)


def test_cgroup_cpu_reads_usage_between_two_reads(tmp_path):
    (tmp_path / "web").mkdir()
    stat = tmp_path / "web" / "cpu.stat"
    stat.write_text("usage_usec 1000000\nuser_usec 1\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 5000000\n")
    times = iter([10.0, 12.0])
    cpu = CgroupCpu(str(tmp_path), clock=lambda: next(times))
    assert cpu.read({1: "/web", None: ""}) == {}  # nothing to compare with yet
    stat.write_text("usage_usec 2000000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 9000000\n")
    assert cpu.read({1: "/web", None: "", 2: "/gone"}) == {1: 50.0, None: 200.0}
