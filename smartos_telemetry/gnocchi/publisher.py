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
"""

import os
import threading
from urllib import parse as urlparse

from ceilometer.publisher import gnocchi

INSTANCE_TYPE = "instance"
DEFINITIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "resources.yaml")


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
            self._local.metric_map = mapping
            try:
                super().publish_samples(group)
            finally:
                self._local.metric_map = None
