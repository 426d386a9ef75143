"""Every shipped script declares its aggregation contract, and its body
keeps it; the SmartOS scripts are checked here against fixtures (this host
cannot run them), the Linux ones also for real (tests/libdtrace_real,
tests/test_bpftrace_*).  Every SmartOS script's header says, per probe it
uses, which illumos source file and function fires it and what each argument
it reads holds (tests/test_smartos_d_scripts.py checks the scripts against
those facts)."""

import re

import pytest
from d_source import d_clauses

from smartos_telemetry import scripts
from smartos_telemetry.engines.dtrace.combine import combine
from smartos_telemetry.errors import ConfigError
from smartos_telemetry.meters import catalogue

ALL = scripts.shipped_scripts()


def test_every_platform_has_scripts():
    assert {p.split("/")[0] for p in ALL} == {"linux", "smartos"}
    assert {"smartos/runqueue.d", "smartos/zfs_io.d", "smartos/tcp.d",
            "linux/runqueue.d", "linux/diskio.d", "linux/tcp.d"} <= set(ALL)


@pytest.mark.parametrize("relative", ALL)
def test_header_names_probes_units_keys_caveats_and_contract(relative):
    source = open(scripts.script_path(relative)).read()
    header = source.partition("*/")[0]
    for section in ("Probes:", "Units:", "Key:", "Contract:", "Caveats:"):
        assert section in header, f"{relative}: header lacks {section}"
    assert scripts.contract(source)


def recorded_actions(body, name):
    """The action of every ``@name[...] = action(`` in a D body (brackets nest)."""
    actions = []
    for m in re.finditer(rf"@{name}\[", body):
        depth, i = 1, m.end()
        while depth:
            depth += {"[": 1, "]": -1}.get(body[i], 0)
            i += 1
        rest = re.match(r"\s*=\s*(\w+)\(", body[i:])
        if rest:
            actions.append(rest.group(1))
    return actions


@pytest.mark.parametrize("relative", [p for p in ALL if p.endswith(".d")])
def test_d_bodies_record_what_the_contract_declares(relative):
    source = open(scripts.script_path(relative)).read()
    body = source.partition("*/")[2]
    for name, c in scripts.contract(source).items():
        uses = recorded_actions(body, name)
        assert uses, f"{relative}: @{name} is declared but never recorded"
        for action in uses:
            assert action == c.action, f"{relative}: @{name} uses {action}, not {c.action}"
        if c.action == "llquantize":
            assert re.search(rf"@{name}\[[^=]*=\s*\n?\s*llquantize\([^;]*, 10, 3, 9, 100\)",
                             body), f"{relative}: @{name} must use llquantize(.., 10, 3, 9, 100)"


def test_the_libbpf_trial_loads_exactly_the_catalogue_s_programs():
    # LibbpfEngine.trial_load proves every shipped .bpf.c program, without
    # asking the catalogue (engines sit below the meters)
    assert scripts.shipped_with_suffix(".bpf.c") == catalogue.scripts_for("linux", "libbpf")


def test_one_reading_of_the_loglinear_marker():
    src = ("// loglinear: @runq_ns @io_ns\n"
           "  //loglinear:@srtt_ns, @connect_ns,\n"
           "@x = count(); // loglinear: @not_a_marker (not a line of its own)\n"
           "// loglinear: none\n")
    assert scripts.loglinear_maps(src) == {"runq_ns", "io_ns", "srtt_ns", "connect_ns"}
    for rel in ALL:
        if rel.endswith(".bt"):
            with open(scripts.script_path(rel), encoding="utf-8") as f:
                source = f.read()
            marked = scripts.loglinear_maps(source)
            assert marked and marked == {n for n, c in scripts.contract(source).items()
                                         if c.action == "llquantize"}, rel


def test_contract_parsing_and_loglinear_maps():
    src = """/*
 * Contract:
 *   @runq_ns[cgroup_id, bucket] = count()
 *   @retransmits[cgroup_id] = count()
 */
// loglinear: @runq_ns
"""
    c = scripts.contract(src)
    assert c["runq_ns"] == scripts.AggContract("runq_ns", ("cgroup_id",), "llquantize")
    assert c["retransmits"].action == "count"
    with pytest.raises(ConfigError, match="no 'Contract:'"):
        scripts.contract("/* nothing */")
    with pytest.raises(ConfigError, match="loglinear"):
        scripts.contract("/*\n Contract:\n @x[a] = sum(v)\n*/\n// loglinear: @x\n")


