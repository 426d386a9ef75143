"""``smartos-telemetry zones``: the tenants (zones) this host has."""

import json
import sys

from smartos_telemetry.text_format import display_text, tolerant
from smartos_telemetry.zones.linux_cgroups import KINDS, CgroupZones, ZoneConfig

HELP = "list the zones (tenant cgroups) this host has"
EPILOG = """\
Each zone: its id (the cgroup-v2 id probes key by), name, kind, instance
UUID where known, and cgroup path under the unified hierarchy.  Text shows
names in full with control characters escaped (\\x1b); --json gives them
exactly (a byte that is not UTF-8 as \\xHH, reversibly).

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
    out = tolerant(sys.stdout)
    rows = [(z.id, z.kind, display_text(z.name), display_text(z.instance_uuid) or "-",
             display_text(z.path)) for z in zones]
    # a name is never cut (two would look alike); a very long one pushes its row
    width = max([24] + [len(name) for _, _, name, _, _ in rows if len(name) <= 48])
    out.write(f"{'ID':>8}  {'KIND':10}  {'NAME':{width}}  {'INSTANCE UUID':36}  PATH\n")
    for zone_id, kind, name, uuid, path in rows:
        out.write(f"{zone_id:>8}  {kind:10}  {name:{width}}  {uuid:36}  {path}\n")
    return 0
