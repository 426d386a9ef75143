"""The shipped D and bpftrace scripts: where they live and their contracts.

Every script opens with a comment that names its probes, units, keys and
caveats, and declares its aggregation contract::

    Contract:
      @runq_ns[cgroup_id] = llquantize(ns, 10, 3, 9, 100)
      @retransmits[zoneid] = count()

A bpftrace script that computes a log-linear bucket index in the kernel
declares ``@name[cgroup_id, bucket] = count()`` and marks the map with a
``// loglinear: @name`` line; the engine reports such a map as an
``llquantize`` histogram keyed by every key but the bucket, and
:func:`contract` describes it the same way, as the engine delivers it.
"""

import dataclasses
import os
import re

from smartos_telemetry.errors import ConfigError

#: d_scripts/ beside the package in a checkout; share/smartos-telemetry/d_scripts
#: when installed from a wheel
_CANDIDATES = (
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "d_scripts"),
    os.path.join(os.sys.prefix, "share", "smartos-telemetry", "d_scripts"),
)

_CONTRACT_LINE = re.compile(
    r"^\s*\*?\s*@(?P<name>[A-Za-z_]\w*)\[(?P<keys>[^\]]*)\]\s*=\s*(?P<action>[a-z]+)\(")
#: ``// loglinear: @a @b`` on a line of its own (names apart by spaces or commas)
_LOGLINEAR = re.compile(r"^[ \t]*//[ \t]*loglinear:[ \t]*(?P<maps>@\w+(?:[ \t,]+@\w+)*)[ \t,]*$",
                        re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class AggContract:
    """One aggregation a script promises: its key names and its action."""

    name: str
    keys: tuple
    action: str


def scripts_dir():
    """The directory holding linux/ and smartos/ scripts."""
    for path in _CANDIDATES:
        if os.path.isdir(path):
            return path
    raise ConfigError("cannot find the d_scripts directory (looked in "
                      + ", ".join(_CANDIDATES) + "); reinstall smartos-telemetry")


def script_path(relative):
    """Absolute path of a shipped script, e.g. ``linux/runqueue.bt``."""
    path = os.path.join(scripts_dir(), relative)
    if not os.path.isfile(path):
        raise ConfigError(f"no shipped script {relative!r} in {scripts_dir()}")
    return path


def shipped_scripts():
    """Relative paths of every shipped script, sorted."""
    base = scripts_dir()
    found = []
    for platform in sorted(os.listdir(base)):
        folder = os.path.join(base, platform)
        if os.path.isdir(folder):
            found.extend(f"{platform}/{name}" for name in sorted(os.listdir(folder))
                         if name.endswith((".d", ".bt")))
    return found


def loglinear_maps(source):
    """The maps (names without ``@``) a script marks ``// loglinear: @a @b``:
    their keys end in a log-linear bucket index, counted (see
    ``engines/bpftrace/loglinear.py``); the one reading of the marker."""
    return frozenset(name for match in _LOGLINEAR.finditer(source)
                     for name in re.findall(r"@(\w+)", match.group("maps")))


def shipped_with_suffix(suffix):
    """Relative paths of every shipped script whose name ends in ``suffix``
    (e.g. ``.bpf.c``: what the libbpf engine can run), sorted."""
    base = scripts_dir()
    return sorted(f"{platform}/{name}" for platform in os.listdir(base)
                  if os.path.isdir(os.path.join(base, platform))
                  for name in os.listdir(os.path.join(base, platform)) if name.endswith(suffix))


def contract(source):
    """``{name: AggContract}`` declared by a script's header comment."""
    header, _, _ = source.partition("*/")
    _, marker, block = header.partition("Contract:")
    if not marker:
        raise ConfigError("script declares no 'Contract:' in its header comment")
    loglinear = loglinear_maps(source)
    found = {}
    for line in block.splitlines():
        m = _CONTRACT_LINE.match(line)
        if not m:
            continue
        keys = tuple(k.strip() for k in m.group("keys").split(",") if k.strip())
        action = m.group("action")
        if m.group("name") in loglinear:
            if keys[-1:] != ("bucket",) or action != "count":
                raise ConfigError(f"@{m.group('name')} is marked loglinear but is not "
                                  "declared as @name[..., bucket] = count()")
            keys, action = keys[:-1], "llquantize"
        found[m.group("name")] = AggContract(m.group("name"), keys, action)
    if not found:
        raise ConfigError("the script's Contract: block names no aggregation")
    return found