def test_smartos_scripts_key_by_zone_never_by_an_operator_string():
    for relative in (p for p in ALL if p.startswith("smartos/")):
        for c in scripts.contract(open(scripts.script_path(relative)).read()).values():
            assert c.keys in (("zonename",), ("zoneid",)), (relative, c)
    for relative in ALL:
        body = open(scripts.script_path(relative)).read().partition("*/")[2]
        assert "$$" not in body and "%s" not in body  # nothing is templated in


def test_a_platform_s_d_scripts_combine_into_one_program():
    for platform in ("linux", "smartos"):
        rels = [p for p in ALL if p.startswith(platform + "/") and p.endswith(".d")]
        source, merged = combine(rels)
        assert all(f"---- {r} ----" in source for r in rels)
        assert set(merged) == {n for r in rels
                               for n in scripts.contract(open(scripts.script_path(r)).read())}
    with pytest.raises(ConfigError, match="declared by two scripts"):
        combine(["linux/tcp.d", "linux/tcp.d"])
    with pytest.raises(ConfigError, match="only D scripts"):
        combine(["linux/tcp.bt"])




PROBE_NAME = re.compile(r"[a-z]+:[\w-]*:[\w-]*:[\w-]+\Z")


def header_probe_entries(source):
    """``{probe: text}``: each entry of the header's ``Probes:`` section that
    starts with a probe name, with its continuation lines."""
    header = source.partition("*/")[0]
    section = header.partition("Probes:")[2].partition("Measure:")[0]
    entries, current = {}, None
    for line in section.splitlines():
        text = line.strip().lstrip("*").strip()
        first = text.split(" ", 1)[0] if text else ""
        if PROBE_NAME.match(first):
            current = first
            entries[current] = text
        elif current is not None and text:
            entries[current] += " " + text
    return entries


SMARTOS_D = [p for p in ALL if p.startswith("smartos/") and p.endswith(".d")]


@pytest.mark.parametrize("relative", SMARTOS_D)
def test_smartos_headers_cite_the_illumos_source_of_every_probe_and_argument(relative):
    source = open(scripts.script_path(relative)).read()
    entries = header_probe_entries(source)
    used = {}
    for probes, predicate, action in d_clauses(source.partition("*/")[2]):
        for probe in probes:
            used.setdefault(probe, set()).update(
                re.findall(r"\bargs\[\d\]|\barg\d\b", (predicate or "") + action))
    assert used, relative
    for probe, args in used.items():
        entry = entries.get(probe)
        assert entry, f"{relative}: the header has no Probes: entry for {probe}"
        # the entry opens with where the probe fires, before any argument
        opening = re.split(r"\bargs?\[?\d\]?\s*:", entry)[0]
        assert re.search(r"\busr/src/\S+\.(c|S|s|h)\b", opening), \
            f"{relative}: {probe}: no usr/src/... source file before its arguments"
        assert re.search(r"\b\w+\(\)", opening), \
            f"{relative}: {probe}: no function() before its arguments"
        for arg in sorted(args):
            assert re.search(re.escape(arg) + r"\s*:", entry), \
                f"{relative}: {probe}: the header does not say what {arg} holds"


def test_d_clause_and_header_parsing():
    src = """/*
 * Probes:
 *   a:b:c:d  usr/src/x.c f(): fires.  args[0]: this
 *            and that.
 *   fbt::g:entry  usr/src/y.S g(): arg1: more
 * Measure: x
 */
a:b:c:d,
fbt::g:entry
/x[args[0]] && y / 2/
{
	x[arg1] = 1;
}
"""
    assert d_clauses(src.partition("*/")[2]) == [
        (["a:b:c:d", "fbt::g:entry"], "x[args[0]] && y / 2", "\n\tx[arg1] = 1;\n")]
    assert header_probe_entries(src) == {
        "a:b:c:d": "a:b:c:d  usr/src/x.c f(): fires.  args[0]: this and that.",
        "fbt::g:entry": "fbt::g:entry  usr/src/y.S g(): arg1: more"}
