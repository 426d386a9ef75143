"""Every zone has an owner: the platform's, else the operator's rules
(``[smartos] owners_file``, zones/owners.py), else ``none``.

The rules' order, fields and default; a bad file is one typed error naming
the rule and the fix (and disables the zone meters, never a wrong owner);
hostile cgroup names are matched as data; and, for real, ceilometer-polling's
samples of a plain cgroup zone carry the project its rule names.
"""

import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest
from ceilometer_agent import Agent
from linux_workloads import python_in, scratch_cgroups, stop
from oslo_config import cfg

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.polling import opts, telemetry_service
from smartos_telemetry.zones import Zone, owners
from smartos_telemetry.zones.owners import NO_OWNER, OwnerRulesError

ACME = "6f0c3b1e9a8d4c2b8e5f7a1d3c9b2e40"
ACME_USER = "0b7e5c1d2f3a4b6c8d9e0f1a2b3c4d5e"
DOCKER = "1a2b3c4d5e6f40718293a4b5c6d7e8f9"
OPS = "9e8d7c6b5a4f43e2d1c0b9a8f7e6d5c4"
NOVA = "c0ffee00c0ffee00c0ffee00c0ffee00"

RULES = f"""\
rules:
  - path: /tenants/acme-*
    project_id: {ACME}
    user_id: {ACME_USER}
  - kind: docker
    project_id: {DOCKER}
  - path: /tenants/*
    name: "web-?"
    project_id: {OPS}
default:
  project_id: {OPS}
"""


def zone(name, kind="cgroup", path=None, **attrs):
    return Zone(id=hash(name) & 0xffff, name=name, kind=kind,
                path=path if path is not None else f"/tenants/{name}",
                attributes=tuple(sorted(attrs.items())))


def test_the_first_rule_that_matches_wins_then_the_default():
    rules = owners.parse(RULES, "owners.yaml")
    assert rules.owner(zone("acme-web")) == (ACME_USER, ACME, "rule 1")
    # a docker container under /tenants/acme-x: rule 1 comes first
    assert rules.owner(zone("acme-x", kind="docker"))[1] == ACME
    assert rules.owner(zone("3f2a9c1d0e4b", kind="docker",
                            path="/system.slice/docker-3f.scope")) == (
        NO_OWNER, DOCKER, "rule 2")
    assert rules.owner(zone("web-1")) == (NO_OWNER, OPS, "rule 3")
    # no rule: the default; a rule's fields must all match (web-12 is no web-?)
    assert rules.owner(zone("web-12", kind="service",
                            path="/system.slice/web-12.service")) == (NO_OWNER, OPS, "default")


def test_the_platform_owner_wins_over_every_rule():
    rules = owners.parse(RULES, "owners.yaml")
    nova = zone("acme-vm", kind="libvirt", project_id=NOVA, user_id="u-1")
    assert rules.owner(nova) == ("u-1", NOVA, "platform")
    smartos = Zone(id=7, name="web", kind="joyent", instance_uuid="a" * 8, path=None,
                   attributes=(("project_id", NOVA),))
    assert rules.owner(smartos) == (NO_OWNER, NOVA, "platform")


def test_apply_sets_project_and_user_on_every_zone():
    rules = owners.parse(RULES, "owners.yaml")
    out = rules.apply([zone("acme-a"), zone("other", kind="scope", path="/x/other.scope"),
                       zone("vm", kind="libvirt", project_id=NOVA)])
    assert [(z.attribute("project_id"), z.attribute("user_id")) for z in out] == [
        (ACME, ACME_USER), (OPS, NO_OWNER), (NOVA, NO_OWNER)]
    assert out[0].name == "acme-a" and out[0].path == "/tenants/acme-a"


