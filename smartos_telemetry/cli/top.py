"""``smartos-dtrace-top`` (also ``smartos-telemetry top``): a live per-zone view.

Like ``prstat -Z`` or ``htop``, with latency distributions measured in the
kernel: one row per zone, refreshed every interval, on either engine.  ``-b``
prints a table or JSON lines instead, for scripts and logs.

Start-up says what it does (engine, compiling and attaching each program,
how long it took) on stderr.  Missing privileges or engine: one line with
the fix, exit status 1.  Ctrl-C, SIGTERM or SIGHUP stop the engines -- no
probe stays attached, no bpftrace child stays behind -- and leave the
terminal as it was.
"""

import argparse
import logging
import os
import signal
import sys

from smartos_telemetry import platform as platforms
from smartos_telemetry.engines.engine_set import EngineSet
from smartos_telemetry.engines.select import ENGINE_CHOICES
from smartos_telemetry.errors import ConfigError, EngineUnavailable, TelemetryError
from smartos_telemetry.top import heatmap, model

PROG = "smartos-dtrace-top"
HELP = "live per-zone view: CPU, run-queue, disk I/O and TCP latencies (like prstat -Z)"
EPILOG = """\
columns (sort keys in brackets; a column shows only where its meter has a source):
""" + "\n".join(f"  [{c.key}] {c.title:8} {c.help}" for c in model.COLUMNS) + """

keys: the sort keys above (again: reverse), Up/Down select, Enter drill into
the zone (its histograms), h the zone's latency heatmap (Tab or 1-4: meter),
/ filter, Esc clear filter, ? help, q quit

examples:
  smartos-dtrace-top                               live view
  smartos-dtrace-top -b -n 3 -i 5                  three 5-second tables
  smartos-dtrace-top -b -o json -z web01           JSON lines for one zone
  smartos-dtrace-top -b -n 60 -o heatmap > hm.svg  a minute of heatmaps, as SVG
  smartos-dtrace-top --plain-parent /tenants       cgroups below /tenants are zones
"""


