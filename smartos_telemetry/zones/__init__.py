"""Zones: the tenants this host runs, whatever the platform calls them."""

import dataclasses


@dataclasses.dataclass(frozen=True, order=True)
class Zone:
    """One tenant.

    ``id`` is the number the kernel probes key by (on Linux the cgroup-v2
    id); ``kind`` says what kind of tenant it is (``libvirt``, ``docker``,
    ``service``, ...); ``instance_uuid`` is the cloud instance's UUID where
    known; ``path`` locates it (on Linux the cgroup path under the unified
    root, starting with ``/``).
    """

    id: int
    name: str
    kind: str
    instance_uuid: str = None
    path: str = None

    def as_dict(self):
        return dataclasses.asdict(self)
