"""Gnocchi set-up for smartos-telemetry's meters: archive policies and
resource types, idempotent, with ceilometer's own auth.

What it does, in order (each step a no-op when already done):

1. ceilometer's ``gnocchi_client.upgrade_resource_types`` -- what
   ``ceilometer-upgrade`` does: ceilometer's types, among them ``instance``
   and ``host``, which our definitions use;
2. the archive policies of ``resources.yaml``: created if missing; one that
   exists with other timespans or back window is updated (Gnocchi allows
   that, and every metric of the policy follows); one whose aggregation
   methods or granularities differ is reported and left as it is (Gnocchi
   cannot change them: rest/api.py ArchivePolicyController.patch takes
   ``definition`` and ``back_window`` only, indexer update_archive_policy
   refuses added or dropped granularities); a superseded policy of an earlier
   release is reported with the number of metrics that keep it (no Gnocchi
   call moves a metric to another policy); ``migrate_superseded`` moves
   them, measures and all (:func:`_migrate_superseded`);
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


def _granularities(policy):
    return sorted(float(_seconds(d["granularity"])) for d in policy["definition"])


def _definition(policy):
    return sorted((float(_seconds(d["granularity"])), float(_seconds(d["timespan"])))
                  for d in policy["definition"])


def _policy_differs(existing, wanted):
    return (set(existing.get("aggregation_methods", [])) != set(wanted["aggregation_methods"])
            or _definition(existing) != _definition(wanted)
            or int(existing.get("back_window", 0)) != int(wanted.get("back_window", 0)))


def _ensure_policy(client, policy, report):
    from gnocchiclient import exceptions

    name = policy["name"]
    try:
        client.archive_policy.create(policy)
        report.append(f"archive policy {name}: created")
        return
    except exceptions.ArchivePolicyAlreadyExists:
        existing = client.archive_policy.get(name)
    if not _policy_differs(existing, policy):
        report.append(f"archive policy {name}: present")
        return
    fixed = []
    if set(existing.get("aggregation_methods", [])) != set(policy["aggregation_methods"]):
        fixed.append(f"aggregation methods {', '.join(sorted(existing['aggregation_methods']))}"
                     f" (shipped: {', '.join(sorted(policy['aggregation_methods']))})")
    if _granularities(existing) != _granularities(policy):
        fixed.append("granularities " + ", ".join(f"{g:g} s" for g in _granularities(existing))
                     + " (shipped: " + ", ".join(f"{g:g} s" for g in _granularities(policy))
                     + ")")
    if fixed:
        report.append(f"archive policy {name}: present with {'; '.join(fixed)}, which Gnocchi "
                      f"cannot change in place; left as it is (fix: delete it while no metric "
                      f"uses it -- gnocchi archive-policy delete {name} -- and run upgrade "
                      f"again)")
        return
    client.archive_policy.update(name, {"definition": policy["definition"],
                                        "back_window": policy.get("back_window", 0)})
    count = len(_metrics_of_policy(client, name))
    report.append(f"archive policy {name}: timespans or back window updated to the shipped "
                  f"ones; its {count} metric(s) follow")


def _metrics_of_policy(client, name):
    """The metrics (as Gnocchi lists them: id, name, resource_id, ...) that use
    archive policy ``name`` (GET /v1/metric?archive_policy_name=, page by page)."""
    from urllib import parse

    metrics = []
    url = "v1/metric?" + parse.urlencode({"archive_policy_name": name, "limit": 1000})
    while url:
        page = client.metric._get(url)
        metrics.extend(page.json())
        url = page.links.get("next", {}).get("url")
    return metrics


def _report_superseded(client, old, new, report):
    from gnocchiclient import exceptions

    try:
        client.archive_policy.get(old)
    except (exceptions.ArchivePolicyNotFound, exceptions.NotFound):
        return
    metrics = _metrics_of_policy(client, old)
    if not metrics:
        report.append(f"archive policy {old} (superseded by {new}): no metric uses it "
                      f"(gnocchi archive-policy delete {old} removes it)")
        return
    report.append(
        f"archive policy {old} (superseded by {new}): {len(metrics)} metric(s) keep it, "
        f"as Gnocchi cannot move a metric to another policy; new metrics get {new}.  They "
        f"answer only {old}'s aggregation methods, so a consumer asking for one only {new} "
        f"has gets 404 for them (README, 'Bill and alarm on your meters').  To move them "
        f"with their measures: smartos-telemetry upgrade --migrate-superseded.  Metrics: "
        + ", ".join(f"{m.get('resource_id') or '-'}/{m['name']}={m['id']}" for m in metrics[:5])
        + (f" and {len(metrics) - 5} more (gnocchi metric list)" if len(metrics) > 5 else ""))


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


def _migrate_superseded(client, old, new, report):
    """Move every metric of the superseded policy ``old`` to ``new``, measures
    and all: a new metric under ``new`` gets the old one's points (the
    hourly ones older than its finest granularity's, then those), takes its
    place on its resource in one PATCH of the resource's metrics (Gnocchi
    detaches and attaches them in one transaction: indexer/sqlalchemy.py,
    update_resource), and the old metric is deleted.  Our metrics are running
    totals, so a sample the publisher files on the old metric between the
    copy and the swap loses that point only, never part of a total."""
    from gnocchiclient import exceptions

    try:
        policy = client.archive_policy.get(old)
    except (exceptions.ArchivePolicyNotFound, exceptions.NotFound):
        return
    # a running total's value in each period: its last (or, the same, its max)
    method = next((m for m in ("last", "max") if m in policy["aggregation_methods"]), None)
    grains = sorted({float(_seconds(d["granularity"])) for d in policy["definition"]})
    moved, left = 0, []
    for metric in _metrics_of_policy(client, old):
        if method is None or not metric.get("resource_id"):
            left.append(metric["id"])
            continue
        points, finest_start = [], None
        for grain in grains:  # finest first: it bounds what the coarser add
            series = client.metric.get_measures(metric["id"], aggregation=method,
                                                granularity=grain, refresh=True)
            if finest_start is not None:
                series = [p for p in series if p[0].timestamp() + grain <= finest_start]
            elif series:
                finest_start = series[0][0].timestamp()
            points = series + points
        resource = client.resource.get("generic", metric["resource_id"])
        copy = client.metric.create({"archive_policy_name": new,
                                     **({"unit": metric["unit"]} if metric.get("unit") else {})})
        if points:
            client.metric.add_measures(copy["id"], [
                {"timestamp": when.isoformat(), "value": value} for when, _, value in points])
        metrics = dict(resource["metrics"])
        metrics[metric["name"]] = copy["id"]
        client.resource.update(resource["type"], resource["id"], {"metrics": metrics})
        client.metric.delete(metric["id"])
        moved += 1
    report.append(f"archive policy {old}: {moved} metric(s) moved to {new} with their "
                  f"measures" + (f"; not moved (no resource, or no last/max to copy): "
                                 f"{', '.join(left)}" if left else ""))


def upgrade(conf, definitions=None, migrate_superseded=False):
    """Create what ``definitions`` needs in Gnocchi; return one line per item."""
    from ceilometer import gnocchi_client

    definitions = definitions or load_definitions()
    client = gnocchi_client.get_gnocchiclient(conf)
    report = []
    gnocchi_client.upgrade_resource_types(conf)
    report.append("ceilometer resource types (instance, host, ...): present")
    for policy in definitions.get("archive_policies", []):
        _ensure_policy(client, policy, report)
    for old, new in (definitions.get("superseded_archive_policies") or {}).items():
        if migrate_superseded:
            _migrate_superseded(client, old, new, report)
        _report_superseded(client, old, new, report)
    for name, attributes in definitions.get("resource_types", {}).items():
        _ensure_resource_type(client, name, attributes, report)
    wanted = {rd["resource_type"] for rd in definitions.get("resources", [])}
    for name in sorted(wanted):
        client.resource_type.get(name=name)  # every type the definitions use exists
    return report


def upgrade_with_retry(conf, retries, delay=2.0, definitions=None, migrate_superseded=False):
    """``upgrade``, retried while Gnocchi cannot be reached (it may be starting)."""
    from gnocchiclient import exceptions
    from keystoneauth1 import exceptions as ka_exceptions

    transient = (exceptions.ConnectionFailure, exceptions.UnknownConnectionError,
                 exceptions.ConnectionTimeout, ka_exceptions.ConnectFailure,
                 ka_exceptions.ServiceUnavailable, ka_exceptions.DiscoveryFailure)
    for attempt in range(retries + 1):
        try:
            return upgrade(conf, definitions, migrate_superseded)
        except transient:
            if attempt == retries:
                raise
            time.sleep(delay)
