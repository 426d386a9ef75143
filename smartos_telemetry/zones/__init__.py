"""Zones: the tenants this host runs, whatever the platform calls them."""

import dataclasses


@dataclasses.dataclass(frozen=True, order=True)
class Zone:
    """One tenant.

    ``id`` is the number the kernel probes key by (on Linux the cgroup-v2
    id); ``kind`` says what kind of tenant it is (``libvirt``, ``docker``,
    ``service``, ...); ``instance_uuid`` is the cloud instance's UUID where
    known; ``path`` locates it (on Linux the cgroup path under the unified
    root, starting with ``/``); ``attributes`` are what the platform says of
    the tenant, as sorted (key, value) pairs: ``project_id``, ``user_id``,
    ``display_name``, ``flavor_name``, ... where known.
    """

    id: int
    name: str
    kind: str
    instance_uuid: str = None
    path: str = None
    attributes: tuple = ()

    def attribute(self, key, default=None):
        return dict(self.attributes).get(key, default)

    def as_dict(self):
        return dataclasses.asdict(self)
