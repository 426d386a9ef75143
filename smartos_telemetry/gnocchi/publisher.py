"""``smartos-gnocchi://``: ceilometer's Gnocchi publisher, with a zone's
resource type chosen per sample.

A Gnocchi resource-definition file maps each meter name to one resource
type, and a pipeline routes samples by meter name only, so ceilometer's
``gnocchi://`` cannot file ``cpu.runqueue.latency.p99`` of a Nova instance
under ``instance`` and the same meter of a container under a type of ours.
This publisher can: a sample whose ``resource_metadata.instance_id`` is set
is mapped with the definitions whose ``resource_type`` is ``instance``;
every other sample with the remaining definitions (``smartos_zone``,
``host``).  Everything else -- options, archive policies, batching,
resource creation and updates, auth -- is ceilometer's ``GnocchiPublisher``.

Registered in ``ceilometer.sample.publisher`` as ``smartos-gnocchi``; the
query string takes ``gnocchi://``'s options, and ``resources_definition_file``
defaults to the one shipped in this package.

Backpressure.  When Gnocchi does not take a batch (down, refusing,
overloaded, an error), ceilometer's publisher logs the whole batch at ERROR
and drops it: ``GnocchiPublisher.publish_samples`` catches every exception
of ``batch_measures`` and returns, so the notification is acknowledged and
nothing is retried (ceilometer/publisher/gnocchi.py).  Then it tries each
resource's update, which fails again, one ERROR per resource; and while
the archive policies were never created, ``ensures_archives_policies``
raises out of ``publish_samples``, logged per batch by the pipeline.  This
publisher drops what ceilometer drops, but says so once per change of state
(one ERROR when batches start failing, one WARNING when one is taken
again, with the count), skips the doomed resource updates, and counts
every sample Gnocchi did not store: :data:`FAILURES_METER`, a delta (the
samples lost since the last one it reported) posted on this agent's
``host`` resource with the next batch Gnocchi takes, and a zero once a
minute otherwise, so an operator can graph and alarm on it; it is reset
only once Gnocchi has taken it, so it is never lost while the agent runs
nor counted twice.  Cumulative meters
lose nothing that matters for billing: their next sample carries the
running total.
"""

import os
import threading
import time
from urllib import parse as urlparse

from ceilometer import declarative
from ceilometer.publisher import gnocchi
from oslo_log import log as logging
from oslo_utils import timeutils

LOG = logging.getLogger(__name__)

INSTANCE_TYPE = "instance"
DEFINITIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "resources.yaml")


#: samples Gnocchi did not store, per notification agent host (a delta)
FAILURES_METER = "telemetry.publish.failures"
#: seconds between two zero counts (the archive policies' finest granularity)
REPORT_EVERY = 60.0


def is_instance(sample):
    return bool((sample.resource_metadata or {}).get("instance_id"))


