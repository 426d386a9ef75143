"""``smartos-telemetry check``: preflight -- what engine runs here, and what is missing."""

import glob
import json
import os
import re
import subprocess
import sys

from smartos_telemetry.engines.bpftrace import process
from smartos_telemetry.engines.select import ENGINE_CLASSES, choose_engine, engine_class
from smartos_telemetry.errors import ConfigError, TelemetryError
from smartos_telemetry.scripts import scripts_dir as shipped_scripts_dir

HELP = "report the engine, its version, privileges and the probes shipped scripts miss"

#: probe specs that name one kernel tracepoint: tracepoint:CAT:NAME (bpftrace),
#: rawtp:CAT::NAME (D)
_TRACEPOINT = re.compile(r"\b(?:tracepoint:(\w+):(\w+)|rawtp:(\w+)::(\w+))")
_OTHER_PROBE = re.compile(r"^\s*((?:kprobe|kretprobe|kfunc|kretfunc|fbt):[\w:.*]+)", re.M)
KNOWN_BUGS_BEFORE_0_20 = (
    "hist() lumps values >= 2^31 into one bucket (decoded as an overflow bucket)",
    "cgroup_path() prints invalid JSON (shipped scripts key by the numeric cgroup id)",
)


def register(subparsers):
    p = subparsers.add_parser("check", help=HELP, description=HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--scripts", metavar="DIR", help="scripts to check (default: shipped)")
    p.add_argument("--config-file", action="append", default=None, metavar="PATH",
                   help="ceilometer.conf whose [smartos] owners_file to check (repeatable; "
                        "default: ceilometer's own search)")
    p.set_defaults(func=run)
    return p


def available_tracepoints():
    """``{"cat:name"}`` of this kernel's tracepoints, or None if they cannot be listed."""
    events = os.path.join(process.TRACEFS, "events")
    if process.tracefs_mounted():
        return {f"{c}:{n}" for c in os.listdir(events)
                if os.path.isdir(os.path.join(events, c))
                for n in os.listdir(os.path.join(events, c))}
    binary = process.find_bpftrace()
    if not binary or os.geteuid() != 0:
        return None
    try:  # tracefs is mounted in a private namespace only
        out = subprocess.run(process.command(binary, ["-l", "tracepoint:*"]),
                             capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired, TelemetryError):
        return None
    return {line.strip().split(":", 1)[1] for line in out.splitlines()
            if line.startswith("tracepoint:")}


def missing_probes(paths, tracepoints):
    """``{script: [probe, ...]}`` of probes the scripts need and this host lacks."""
    missing = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = re.sub(r"/\*.*?\*/|//[^\n]*", "", f.read(), flags=re.S)
        lacks = []
        for m in _TRACEPOINT.finditer(text):
            cat, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            if tracepoints is not None and f"{cat}:{name}" not in tracepoints:
                lacks.append(m.group(0))
        lacks += [p for p in _OTHER_PROBE.findall(text)
                  if p.startswith(("kprobe", "kretprobe", "fbt")) and not _kprobes()]
        if lacks:
            missing[os.path.basename(path)] = sorted(set(lacks))
    return missing


def _kprobes():
    return os.path.exists(os.path.join(process.TRACEFS, "kprobe_events")) or \
        os.path.exists("/sys/kernel/debug/tracing/kprobe_events")


def gather(scripts=None):
    if scripts is not None and not os.path.isdir(scripts):
        raise ConfigError(f"--scripts {scripts}: no such directory (fix: give the directory "
                          f"holding the .d and .bt scripts, or leave --scripts out for the "
                          f"shipped ones)")
    report = {"euid": os.geteuid(), "root": os.geteuid() == 0, "engines": {}}
    try:
        report["engine"], report["engine_reason"] = choose_engine("auto")
    except TelemetryError as exc:
        report["engine"], report["engine_reason"] = None, str(exc)
    for name in ENGINE_CLASSES:
        entry = {}
        try:
            cls = engine_class(name)
            entry["unavailable"] = cls.available()
            entry["version"] = cls.version()
        except (TelemetryError, ImportError, OSError) as exc:
            entry.setdefault("unavailable", str(exc))
            entry["version"] = None
        report["engines"][name] = entry
    version = process.parse_version(report["engines"]["bpftrace"].get("version"))
    report["bpftrace_known_bugs"] = list(KNOWN_BUGS_BEFORE_0_20) if version and \
        version < (0, 20) else []
    report["tracefs"] = "mounted" if process.tracefs_mounted() else \
        "not mounted (bpftrace runs in a private mount namespace that mounts it)"
    report["btf"] = os.path.exists("/sys/kernel/btf/vmlinux")
    from smartos_telemetry.engines.libbpf.engine import LibbpfEngine
    report["libbpf"] = LibbpfEngine.describe()
    try:
        from smartos_telemetry.zones.linux_cgroups import unified_root
        report["cgroup2_root"] = unified_root()
    except TelemetryError as exc:
        report["cgroup2_root"] = None
        report["cgroup2_error"] = str(exc)
    if report["cgroup2_root"]:
        from smartos_telemetry.meters import cgroup_counters
        root = report["cgroup2_root"]
        report["cgroup_controllers"] = list(cgroup_counters.controllers(root))
        report["pressure"] = cgroup_counters.psi_state(root)
    directory = scripts or os.path.join(shipped_scripts_dir(), "linux")
    paths = sorted(glob.glob(os.path.join(directory, "*.bt")) +
                   glob.glob(os.path.join(directory, "*.d")))
    if not paths:
        raise ConfigError(f"{directory}: no .d or .bt scripts in it (fix: give --scripts "
                          f"the directory that holds them)")
    tracepoints = available_tracepoints()
    report["scripts_dir"] = directory
    report["tracepoints_listed"] = tracepoints is not None
    report["missing_probes"] = missing_probes(paths, tracepoints)
    return report


def owners_report(config_files):
    """``(summary, error)`` of the owner rules ``[smartos] owners_file`` names."""
    from oslo_config import cfg

    from smartos_telemetry.polling import opts
    from smartos_telemetry.zones import owners

    conf = cfg.ConfigOpts()
    group = opts.register(conf)
    try:
        conf([], project="ceilometer", default_config_files=config_files)
        return owners.load(group.owners_file).summary(), None
    except (ConfigError, cfg.Error) as exc:
        return None, str(exc)


def format_text(r):
    lines = [f"engine:       {r['engine'] or 'NONE'} ({r['engine_reason']})"]
    for name, e in r["engines"].items():
        state = "available" if not e.get("unavailable") else f"unavailable: {e['unavailable']}"
        lines.append(f"  {name:10s}  {e.get('version') or '-'}; {state}")
    for bug in r["bpftrace_known_bugs"]:
        lines.append(f"  bpftrace known bug, designed around: {bug}")
    lines.append(f"privileges:   euid {r['euid']}" + ("" if r["root"] else " (NOT root)"))
    lines.append(f"tracefs:      {r['tracefs']}")
    lines.append(f"kernel BTF:   {'yes' if r['btf'] else 'no (BTF casts in tcp.bt fail)'}")
    lib = r["libbpf"]
    lines.append(f"libbpf:       {lib['version'] or '-'}; "
                 + ("programs load" if not lib["unavailable"] else lib["unavailable"]))
    for script, programs in sorted(lib.get("programs", {}).items()):
        lines.append(f"  {script}: {', '.join(programs)}")
    lines.append(f"cgroup2 root: {r['cgroup2_root'] or r.get('cgroup2_error')}")
    if r["cgroup2_root"]:
        have = set(r["cgroup_controllers"])
        lacking = [c for c in ("cpu", "memory", "io", "pids") if c not in have]
        lines.append("  cgroup counters: cpu time" + (
            "; no " + ", ".join(lacking) + " controller in v2 (their counters are not "
            "emitted; on a hybrid host they may be bound to v1)" if lacking else
            ", cpu caps, memory, io, pids"))
        lines.append(f"pressure:     {r['pressure']}")
    lines.append(f"owners:       {r['owners'] or 'ERROR ' + r['owners_error']}")
    lines.append(f"scripts:      {r['scripts_dir']}")
    if not r["tracepoints_listed"]:
        lines.append("  tracepoints could not be listed (need root and bpftrace or tracefs)")
    if r["missing_probes"]:
        for script, probes in sorted(r["missing_probes"].items()):
            lines.append(f"  {script}: missing {', '.join(probes)}")
    elif r["tracepoints_listed"]:
        lines.append("  every probe the shipped scripts need is present")
    return "\n".join(lines) + "\n"


def run(args):
    from smartos_telemetry.cli.main import config_files

    report = gather(args.scripts)
    report["owners"], report["owners_error"] = owners_report(config_files(args.config_file))
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(report))
    return 0 if report["engine"] and not report["owners_error"] else 1
