"""``smartos-telemetry upgrade``: archive policies and resource types in Gnocchi."""

import argparse

from smartos_telemetry.cli.main import config_files
from smartos_telemetry.errors import ConfigError

HELP = "create smartos-telemetry's Gnocchi archive policies and resource types (idempotent)"
EPILOG = """\
Uses ceilometer's Gnocchi client and auth: [gnocchi] auth_section (default
[service_credentials]) of the ceilometer.conf given, as the gnocchi://
publisher does.  Runs what ceilometer-upgrade does for Gnocchi first (the
instance and host types our meters use), then creates our archive policies
and the smartos_zone type.  Safe to run again.

On an existing deployment: a policy of ours with other timespans or back
window is updated in place (its metrics follow); one whose aggregation
methods or granularities differ is reported and left (Gnocchi cannot change
those); metrics still on a policy an earlier release shipped (superseded)
are counted; --migrate-superseded moves them, measures and all.

examples:
  smartos-telemetry upgrade --config-file /etc/ceilometer/ceilometer.conf
  smartos-telemetry upgrade --config-file ceilometer.conf --retry 30
  smartos-telemetry upgrade --config-file ceilometer.conf --migrate-superseded
"""


def register(subparsers):
    p = subparsers.add_parser("upgrade", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", action="append", default=None, metavar="PATH",
                   help="ceilometer.conf (repeatable; default: ceilometer's own search)")
    p.add_argument("--definitions", metavar="PATH",
                   help="resource definitions (default: the shipped gnocchi/resources.yaml)")
    p.add_argument("--migrate-superseded", action="store_true",
                   help="move the metrics still on an archive policy an earlier release "
                        "shipped to the policy that replaces it, with their measures")
    p.add_argument("--retry", type=int, default=0, metavar="N",
                   help="retry N times, 2 s apart, while Gnocchi cannot be reached")
    p.set_defaults(func=run)
    return p


def run(args):
    from smartos_telemetry.gnocchi import upgrade as gnocchi_upgrade

    if args.retry < 0:
        raise ConfigError(f"--retry {args.retry}: give 0 or more retries")
    conf = gnocchi_upgrade.load_conf(config_files(args.config_file))
    definitions = gnocchi_upgrade.load_definitions(args.definitions)
    for line in gnocchi_upgrade.upgrade_with_retry(conf, args.retry, definitions=definitions,
                                                   migrate_superseded=args.migrate_superseded):
        print(line)
    return 0