def test_no_file_means_none_and_says_so():
    rules = owners.load("")
    assert not rules.configured
    assert rules.owner(zone("web")) == (NO_OWNER, NO_OWNER, "none")
    assert "owners_file unset" in rules.summary() and "'none'" in rules.summary()
    rules = owners.parse(f"rules:\n  - kind: docker\n    project_id: {DOCKER}\n", "f.yaml")
    assert rules.owner(zone("web")) == (NO_OWNER, NO_OWNER, "none")  # no default
    assert "1 owner rule(s) from f.yaml; no default" in rules.summary()


@pytest.mark.parametrize("text, rule, words", [
    (f"rules:\n  - path: /a\n    project_id: {ACME}\n  - kind: dokcer\n    project_id: {ACME}\n",
     2, ["kind 'dokcer' is no zone kind", "docker"]),
    ("rules:\n  - path: /a\n", 1, ["no project_id", "fix: add project_id"]),
    (f"rules:\n  - project_id: {ACME}\n", 1, ["matches nothing", "default:"]),
    (f"rules:\n  - path: tenants/*\n    project_id: {ACME}\n", 1,
     ["not absolute", "/tenants/*"]),
    (f"rules:\n  - path: /a\n    projet_id: {ACME}\n", 1, ["unknown key(s) projet_id"]),
    ("rules:\n  - path: /a\n    project_id: 12345\n", 1, ["not a text id", "quote it"]),
    ("rules:\n  - path: /a\n    project_id: none\n", 1, ["not a keystone id"]),
    ("rules:\n  - path: /a\n    project_id: 'a b'\n", 1, ["not a keystone id"]),
    (f"rules:\n  - name: [web]\n    project_id: {ACME}\n", 1, ["is not text", "quote it"]),
    ("rules:\n  - /tenants/a\n", 1, ["not a mapping"]),
    ("default:\n  user_id: u\n", None, ["default: no project_id"]),
    ("default:\n  project: x\n", None, ["default: takes project_id and user_id only"]),
    ("rule:\n  - path: /a\n", None, ["unknown key(s) rule"]),
    ("rules: {path: /a}\n", None, ["rules: is not a list"]),
    ("rules:\n  - path: /a\n  project_id: x\n bad", None, ["not YAML at line"]),
    ("- a\n", None, ["not a mapping with rules: and default:"]),
])
def test_a_bad_rule_is_a_typed_error_naming_it_and_the_fix(text, rule, words):
    with pytest.raises(OwnerRulesError) as err:
        owners.parse(text, "/etc/ceilometer/owners.yaml")
    assert isinstance(err.value, ConfigError)
    message = str(err.value)
    assert message.startswith("[smartos] owners_file /etc/ceilometer/owners.yaml")
    assert err.value.rule == rule
    if rule is not None:
        assert f": rule {rule}: " in message
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_an_unreadable_file_is_a_typed_error(tmp_path):
    with pytest.raises(OwnerRulesError, match="cannot be read: No such file"):
        owners.load(str(tmp_path / "missing.yaml"))
    (tmp_path / "latin1.yaml").write_bytes(b"rules: []\n# caf\xe9\n")
    with pytest.raises(OwnerRulesError, match="not UTF-8"):
        owners.load(str(tmp_path / "latin1.yaml"))