class ZoneGnocchiPublisher(gnocchi.GnocchiPublisher):
    def __init__(self, conf, parsed_url):
        self._local = threading.local()  # the map this thread's publish_samples uses
        query = urlparse.parse_qs(parsed_url.query)
        if "resources_definition_file" not in query:
            query["resources_definition_file"] = [DEFINITIONS]
            parsed_url = parsed_url._replace(query=urlparse.urlencode(query, doseq=True))
        super().__init__(conf, parsed_url)
        self._instance_map = {metric: rd for rd in self.resources_definition
                              if rd.cfg["resource_type"] == INSTANCE_TYPE
                              for metric in rd.metrics}
        self._other_map = {metric: rd for rd in self.resources_definition
                           if rd.cfg["resource_type"] != INSTANCE_TYPE
                           for metric in rd.metrics}
        self.failures = PublishFailures()
        self._host = conf.host
        # ceilometer's client retries a refused connection 3 times, backing
        # off 0.5, 1 and 2 s, with a WARNING each (gnocchi_client.get_gnocchiclient:
        # connect_retries; keystoneauth1/session.py); while Gnocchi is known to
        # be failing, one attempt a batch says enough and holds no worker
        self._api = getattr(self._gnocchi, "api", None)
        self._connect_retries = getattr(self._api, "connect_retries", None)
        self._failures_policy = self._policy_of_failures(conf, query)

    def _policy_of_failures(self, conf, query):
        """The archive policy of :data:`FAILURES_METER`: the URL's
        ``archive_policy`` override, else the definitions' entry for it, else
        their default (the gauge policy: a delta is no running total)."""
        override = query.get("archive_policy", [None])[-1]
        if override:
            return override
        for rd in self.resources_definition:
            if FAILURES_METER in rd.metrics:
                return rd.metrics[FAILURES_METER]["archive_policy_name"]
        data = declarative.load_definitions(conf, {}, query["resources_definition_file"][-1])
        return data.get("archive_policy_default", "ceilometer-low")

    @property
    def metric_map(self):
        chosen = getattr(self._local, "metric_map", None)
        return chosen if chosen is not None else self._metric_map

    @metric_map.setter
    def metric_map(self, value):
        self._metric_map = value

    def publish_samples(self, data):
        instances = [s for s in data if is_instance(s)]
        others = [s for s in data if not is_instance(s)]
        for group, mapping in ((instances, self._instance_map), (others, self._other_map)):
            if not group:
                continue
            try:
                # ceilometer's publish_samples lets this one raise (once per
                # batch until the policies exist); the batch is lost either way
                self.ensures_archives_policies()
            except Exception as exc:
                self.failures.failed(len(group), exc)
                self._retry_connections(False)
                continue
            self._local.metric_map = mapping
            self._local.failed = False
            try:
                super().publish_samples(group)
            finally:
                self._local.metric_map = None
                self._local.failed = False

    def batch_measures(self, measures, resource_infos):
        offered = _count(measures)
        claimed = self.failures.claim()  # this batch carries the count, no other
        if claimed is not None:
            self._add_failures(measures, resource_infos, claimed)
        try:
            super().batch_measures(measures, resource_infos)
        except Exception as exc:
            # ceilometer logs the whole batch here and drops it; we say it once
            self._local.failed = True
            self.failures.failed(offered, exc, unclaimed=claimed or 0)
            self._retry_connections(False)
            return
        reported = FAILURES_METER in measures.get(self._host, {})
        stored = _count(measures) - (1 if reported else 0)
        # measures of resources Gnocchi refused to create are dropped by
        # ceilometer's batch_measures (one ERROR each): lost too
        self.failures.succeeded(lost=offered - stored, unclaimed=0 if reported else claimed or 0,
                                reported=reported)
        self._retry_connections(True)

    def _retry_connections(self, retry):
        if self._api is not None and self._connect_retries is not None:
            self._api.connect_retries = self._connect_retries if retry else 0

    def _if_not_cached(self, resource_type, res_id, resource_extra):
        # after a failed batch each update would fail too, logged per
        # resource; the next batch Gnocchi takes updates them (nothing of
        # theirs was cached)
        if getattr(self._local, "failed", False):
            return
        super()._if_not_cached(resource_type, res_id, resource_extra)

    def _add_failures(self, measures, resource_infos, pending):
        host = self._host
        measures.setdefault(host, {})[FAILURES_METER] = {
            "measures": [{"timestamp": timeutils.utcnow().isoformat(), "value": pending}],
            "archive_policy_name": self._failures_policy, "unit": "sample"}
        resource_infos.setdefault(host, {
            "resource_type": "host", "resource": {"id": host, "user_id": None},
            "resource_extra": {"project_id": None, "host_name": host}})


def _count(measures):
    return sum(len(m["measures"]) for metrics in measures.values() for m in metrics.values())


class PublishFailures:
    """Samples Gnocchi did not take, and the state logged once per change.

    ``pending``: lost since the last count Gnocchi stored; ``lost`` and
    ``failed_batches``: since the agent started.  Samples of a resource
    Gnocchi refused to create count as lost without a message of ours:
    ceilometer logs each of those."""

    def __init__(self):
        self._lock = threading.Lock()
        self.pending = 0
        self.lost = 0
        self.failed_batches = 0
        self.failing = False
        self._outage = (0, 0)  # batches, samples of the current outage
        self._reported = -REPORT_EVERY  # monotonic time of the last count stored

    def claim(self):
        """The pending count for one batch to report, or None: nothing lost
        and a count reported less than :data:`REPORT_EVERY` s ago.  A zero
        a minute lets an alarm on the meter see "ok", not "insufficient
        data".  :meth:`failed` or :meth:`succeeded` gives back what the batch
        did not deliver."""
        with self._lock:
            if not self.pending and time.monotonic() - self._reported < REPORT_EVERY:
                return None
            claimed, self.pending = self.pending, 0
            return claimed

    def failed(self, samples, exc, unclaimed=0):
        with self._lock:
            self.pending += samples + unclaimed
            self.lost += samples
            self.failed_batches += 1
            first = not self.failing
            self.failing = True
            batches, lost = self._outage
            self._outage = (batches + 1, lost + samples)
        if first:
            LOG.error("smartos-gnocchi: Gnocchi did not take a batch of %d samples (%s: %s); "
                      "they are dropped, as ceilometer's gnocchi publisher drops them, and "
                      "counted in %s; no further message until Gnocchi takes a batch again "
                      "(check the Gnocchi API and its backlog: gnocchi status)",
                      samples, type(exc).__name__, exc, FAILURES_METER)

    def succeeded(self, lost=0, unclaimed=0, reported=False):
        with self._lock:
            self.pending += lost + unclaimed
            if reported:
                self._reported = time.monotonic()
            self.lost += lost
            recovered = self.failing
            self.failing = False
            batches, samples = self._outage
            self._outage = (0, 0)
        if recovered:
            LOG.warning("smartos-gnocchi: Gnocchi takes samples again; %d batches (%d "
                        "samples) were lost while it did not", batches, samples)
