"""Gnocchi set-up for smartos-telemetry's meters: archive policies and
resource types, idempotent, with ceilometer's own auth.

What it does, in order (each step a no-op when already done):

1. ceilometer's ``gnocchi_client.upgrade_resource_types`` -- what
   ``ceilometer-upgrade`` does: ceilometer's types, among them ``instance``
   and ``host``, which our definitions use;
2. the archive policies of ``resources.yaml`` (created if missing;
   an existing one is left as it is -- changing a policy that metrics use is
   the operator's call -- and reported when it differs);
3. our resource types (``smartos_zone``), created if missing; attributes
   this release adds are added to an existing type.

The client is ceilometer's ``gnocchi_client.get_gnocchiclient(conf)``: the
same ``[gnocchi] auth_section`` (default ``[service_credentials]``),
endpoint lookup and auth plugin (keystone, ``gnocchi-basic``, ...) as the
publisher.
"""

import os
import time

import yaml
from oslo_config import cfg

DEFINITIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "resources.yaml")


def load_definitions(path=None):
    with open(path or DEFINITIONS, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_conf(config_files=None):
    """ceilometer's options (with keystoneauth's) read from ``config_files``.

    As ``ceilometer.service.prepare_service`` builds them, without its logging
    set-up; ``None`` reads ceilometer's default files (/etc/ceilometer/...).
    """
    from ceilometer import keystone_client
    from ceilometer import opts as ceilometer_opts

    conf = cfg.ConfigOpts()
    for group, options in ceilometer_opts.list_opts():
        conf.register_opts(list(options), group=None if group == "DEFAULT" else group)
    keystone_client.register_keystoneauth_opts(conf)
    conf([], project="ceilometer", default_config_files=config_files,
         validate_default_values=True)
    keystone_client.post_register_keystoneauth_opts(conf)
    return conf


def _policy_differs(existing, wanted):
    def definition(policy):
        return sorted((float(_seconds(d["granularity"])), float(_seconds(d["timespan"])))
                      for d in policy["definition"])
    return (set(existing.get("aggregation_methods", [])) != set(wanted["aggregation_methods"])
            or definition(existing) != definition(wanted))


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _seconds(value):
    """Seconds in a Gnocchi timespan: '1 minute', '7 days', '0:01:00', 60.0."""
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    if ":" in text:  # Gnocchi answers with H:MM:SS, or 'D days, H:MM:SS'
        days = 0
        if "day" in text:
            head, text = text.split(",", 1)
            days = int(head.split()[0])
        h, m, s = (float(x) for x in text.strip().split(":"))
        return days * 86400 + h * 3600 + m * 60 + s
    number, unit = text.split()
    return float(number) * _UNITS[unit.rstrip("s")]


def _ensure_resource_type(client, name, attributes, report):
    from gnocchiclient import exceptions

    try:
        existing = client.resource_type.get(name=name)
    except (exceptions.ResourceTypeNotFound, exceptions.NotFound):
        client.resource_type.create(resource_type={"name": name, "attributes": attributes})
        report.append(f"resource type {name}: created")
        return
    missing = [a for a in attributes if a not in existing["attributes"]]
    if not missing:
        report.append(f"resource type {name}: present")
        return
    ops = []
    for attr in missing:
        value = dict(attributes[attr])
        if value.get("required"):
            value["options"] = {"fill": ""}  # existing resources get ''
        ops.append({"op": "add", "path": f"/attributes/{attr}", "value": value})
    client.resource_type.update(name, ops)
    report.append(f"resource type {name}: added {', '.join(missing)}")


def upgrade(conf, definitions=None):
    """Create what ``definitions`` needs in Gnocchi; return one line per item."""
    from ceilometer import gnocchi_client
    from gnocchiclient import exceptions

    definitions = definitions or load_definitions()
    client = gnocchi_client.get_gnocchiclient(conf)
    report = []
    gnocchi_client.upgrade_resource_types(conf)
    report.append("ceilometer resource types (instance, host, ...): present")
    for policy in definitions.get("archive_policies", []):
        try:
            client.archive_policy.create(policy)
            report.append(f"archive policy {policy['name']}: created")
        except exceptions.ArchivePolicyAlreadyExists:
            existing = client.archive_policy.get(policy["name"])
            if _policy_differs(existing, policy):
                report.append(f"archive policy {policy['name']}: present, differs from the "
                              "shipped one (left as it is)")
            else:
                report.append(f"archive policy {policy['name']}: present")
    for name, attributes in definitions.get("resource_types", {}).items():
        _ensure_resource_type(client, name, attributes, report)
    wanted = {rd["resource_type"] for rd in definitions.get("resources", [])}
    for name in sorted(wanted):
        client.resource_type.get(name=name)  # every type the definitions use exists
    return report


def upgrade_with_retry(conf, retries, delay=2.0, definitions=None):
    """``upgrade``, retried while Gnocchi cannot be reached (it may be starting)."""
    from gnocchiclient import exceptions
    from keystoneauth1 import exceptions as ka_exceptions

    transient = (exceptions.ConnectionFailure, exceptions.UnknownConnectionError,
                 exceptions.ConnectionTimeout, ka_exceptions.ConnectFailure,
                 ka_exceptions.ServiceUnavailable, ka_exceptions.DiscoveryFailure)
    for attempt in range(retries + 1):
        try:
            return upgrade(conf, definitions)
        except transient:
            if attempt == retries:
                raise
            time.sleep(delay)
