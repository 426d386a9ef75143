"""``smartos-telemetry poll``: discovery and every pollster, as ceilometer runs them.

Loads the plugins from the same stevedore namespaces ceilometer-polling
uses, calls discovery, then each pollster's ``get_samples`` with one cache
per cycle, and prints the samples.  Nothing is sent anywhere.
"""

import argparse
import json
import logging
import sys
import time

from smartos_telemetry.cli.main import config_files, seconds
from smartos_telemetry.text_format import display_text, tolerant

HELP = "run discovery and every pollster as ceilometer would, and print the samples"
EPILOG = """\
--json prints one sample per line:
  {"name": "cpu.runqueue.latency.p99", "type": "gauge", "unit": "ns",
   "volume": 3830000.0, "resource_id": "...", "project_id": null,
   "resource_metadata": {...}}
Distributions are per polling interval: the first cycle only sets the
baseline, so --once waits --interval seconds and prints the second cycle.

examples:
  smartos-telemetry poll --once --json
  smartos-telemetry poll --interval 10 --config-file /etc/ceilometer/ceilometer.conf
"""

NAMESPACE = "smartos"


def register(subparsers):
    p = subparsers.add_parser("poll", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--once", action="store_true", help="one interval, then exit")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    p.add_argument("--interval", type=seconds, default=5.0, metavar="SECONDS",
                   help="seconds between cycles (default 5)")
    p.add_argument("--config-file", action="append", default=[], metavar="PATH",
                   help="ceilometer.conf with a [smartos] section (repeatable)")
    p.add_argument("--meter", action="append", default=[], metavar="NAME",
                   help="only these pollsters (entry-point names; default: all)")
    p.set_defaults(func=run)
    return p


def load(conf, wanted):
    from stevedore import extension

    def pollsters():
        mgr = extension.ExtensionManager(f"ceilometer.poll.{NAMESPACE}", invoke_on_load=True,
                                         invoke_args=(conf,))
        return sorted((e for e in mgr if not wanted or e.name in wanted), key=lambda e: e.name)

    discoveries = extension.ExtensionManager(f"ceilometer.discover.{NAMESPACE}",
                                             invoke_on_load=True, invoke_args=(conf,))
    return pollsters(), {e.name: e.obj for e in discoveries}


def cycle(conf, pollsters, discoveries, out, as_json, disabled):
    """One polling cycle; returns the number of samples.  ``disabled``: the
    causes already reported (each is printed once, never with the resources)."""
    from ceilometer.polling import plugin_base

    cache, found, count = {}, {}, 0
    for ext in pollsters:
        pollster = ext.obj
        name = pollster.default_discovery
        if name is None or name not in discoveries:
            continue  # no resources: ceilometer-polling skips it too (kstats off SmartOS)
        if name not in found:
            found[name] = discoveries[name].discover(None)
        try:
            for sample in pollster.get_samples(None, cache, found[name]):
                count += 1
                if out is not None:
                    print_sample(sample, out, as_json)
        except plugin_base.PollsterPermanentError as exc:
            cause = str(exc.__cause__ or "")
            if cause not in disabled:
                disabled.add(cause)
                print(f"poll: {ext.name}: disabled" + (f": {cause}" if cause else ""),
                      file=sys.stderr)
    return count


def print_sample(sample, out, as_json):
    record = {"name": sample.name, "type": sample.type, "unit": sample.unit,
              "volume": sample.volume, "resource_id": sample.resource_id,
              "project_id": sample.project_id, "resource_metadata": sample.resource_metadata}
    if as_json:
        out.write(json.dumps(record, sort_keys=True) + "\n")
    else:  # names come from tenants: escaped, and an ASCII stdout copes (tolerant)
        out.write(f"{sample.name:<40} {sample.volume:>16.6g} {sample.unit:<8} "
                  f"{display_text(sample.resource_id)}\n")
    out.flush()


def run(args):
    from ceilometer import service

    from smartos_telemetry.polling import opts

    argv = ["smartos-telemetry"] + [a for path in config_files(args.config_file)
                                   for a in ("--config-file", path)]
    conf = service.prepare_service(argv, [])
    opts.validate(conf)  # a bad [smartos] value: one line, before any pollster runs
    # ceilometer logs to stdout when it has no log file; stdout is for samples
    for handler in logging.getLogger().handlers:
        if getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
    pollsters, discoveries = load(conf, set(args.meter))
    if not pollsters:
        print("poll: no pollsters found in ceilometer.poll.smartos; is smartos-telemetry "
              "installed in this Python?", file=sys.stderr)
        return 1
    from smartos_telemetry.polling import telemetry_service

    disabled = set()
    cycle(conf, pollsters, discoveries, None, False, disabled)  # the baseline
    service = telemetry_service.get_service(conf)
    while True:
        time.sleep(args.interval)
        count = cycle(conf, pollsters, discoveries, tolerant(sys.stdout), args.json, disabled)
        if not count and service.ensure_failed():
            return 1  # nothing can be measured; the service logged why, and the fix
        if args.once:
            if not count:
                print("poll: no samples (no zones here? `smartos-telemetry zones` lists "
                      "them; --meter names only existing pollsters)", file=sys.stderr)
            return 0 if count else 1
