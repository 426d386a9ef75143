"""``smartos-telemetry``: one entry point, one module per subcommand.

Each subcommand module offers ``register(subparsers)``, which adds its
parser and sets ``func`` to the function that runs it.  The function returns
the process exit status.
"""

import argparse
import importlib
import math
import os
import sys

from oslo_config import cfg
from oslo_log import log as logging

from smartos_telemetry.errors import ConfigError, TelemetryError

LOG = logging.getLogger(__name__)

SUBCOMMANDS = (
    "smartos_telemetry.cli.check",
    "smartos_telemetry.cli.zones",
    "smartos_telemetry.cli.run_script",
    "smartos_telemetry.cli.poll",
    "smartos_telemetry.cli.upgrade",
    "smartos_telemetry.cli.top",
)

DESCRIPTION = """\
Per-zone telemetry from DTrace (SmartOS, illumos, Linux with Oracle DTrace)
or bpftrace (any Linux).  Run as root: tracing needs it.

examples:
  smartos-telemetry check                    what runs here, and what is missing
  smartos-telemetry run-script x.d --json    compile, run 5 s, print aggregations
  smartos-telemetry zones                    the tenants (zones) this host has
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="smartos-telemetry",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def setup_logging(debug=False):
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    conf([], project="smartos-telemetry", default_config_files=[],
         default_config_dirs=[])
    conf.set_override("debug", debug)
    conf.set_override("use_stderr", True)
    logging.setup(conf, "smartos-telemetry")


def seconds(text):
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds, "
                                         f"e.g. 10")
    return value


def config_files(paths):
    """``--config-file`` paths, each checked to be a readable file (oslo.config
    would raise ConfigFilesNotFoundError with a traceback)."""
    for path in paths or ():
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ConfigError(f"--config-file {path}: no such readable file (fix: give the "
                              f"path of your ceilometer.conf)")
    return paths


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.debug)
    try:
        return args.func(args)
    except TelemetryError as exc:
        print(f"smartos-telemetry {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except cfg.Error as exc:  # oslo.config: a file that does not parse, a bad value
        print(f"smartos-telemetry {args.command}: error: configuration: "
              f"{str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the exit flush is quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
