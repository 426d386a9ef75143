#!/usr/bin/env python3
"""Config writers for the devstack plugin, runnable outside devstack.

    smartos_config.py ini FILE SECTION KEY VALUE
    smartos_config.py polling FILE SHIPPED_POLLING_YAML INTERVAL [SKIP_SOURCES]
    smartos_config.py pipeline FILE SHIPPED_PIPELINE_YAML FILTER_PROJECT(true|false)

Each is idempotent: running it again gives the same file.

ini: sets one option, keeping the file's other lines and comments (as
devstack's iniset does; a missing section or file is added).

polling / pipeline: merge smartos-telemetry's sources (and sink) from the
shipped file into ceilometer's: ours replace any earlier copy of ours (same
names), ceilometer's own entries are kept, and every source of theirs that
takes all meters ("*") gets our meters as exclusions ("!cpu.runqueue.latency.*"),
so our meters are polled at our interval only and published through our
sink only (ceilometer's gnocchi:// would drop them as "not handled").
SKIP_SOURCES (comma-separated) names shipped polling sources left out: the
SmartOS-only kstat source uses ceilometer's own pollster names (cpu, memory,
network), which on a Linux compute agent would run ceilometer's pollsters a
second time.
"""

import re
import sys

import yaml


def ini_set(path, section, key, value):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    header = re.compile(r"^\s*\[([^\]]+)\]\s*$")
    option = re.compile(rf"^\s*{re.escape(key)}\s*=")
    start = next((i for i, line in enumerate(lines)
                  if (m := header.match(line)) and m.group(1) == section), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", f"{key} = {value}"]
    else:
        end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])),
                   len(lines))
        hit = next((i for i in range(start + 1, end) if option.match(lines[i])), None)
        if hit is None:
            insert = end
            while insert > start + 1 and not lines[insert - 1].strip():
                insert -= 1
            lines.insert(insert, f"{key} = {value}")
        else:
            lines[hit] = f"{key} = {value}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _load(path):
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError:
        return {}


def _exclude_ours(sources, ours, our_patterns):
    for source in sources:
        if source.get("name") in ours:
            continue
        meters = source.get("meters") or []
        if "*" in meters:
            source["meters"] = [m for m in meters if m.lstrip("!") not in our_patterns] + \
                [f"!{p}" for p in our_patterns]


def _write(path, data, what):
    with open(path, "w") as f:
        f.write(f"---\n# {what}; smartos-telemetry's entries merged in by its devstack plugin\n")
        yaml.safe_dump(data, f, default_flow_style=False, sort_keys=False)


def merge_polling(path, shipped, interval, skip=""):
    data, mine = _load(path), _load(shipped)
    skipped = {name for name in skip.split(",") if name}
    ours = [dict(s, interval=int(interval)) for s in mine["sources"]
            if s["name"] not in skipped]
    names = {s["name"] for s in mine["sources"]}
    patterns = [m for s in ours for m in s["meters"]]
    sources = [s for s in data.get("sources", []) if s.get("name") not in names]
    _exclude_ours(sources, names, patterns)
    data["sources"] = sources + ours
    _write(path, data, "ceilometer polling")


def merge_pipeline(path, shipped, filter_project):
    data, mine = _load(path), _load(shipped)
    names = {s["name"] for s in mine["sources"]}
    sink_names = {s["name"] for s in mine["sinks"]}
    patterns = [m for s in mine["sources"] for m in s["meters"]]
    sinks = []
    for sink in mine["sinks"]:
        publishers = []
        for url in sink["publishers"]:
            if filter_project == "true":  # keystone is there: filter Gnocchi's own activity
                url = re.sub(r"[?&]enable_filter_project=false", "", url)
            publishers.append(url)
        sinks.append(dict(sink, publishers=publishers))
    sources = [s for s in data.get("sources", []) if s.get("name") not in names]
    _exclude_ours(sources, names, patterns)
    data["sources"] = sources + mine["sources"]
    data["sinks"] = [s for s in data.get("sinks", []) if s.get("name") not in sink_names] + sinks
    _write(path, data, "ceilometer pipeline")


def main(argv):
    command, args = argv[1], argv[2:]
    {"ini": ini_set, "polling": merge_polling, "pipeline": merge_pipeline}[command](*args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
