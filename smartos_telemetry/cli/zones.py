"""``smartos-telemetry zones``: the tenants (zones) this host has."""

import json
import sys

from smartos_telemetry.zones.linux_cgroups import KINDS, CgroupZones, ZoneConfig

HELP = "list the zones (tenant cgroups) this host has"
EPILOG = """\
Each zone: its id (the cgroup-v2 id probes key by), name, kind, instance
UUID where known, and cgroup path under the unified hierarchy.

examples:
  smartos-telemetry zones
  smartos-telemetry zones --json --plain-parent /tenants
  smartos-telemetry zones --kind libvirt --kind docker
"""


def register(subparsers):
    import argparse

    p = subparsers.add_parser("zones", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--kind", action="append", choices=sorted(KINDS),
                   help="kinds that count as zones (default: all); repeatable")
    p.add_argument("--parent", action="append", metavar="GLOB",
                   help="only recognise zones under parents matching GLOB; repeatable")
    p.add_argument("--plain-parent", action="append", default=[], metavar="PATH",
                   help="every cgroup directly below PATH is a zone; repeatable")
    p.set_defaults(func=run)
    return p


def run(args):
    config = ZoneConfig(kinds=frozenset(args.kind or KINDS),
                        parents=tuple(args.parent) if args.parent else None,
                        plain_parents=tuple(args.plain_parent))
    zones = CgroupZones(config).zones()
    if args.json:
        json.dump([z.as_dict() for z in zones], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{'ID':>8}  {'KIND':10}  {'NAME':24}  {'INSTANCE UUID':36}  PATH")
    for z in zones:
        print(f"{z.id:>8}  {z.kind:10}  {z.name[:24]:24}  {z.instance_uuid or '-':36}  {z.path}")
    return 0
