"""The plugins as ceilometer finds them: entry points, options, sample form."""

import configparser
import os
import subprocess
import sys

from oslo_config import cfg

from smartos_telemetry.meters import catalogue
from smartos_telemetry.polling import opts, pollsters
from smartos_telemetry.polling.cgroup_pollsters import CGROUP_POLLSTERS
from smartos_telemetry.zones import Zone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry_points(section):
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    lines = parser["entry_points"][section].strip().splitlines()
    return dict(line.replace(" ", "").split("=", 1) for line in lines)


def test_one_pollster_per_meter_and_entry_point_name_is_meter_name():
    meters = {m.name for m in catalogue.CATALOGUE}
    for namespace in ("ceilometer.poll.smartos", "ceilometer.poll.compute"):
        eps = entry_points(namespace)
        assert meters <= set(eps)
        for name in meters:
            cls = getattr(pollsters, eps[name].split(":")[1])
            assert cls.meter == name and pollsters.POLLSTERS[name] is cls
    # the SmartOS kstat families: only in our namespace (in compute, names such as
    # "cpu" and "memory" would shadow the libvirt pollsters')
    smartos = entry_points("ceilometer.poll.smartos")
    assert set(smartos) - meters == set(pollsters.KSTAT_POLLSTERS) | set(CGROUP_POLLSTERS)
    assert not set(pollsters.KSTAT_POLLSTERS) & set(entry_points("ceilometer.poll.compute"))
    # the Linux cgroup families: in both (no Ceilometer meter has their names)
    for namespace in ("ceilometer.poll.smartos", "ceilometer.poll.compute"):
        eps = entry_points(namespace)
        for name, cls in CGROUP_POLLSTERS.items():
            assert eps[name] == f"{cls.__module__}:{cls.__name__}", name
    assert set(entry_points("ceilometer.poll.compute")) - meters == set(CGROUP_POLLSTERS)
    from smartos_telemetry.meters.cgroup_counters import FAMILIES
    assert [cls.family for cls in CGROUP_POLLSTERS.values()] == list(FAMILIES)
    from smartos_telemetry.meters.kstat_counters import METERS
    assert {cls.module for cls in pollsters.KSTAT_POLLSTERS.values()} == \
        {m.module for m in METERS}
    for namespace in ("ceilometer.discover.smartos", "ceilometer.discover.compute"):
        assert set(entry_points(namespace)) == {"local_zones", "local_host"}


def test_options_register_on_the_conf_handed_in_and_generate_a_sample():
    conf = cfg.ConfigOpts()
    group = opts.register(conf)
    opts.register(conf)  # twice is fine
    conf([], default_config_files=[])
    assert group.engine == "auto" and group.zone_ttl == 900.0
    assert "smartos" not in cfg.CONF  # never the global conf
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable),
                                       "oslo-config-generator"),
                          "--namespace", "smartos_telemetry"],
                         capture_output=True, text=True, check=True).stdout
    assert "[smartos]" in out
    for opt in opts.OPTS:
        assert f"#{opt.dest} =" in out, opt.dest


def test_zone_resources_are_the_instance_where_known():
    vm = Zone(44, "instance-0000002a", "libvirt", "6b8f0000-0000-4000-8000-000000000001", "/m",
              (("display_name", "web-1"), ("flavor_name", "m1.small"), ("project_id", "p-1")))
    box = Zone(63, "web", "docker", None, "/system.slice/docker-abc.scope")
    assert pollsters.zone_resource_id("cn1", vm) == vm.instance_uuid
    assert pollsters.zone_resource_id("cn1", box) == "cn1:docker:web"
    meta = pollsters.zone_metadata("cn1", vm)
    assert meta["display_name"] == "web-1" and meta["name"] == "instance-0000002a"
    assert meta["host"] == "cn1" and meta["flavor_name"] == "m1.small"
    assert meta["flavor_id"] == ""  # required by Gnocchi's instance type, unknown here
    assert pollsters.zone_metadata("cn1", box)["display_name"] == "web"
    assert "name" not in pollsters.zone_metadata("cn1", box)
    assert vm.attribute("project_id") == "p-1" and box.attribute("project_id") is None
