"""The devstack plugin: shellcheck for real, and its config-writing functions
run outside devstack (bash sourcing devstack/settings and devstack/lib) on
temp copies of ceilometer's files, then loaded the way ceilometer loads them."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml
from ceilometer import agent
from oslo_config import cfg

from smartos_telemetry.meters import catalogue
from smartos_telemetry.polling import opts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVSTACK = os.path.join(REPO, "devstack")
FULLSTACK = os.path.join(REPO, "tools", "fullstack")

CEILOMETER_CONF = """\
[DEFAULT]
# devstack's own settings, which must survive
transport_url = rabbit://stackrabbit:secret@10.0.0.1:5672/

[service_credentials]
auth_type = password
"""

CEILOMETER_POLLING = """\
---
sources:
    - name: some_pollsters
      interval: 300
      meters:
        - "*"
"""

CEILOMETER_PIPELINE = """\
---
sources:
    - name: meter_source
      meters:
          - "*"
      sinks:
          - meter_sink
sinks:
    - name: meter_sink
      publishers:
          - gnocchi://
"""


@pytest.fixture(scope="module")
def shellcheck():
    if shutil.which("shellcheck") is None:  # tools/fullstack setup installs it
        subprocess.run([FULLSTACK, "setup"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("shellcheck")


def test_the_plugin_is_shellcheck_clean(shellcheck):
    out = subprocess.run(
        [shellcheck, "-x", "plugin.sh", "settings", "lib/smartos-telemetry"],
        cwd=DEVSTACK, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def configure(etc, **settings):
    """devstack's post-config step for us, outside devstack: settings, then our writers."""
    env = {"PATH": os.environ["PATH"], "CEILOMETER_CONF_DIR": str(etc),
           "SMARTOS_TELEMETRY_DIR": REPO, "SMARTOS_TELEMETRY_PYTHON": sys.executable,
           **settings}
    script = textwrap.dedent(f"""\
        set -euo pipefail
        source {DEVSTACK}/settings
        source {DEVSTACK}/lib/smartos-telemetry
        configure_smartos_telemetry
        """)
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def etc(tmp_path):
    (tmp_path / "ceilometer.conf").write_text(CEILOMETER_CONF)
    (tmp_path / "polling.yaml").write_text(CEILOMETER_POLLING)
    (tmp_path / "pipeline.yaml").write_text(CEILOMETER_PIPELINE)
    return tmp_path


def read_conf(path):
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf.register_opts([cfg.StrOpt("transport_url")])
    conf([], default_config_files=[str(path)])
    return conf


def our_samples():
    return [name for m in catalogue.CATALOGUE for name, _, _ in m.samples()]


def test_configure_writes_the_smartos_options_and_keeps_devstacks(etc):
    configure(etc, SMARTOS_TELEMETRY_ENGINE="bpftrace",
              SMARTOS_TELEMETRY_ZONE_KINDS="libvirt,docker",
              SMARTOS_TELEMETRY_PLAIN_PARENTS="/tenants")
    conf = read_conf(etc / "ceilometer.conf")
    assert conf.smartos.engine == "bpftrace"
    assert conf.smartos.platform == "auto"
    assert conf.smartos.zone_kinds == ["libvirt", "docker"]
    assert conf.smartos.plain_parents == ["/tenants"]
    assert conf.transport_url == "rabbit://stackrabbit:secret@10.0.0.1:5672/"
    text = (etc / "ceilometer.conf").read_text()
    assert "# devstack's own settings, which must survive" in text
    assert "auth_type = password" in text


def test_configure_merges_polling_and_pipeline_so_ceilometer_routes_our_meters_to_us(etc):
    configure(etc, SMARTOS_TELEMETRY_INTERVAL="30")
    polling = yaml.safe_load((etc / "polling.yaml").read_text())
    by_name = {s["name"]: s for s in polling["sources"]}
    with open(os.path.join(REPO, "etc", "ceilometer", "polling.yaml")) as f:
        shipped = {s["name"] for s in yaml.safe_load(f)["sources"]}
    # the SmartOS-only kstat source names ceilometer's own pollsters (cpu, ...): left out
    assert set(by_name) == {"some_pollsters"} | shipped - {"smartos_kstat_counters"}
    assert by_name["smartos_zones"]["interval"] == 30
    theirs = by_name["some_pollsters"]
    ours = [s for s in polling["sources"] if s["name"].startswith("smartos_")]
    for meter in (m.name for m in catalogue.CATALOGUE):  # pollster names are meter names
        assert not agent.Source.is_supported(theirs["meters"], meter), meter
        assert sum(agent.Source.is_supported(s["meters"], meter) for s in ours) == 1, meter
    assert agent.Source.is_supported(theirs["meters"], "vcpus")  # theirs keep the rest

    pipeline = yaml.safe_load((etc / "pipeline.yaml").read_text())
    sources = {s["name"]: s for s in pipeline["sources"]}
    sinks = {s["name"]: s for s in pipeline["sinks"]}
    # the cgroup counters too: cpu, memory and memory.usage are ceilometer's
    # names as well, so ceilometer's catch-all must leave them to our sink (it
    # would file a container's cpu as an instance); libvirt's go there too
    for name in our_samples() + list(catalogue.counter_samples()):
        routed = [sink for s in sources.values()
                  if agent.Source.is_supported(s["meters"], name) for sink in s["sinks"]]
        assert routed == ["smartos_sink"], name
    assert agent.Source.is_supported(sources["meter_source"]["meters"], "vcpus")
    assert sinks["meter_sink"]["publishers"] == ["gnocchi://"]
    # devstack has keystone: the publisher filters Gnocchi's own activity
    assert sinks["smartos_sink"]["publishers"] == ["smartos-gnocchi://"]


def test_configure_twice_gives_the_same_files(etc):
    configure(etc)
    first = {p: (etc / p).read_text() for p in ("ceilometer.conf", "polling.yaml",
                                                "pipeline.yaml")}
    configure(etc)
    assert first == {p: (etc / p).read_text() for p in first}


def test_configure_without_keystone_and_without_files(tmp_path):
    configure(tmp_path, SMARTOS_TELEMETRY_FILTER_PROJECT="false")
    pipeline = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    assert pipeline["sinks"][0]["publishers"] == ["smartos-gnocchi://?enable_filter_project=false"]
    assert read_conf(tmp_path / "ceilometer.conf").smartos.engine == "auto"
