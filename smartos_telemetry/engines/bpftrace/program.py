"""What the engine reads from, and adds to, a bpftrace script before running it.

Read:

* which function fills each map (``@n[k] = count()`` ...): bpftrace's JSON
  does not say, and only maps filled by an aggregating function are reported;
* which maps hold log-linear bucket indexes (``// loglinear: @runq_ns``,
  see :mod:`.loglinear`);
* whether the script calls ``exit()`` (then a child that exits 0 has ended
  the script, and is not restarted).

Changed (line numbers are kept, so bpftrace's line:column still point into
the operator's file):

* ``avg(`` becomes ``stats(``: bpftrace prints avg() as a truncated mean;
  stats() gives count and total, decoded to the same Average.  Columns after
  it on that line move by two;
* a **sentinel** map, named to sort after every map of the script, is set in
  ``BEGIN``.  bpftrace prints maps in name order (SIGUSR1 and exit), so its
  line ends a print round;
* ``BEGIN`` prints a **ready marker**: BEGIN runs once every probe is
  attached (``attached_probes`` comes before attaching, which can still
  fail).

The sentinel and the marker go into the script's own ``BEGIN {`` when it has
one (bpftrace allows only one), else into a BEGIN appended at the end.
Nothing from outside the script is ever interpolated into it.
"""

import dataclasses
import re

from smartos_telemetry.scripts import loglinear_maps

READY_MARKER = "smartos-telemetry:ready"

_AGG = re.compile(
    r"@(\w*)\s*(?:\[[^\]]*\])?\s*=\s*(count|sum|min|max|avg|stats|hist|lhist)\s*\(")
_MAP_NAME = re.compile(r"@(\w*)")
_AVG = re.compile(r"\bavg\s*\(")
_BEGIN = re.compile(r"(?m)^[ \t]*BEGIN\s*\{")
_EXIT = re.compile(r"\bexit\s*\(")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Program:
    text: str           # what bpftrace runs
    functions: dict     # map name (no @) -> bpftrace function
    loglinear: frozenset
    sentinel: str       # map name (no @)
    calls_exit: bool = False   # the script may end itself (exit())
    maps: frozenset = frozenset()  # every map name the script uses (no @)


def prepare(source):
    """The Program that runs ``source`` with a sentinel and a ready marker."""
    text = _AVG.sub("stats(", source)
    functions = {name: "stats" if fn == "avg" else fn for name, fn in _AGG.findall(text)}
    loglinear = loglinear_maps(source)
    longest = max((len(n) for n in _MAP_NAME.findall(source)), default=0)
    sentinel = "z" * max(longest + 1, 8)
    inject = f' @{sentinel} = count(); printf("{READY_MARKER}\\n"); '
    begin = _BEGIN.search(text)
    if begin:
        text = text[:begin.end()] + inject + text[begin.end():]
    else:
        text = text.rstrip("\n") + "\nBEGIN {" + inject + "}\n"
    code = _COMMENT.sub(" ", source)
    return Program(text, functions, loglinear, sentinel, bool(_EXIT.search(code)),
                   frozenset(_MAP_NAME.findall(source)))