#: names a tenant may give its cgroup (all but '/', NUL and newline are
#: allowed; name_text writes undecodable bytes as \xHH)
HOSTILE = ["*", "[a-z]*", "acme-?", "web-1]", "acme-\\xff", "acme-x\rproject_id: evil",
           "..", "-", "acme-*"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_matched_as_data_never_as_patterns(name):
    rules = owners.parse(textwrap.dedent(f"""\
        rules:
          - name: acme-x
            project_id: {ACME}
          - path: /tenants/web-1
            project_id: {DOCKER}
        default:
          project_id: {OPS}
        """), "owners.yaml")
    # no hostile name is 'acme-x' or '/tenants/web-1', so only the default
    assert rules.owner(zone(name)) == (NO_OWNER, OPS, "default")


def test_an_operators_glob_matches_what_it_says_against_hostile_names():
    rules = owners.parse(f"rules:\n  - path: '/tenants/acme-*'\n    project_id: {ACME}\n"
                         f"  - name: '[[]*'\n    project_id: {DOCKER}\n", "owners.yaml")
    assert rules.owner(zone("acme-x\rproject_id: evil"))[1] == ACME  # * spans anything
    assert rules.owner(zone("[a-z]*"))[1] == DOCKER  # '[[]' is a literal '['
    assert rules.owner(zone("a"))[1] == NO_OWNER


def conf_with(tmp_path, text):
    path = tmp_path / "owners.yaml"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    conf([], project="ceilometer", default_config_files=[])
    opts.register(conf)
    conf.set_override("owners_file", str(path), group="smartos")
    conf.set_override("state_file", "", group="smartos")
    return conf


def test_a_bad_file_disables_the_zone_meters_with_one_error(tmp_path, caplog):
    conf = conf_with(tmp_path, f"rules:\n  - kind: dokcer\n    project_id: {ACME}\n")
    with pytest.raises(OwnerRulesError, match="rule 1: kind 'dokcer'"):
        opts.validate(conf)
    with caplog.at_level(logging.ERROR):
        service = telemetry_service.TelemetryService(conf)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "rule 1: kind 'dokcer'" in errors[0].getMessage()
    assert "zone meters are disabled" in errors[0].getMessage()
    assert service.zones() == []  # nothing billed to a wrong owner
    assert service.ensure_failed()


def test_a_good_file_is_logged_once_at_start(tmp_path, caplog):
    conf = conf_with(tmp_path, RULES)
    with caplog.at_level(logging.INFO):
        service = telemetry_service.TelemetryService(conf)
    said = [r.getMessage() for r in caplog.records if "owner rule" in r.getMessage()]
    assert said == [f"smartos-telemetry: 3 owner rule(s) from {tmp_path / 'owners.yaml'}; "
                    f"default project {OPS}"]
    assert service.owners.owner(zone("acme-1"))[1] == ACME


@pytest.mark.root
def test_ceilometer_pollings_samples_of_a_plain_cgroup_zone_carry_its_project(tmp_path):
    """Real ceilometer-polling, the shipped polling.yaml, a real engine: two
    plain-cgroup zones, one a rule names, one left to the default; the
    Prometheus exporter's project/user labels are the samples' fields."""
    with scratch_cgroups("tenants/acme-web", "tenants/other") as cg:
        parent = "/" + os.path.basename(cg[""]) + "/tenants"
        (tmp_path / "owners.yaml").write_text(textwrap.dedent(f"""\
            rules:
              - path: "{parent}/acme-*"
                kind: cgroup
                project_id: {ACME}
                user_id: {ACME_USER}
            default:
              project_id: {OPS}
            """))
        hogs = [python_in(cg[name], "while True: pass")
                for name in ("tenants/acme-web", "tenants/other")]
        agent = Agent(tmp_path, smartos_options=f"""\
            plain_parents = {parent}
            owners_file = {tmp_path / 'owners.yaml'}
            """)
        try:
            def both(text):
                # the cgroup counters' pollster may come later in a cycle
                return all(re.search(rf'^ceilometer_{meter}\{{[^}}]*'
                                     rf'resource="st-test-cn1:cgroup:{name}"', text, re.M)
                           for name in ("acme-web", "other")
                           for meter in ("cpu_runqueue_latency_count", "cpu"))
            text = agent.wait_until(both, timeout=90)
        finally:
            agent.stop()
            stop(*hogs)
    labels = {}
    for line in text.splitlines():
        m = re.match(r'ceilometer_cpu_runqueue_latency_count\{(.*)\} ', line)
        if m:
            fields = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
            labels[fields["resource"]] = fields
    acme = labels["st-test-cn1:cgroup:acme-web"]
    other = labels["st-test-cn1:cgroup:other"]
    assert (acme["project"], acme["user"]) == (ACME, ACME_USER)
    assert (other["project"], other["user"]) == (OPS, NO_OWNER)
    # every sample of the zone, whatever its pollster (the cgroup counters
    # such as cpu too): a consumer may rate any of them
    lines = [line for line in text.splitlines()
             if 'resource="st-test-cn1:cgroup:acme-web"' in line]
    assert any(line.startswith("ceilometer_cpu{") for line in lines), lines
    assert all(f'project="{ACME}"' in line and f'user="{ACME_USER}"' in line
               for line in lines), lines
    assert "1 owner rule(s) from" in agent.log_text()


def test_the_shipped_example_file_is_valid():
    rules = owners.load(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "etc", "ceilometer", "smartos-owners.yaml"))
    assert [r.describe() for r in rules.rules] == ["path /tenants/acme-*", "kind docker"]
    assert rules.owner(zone("acme-1"))[1] == ACME and rules.default == (NO_OWNER, OPS)