def whole(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a whole number more than 0")
    return value


def positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def add_arguments(p):
    p.add_argument("-b", "--batch", action="store_true",
                   help="batch mode: print every interval (no screen), like top -b")
    p.add_argument("-o", "--output", choices=("table", "json", "heatmap"), default="table",
                   help="batch output: a table or one JSON object per interval, or at the "
                        "end an SVG of every zone's latency heatmaps")
    p.add_argument("--heatmap", metavar="FILE.svg",
                   help="at the end (count reached, q, Ctrl-C), write every zone's latency "
                        "heatmaps over the run to FILE.svg")
    p.add_argument("--buckets", action="store_true",
                   help="-o json: each distribution also with its interval histogram "
                        "(buckets as [low, high, count], ns)")
    p.add_argument("--history", type=whole, default=heatmap.DEFAULT_LENGTH, metavar="INTERVALS",
                   help="intervals the heatmaps keep (default %(default)s)")
    p.add_argument("-i", "--interval", type=positive, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes (default 2)")
    p.add_argument("-n", "--count", type=int, default=0, metavar="COUNT",
                   help="stop after COUNT intervals (default: until interrupted)")
    p.add_argument("-z", "--zone", action="append", default=[], metavar="ZONE",
                   help="only this zone (name, instance UUID or id); repeatable")
    p.add_argument("-e", "--engine", choices=ENGINE_CHOICES, default="auto",
                   help="tracing engine (default: auto -- on Linux libbpf where the "
                        "kernel has BTF and its programs load, else libdtrace, else "
                        "bpftrace; libdtrace on SmartOS)")
    p.add_argument("-s", "--sort", default=None, metavar="COLUMN",
                   choices=[c.id for c in model.COLUMNS],
                   help="sort by COLUMN: " + ", ".join(c.id for c in model.COLUMNS)
                   + " (default: cpu, where there is a CPU column, else runq_p99)")
    p.add_argument("-r", "--reverse", action="store_true", help="reverse the sort order")
    p.add_argument("--plain-parent", action="append", default=[], metavar="PATH",
                   help="Linux: every cgroup directly below PATH (under the cgroup-v2 "
                        "root) is a zone; repeatable")


def register(subparsers):
    p = subparsers.add_parser("top", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def say(text, end="\n"):
    sys.stderr.write(f"{PROG}: {text}{end}")
    sys.stderr.flush()


class HeldLog(logging.Handler):
    """Warnings from the engines: to stderr, or kept while the screen is up."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.held = None  # a list while holding
        self.last = None

    def emit(self, record):
        text = " ".join(self.format(record).split())
        self.last = text
        if self.held is not None:
            self.held.append(text)
        else:
            say(text)

    def hold(self):
        self.held = []

    def release(self):
        held, self.held = self.held or [], None
        for text in held:
            say(text)


def setup_logging():
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = HeldLog()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return handler


#: the fix for an engine that cannot run here, where the engine names none
FIXES = {
    "dtrace": "use -e bpftrace, or install libdtrace with its <dtrace.h> (SmartOS, illumos, "
              "Oracle DTrace 2.x on Linux) and reinstall smartos-telemetry",
    "bpftrace": "apt-get install bpftrace",
    "auto": "apt-get install bpftrace",
}


def writable(path):
    """Fail now, not at the end of a run, where ``path`` cannot be written."""
    where = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(where) or not os.access(where, os.W_OK):
        raise ConfigError(f"--heatmap {path}: cannot write a file there (fix: name a file "
                          f"in a directory that exists and is writable)")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _progress(engine, seconds):
    if seconds is None:
        say(f"compiling and attaching {engine.script_name} ...", end="")
        return
    info = getattr(engine, "program_info", None)
    probes = f", {info.dpi_matches} probes" if info is not None else ""
    sys.stderr.write(f" {seconds:.2f} s{probes}\n")
    sys.stderr.flush()


def run(args):
    """Run the view (or batch); the exit status."""
    log = setup_logging()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    if args.output == "heatmap" and not args.batch:
        say("error: -o heatmap is batch output (fix: add -b, or use --heatmap FILE.svg "
            "with the live view)")
        return 2
    if not args.batch and not (sys.stdin.isatty() and sys.stdout.isatty()):
        say("error: the live view needs a terminal (fix: run it in one, or use -b for "
            "batch output)")
        return 2
    engines = None
    try:
        if args.heatmap is not None:
            writable(args.heatmap)
        if os.geteuid() != 0:
            raise EngineUnavailable("tracing", "needs root (DTrace and bpftrace attach "
                                    "kernel probes)", fix=f"run it as root: sudo {PROG}")
        here = platforms.detect()
        layer = here.zone_layer(plain_parents=args.plain_parent)
        name, why = here.choose_engine(args.engine)
        say(f"{name} engine on {here.name} ({why})")
        engines = EngineSet(name, here.scripts(name), label=f"{here.name} meters")
        engines.start(progress=_progress)
        top = model.TopModel(engines, layer, zone_filter=args.zone,
                             cpu=here.cpu_reader(layer), history=args.history,
                             platform=here)
        columns = {c.id: c for c in top.columns()}
        sort = args.sort or ("cpu" if "cpu" in columns else "runq_p99")
        if sort not in columns:
            raise ConfigError(f"no {sort} column here: its meter has no source on "
                              f"{here.name}/{name}; choose one of {', '.join(columns)}")
        zones = len(layer.zones())
        if zones == 0 and not args.zone:
            say("no zones on this host yet (libvirt, docker, containerd, podman, crio "
                "cgroups, systemd services and scopes); shown: the host. --plain-parent "
                "PATH makes every cgroup below PATH a zone")
        top.sample()  # the baseline: the first interval starts now
        say(f"tracing: {len(engines.engines)} program(s) attached in {engines.started_in:.2f} s; "
            f"{zones} zone(s); first interval in {args.interval:g} s")
        if args.batch:
            from smartos_telemetry.top import batch
            return batch.run(top, args.interval, args.count, args.output, sys.stdout,
                             columns[sort], args.reverse, heatmap=args.heatmap,
                             buckets=args.buckets)
        from smartos_telemetry.top import screen
        log.hold()
        try:
            return screen.run(top, args.interval, columns[sort], args.reverse, log,
                              count=args.count)
        finally:
            log.release()
            if args.heatmap is not None:
                from smartos_telemetry.top import batch
                batch.write_file(args.heatmap, batch.svg(top))
                say(f"heatmaps written to {args.heatmap}")
    except TelemetryError as exc:
        message = " ".join(str(exc).split())
        if isinstance(exc, EngineUnavailable):
            if not exc.fix and exc.engine in FIXES:
                message += f" (fix: {FIXES[exc.engine]})"
            message += "; `smartos-telemetry check` says what this host lacks"
        say(f"error: {message}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 0 if not args.batch else 130
    finally:
        if engines is not None:
            engines.stop()
            if engines.started_in is not None:
                say("stopped: probes detached")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=HELP, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # piped into head: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the exit flush is quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
