"""``smartos-telemetry run-script``: compile and run one script, print its aggregations."""

import json
import os
import sys
import time

from smartos_telemetry.cli.main import seconds
from smartos_telemetry.engines.select import (
    ENGINE_CHOICES,
    SUFFIX_ENGINE,
    choose_engine,
    engine_class,
)
from smartos_telemetry.errors import ConfigError
from smartos_telemetry.text_format import snapshot_text

HELP = "compile and run a D or bpftrace script, then print its aggregations"
EPILOG = """\
The engine follows the file's suffix (.d: dtrace, .bt: bpftrace) unless
--engine says otherwise.  --json prints one object per aggregation:
  {"name": "runq_ns", "action": "quantize",
   "rows": [{"keys": [63], "value": [{"low": 8, "high": 15, "count": 3}]}]}
Scalar values are exact integers; avg/stddev are objects with their parts.

examples:
  smartos-telemetry run-script d_scripts/linux/runqueue.d --duration 10
  smartos-telemetry run-script d_scripts/linux/runqueue.bt --json
  smartos-telemetry run-script x.d -x aggsize=16m -x strsize=128
"""


def register(subparsers):
    import argparse

    p = subparsers.add_parser("run-script", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="the script (.d or .bt)")
    p.add_argument("--engine", choices=ENGINE_CHOICES,
                   help="engine to run it on (default: from the file suffix)")
    p.add_argument("--duration", type=seconds, default=5.0, metavar="SECONDS",
                   help="how long to trace before printing (default 5; a D script "
                        "that calls exit() ends sooner)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("-x", dest="options", action="append", default=[], metavar="NAME=VALUE",
                   help="engine option, e.g. -x aggsize=16m (dtrace) ; repeatable")
    p.set_defaults(func=run)
    return p


def parse_options(pairs):
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"-x {pair!r}: expected NAME=VALUE, e.g. -x aggsize=16m")
        options[name] = value
    return options


def run(args):
    try:
        with open(args.file, encoding="utf-8") as f:
            source = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read script {args.file}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{args.file} is not a script (not UTF-8 text; fix: give a D "
                          f"(.d) or bpftrace (.bt) source file)") from None
    if args.duration <= 0:
        raise ConfigError("--duration must be a positive number of seconds")
    requested = args.engine or SUFFIX_ENGINE.get(os.path.splitext(args.file)[1], "auto")
    name, why = choose_engine(requested)
    engine = engine_class(name)(source, script_name=args.file,
                                options=parse_options(args.options))
    print(f"run-script: compiling and attaching {args.file} on {name} ({why}) ...",
          file=sys.stderr)
    t0 = time.monotonic()
    with engine:
        print(f"run-script: tracing after {time.monotonic() - t0:.2f} s; "
              f"collecting for {args.duration:g} s", file=sys.stderr)
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline and engine.is_alive():
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        snap = engine.snapshot()
        if not args.json:
            sys.stdout.write("".join(engine.output()))
        # print before the engine is torn down: nothing read is lost even if
        # tearing down fails
        if args.json:
            json.dump(snap.as_json(), sys.stdout)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(snapshot_text(snap))
        sys.stdout.flush()
        health = snap.health
        if health.total_drops or health.total_errors:
            print(f"run-script: drops {health.drops}, errors {health.errors}", file=sys.stderr)
    return 0