def test_check_names_the_owner_rules_or_their_error(tmp_path):
    bin_dir = os.path.dirname(sys.executable)
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    (tmp_path / "owners.yaml").write_text(RULES)
    (tmp_path / "bad.yaml").write_text(f"rules:\n  - kind: dokcer\n    project_id: {ACME}\n")
    good.write_text(f"[smartos]\nowners_file = {tmp_path / 'owners.yaml'}\n")
    bad.write_text(f"[smartos]\nowners_file = {tmp_path / 'bad.yaml'}\n")
    runs = {name: subprocess.run([os.path.join(bin_dir, "smartos-telemetry"), "check",
                                  "--config-file", str(conf)],
                                 capture_output=True, text=True, timeout=120)
            for name, conf in (("good", good), ("bad", bad))}
    lines = {name: [line for line in run.stdout.splitlines() if line.startswith("owners:")]
             for name, run in runs.items()}
    assert lines["good"] == [f"owners:       3 owner rule(s) from {tmp_path / 'owners.yaml'}; "
                             f"default project {OPS}"]
    (line,) = lines["bad"]
    assert line.startswith(f"owners:       ERROR [smartos] owners_file {tmp_path / 'bad.yaml'}"
                           f": rule 1: kind 'dokcer' is no zone kind")
    assert runs["bad"].returncode == 1


#: real directory names a tenant may give its cgroups (bytes: all but "/", NUL
#: and newline)
KERNEL_NAMES = (b"acme-\xff\xfe", b"acme-*", b"acme-[x]", b"*", b"[!a]*", b"acme",
                b"esc\x1b[31m\x07", b"evil\rproject_id: x", b"{project_id: x}",
                "café".encode(), b"\xfe" * 255)


@pytest.mark.root
def test_real_hostile_cgroups_get_owners_by_matching_as_data():
    """Real cgroups with hostile names under a plain parent, walked by the
    zone layer: the operator's glob picks exactly the names it says; a
    name full of glob or YAML syntax is only ever the string matched."""
    from smartos_telemetry.zones.linux_cgroups import CgroupZones, ZoneConfig, name_bytes

    with scratch_cgroups() as cg:
        top = "/" + os.path.basename(cg[""])
        for raw in KERNEL_NAMES:
            os.makedirs(os.path.join(os.fsencode(cg[""]), b"tenants", raw))
        zones = CgroupZones(ZoneConfig(plain_parents=(f"{top}/tenants",))).zones()
        zones = [z for z in zones if z.path.startswith(top + "/tenants/")]
        rules = owners.parse(textwrap.dedent(f"""\
            rules:
              - path: "{top}/tenants/acme-*"
                project_id: {ACME}
              - name: "*"
                kind: service
                project_id: {DOCKER}
            default:
              project_id: {OPS}
            """), "owners.yaml")
        got = {name_bytes(z.name): z.attribute("project_id") for z in rules.apply(zones)}
    assert set(got) == set(KERNEL_NAMES)
    assert {raw for raw, project in got.items() if project == ACME} == {
        b"acme-\xff\xfe", b"acme-*", b"acme-[x]"}
    assert {raw for raw, project in got.items() if project == OPS} == set(KERNEL_NAMES) - {
        b"acme-\xff\xfe", b"acme-*", b"acme-[x]"}
