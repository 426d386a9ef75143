"""Linux zones: tenants' cgroups, keyed by their cgroup-v2 id.

The id bpftrace's ``cgroup`` builtin (and D's
``curthread->cgroups->dfl_cgrp->kn->id``) gives is the id of the task's
cgroup in the **unified (v2) hierarchy**: the ``st_ino`` of its directory
there.  Only that hierarchy is walked -- ``/sys/fs/cgroup`` on a pure-v2
host, ``/sys/fs/cgroup/unified`` on a hybrid one (found in
``/proc/self/mountinfo``) -- because v1 hierarchies number their inodes
independently and the numbers collide.

Recognised tenants (the outermost match on a path wins; every cgroup below a
tenant rolls up to it):

==========  ==========================================  ====================
kind        cgroup directory name                       zone name
==========  ==========================================  ====================
libvirt     ``machine-qemu\\x2dN\\x2dNAME.scope``          NAME (unescaped), and
            ``qemu-N-NAME.libvirt-qemu``                the domain UUID from
                                                        libvirt's XML if readable
docker      ``docker-ID.scope``, ``docker/ID``          ID[:12]
containerd  ``cri-containerd-ID.scope``                 ID[:12]
podman      ``libpod-ID.scope``                         ID[:12]
crio        ``crio-ID.scope``                           ID[:12]
service     ``NAME.service``                            NAME
scope       ``NAME.scope``                              NAME
cgroup      any directory directly below one of the     its name
            configured ``plain_parents``
==========  ==========================================  ====================

:class:`ZoneConfig` says which kinds count and under which parents.

:class:`CgroupZones` caches id -> zone; a miss re-walks the tree (at most
once per ``min_rescan_interval``), and a cached id whose directory is gone
expires (checked when it is older than ``ttl``).
"""

import dataclasses
import fnmatch
import os
import re
import threading
import time
from xml.etree import ElementTree

from oslo_log import log as logging

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.zones import Zone

LOG = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
KINDS = frozenset({"libvirt", "docker", "containerd", "podman", "crio", "service", "scope",
                   "cgroup"})
CONTAINER_KINDS = frozenset({"docker", "containerd", "podman", "crio"})
LIBVIRT_XML_DIRS = ("/run/libvirt/qemu", "/etc/libvirt/qemu")

_HEX_ID = r"([0-9a-f]{64})"
_PATTERNS = (  # (kind, regex on the unescaped directory name, group holding the name)
    ("libvirt", re.compile(r"machine-qemu-\d+-(.+)\.scope\Z")),
    ("libvirt", re.compile(r"qemu-\d+-(.+)\.libvirt-qemu\Z")),
    ("docker", re.compile(rf"docker-{_HEX_ID}\.scope\Z")),
    ("containerd", re.compile(rf"cri-containerd-{_HEX_ID}\.scope\Z")),
    ("podman", re.compile(rf"libpod-{_HEX_ID}\.scope\Z")),
    ("crio", re.compile(rf"crio-{_HEX_ID}\.scope\Z")),
    ("service", re.compile(r"(.+)\.service\Z")),
    ("scope", re.compile(r"(.+)\.scope\Z")),
)
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def unescape_systemd(name):
    """``machine-qemu\\x2d1\\x2dvm.scope`` -> ``machine-qemu-1-vm.scope``."""
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def unified_root(mountinfo=MOUNTINFO):
    """Mount point of the cgroup2 (unified) hierarchy."""
    try:
        with open(mountinfo, encoding="utf-8") as f:
            for line in f:
                fields, _, rest = line.partition(" - ")
                if rest.split(" ", 1)[0] == "cgroup2":
                    return _unescape_mount(fields.split()[4])
    except OSError as exc:
        raise ConfigError(f"cannot read {mountinfo}: {exc.strerror}") from exc
    raise ConfigError("no cgroup2 (unified) hierarchy is mounted; mount one "
                      "(mount -t cgroup2 none /sys/fs/cgroup/unified) to resolve cgroup ids")


def _unescape_mount(path):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


@dataclasses.dataclass(frozen=True)
class ZoneConfig:
    """Which cgroups count as tenants.

    ``kinds``: the recognised kinds that count.  ``parents``: glob patterns of
    parent paths (relative to the unified root, e.g. ``/machine.slice``)
    under which a recognised name counts; None means anywhere.
    ``plain_parents``: paths whose direct children are tenants of kind
    ``cgroup`` whatever their name.
    """

    kinds: frozenset = KINDS
    parents: tuple = None
    plain_parents: tuple = ()
    libvirt_xml_dirs: tuple = LIBVIRT_XML_DIRS

    def __post_init__(self):
        unknown = set(self.kinds) - KINDS
        if unknown:
            raise ConfigError(f"unknown zone kind(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(KINDS))}")


def classify(rel_path, config):
    """``(kind, name)`` when the cgroup at ``rel_path`` is a tenant, else None."""
    parent, _, base = rel_path.rpartition("/")
    parent = parent or "/"
    if "cgroup" in config.kinds and parent in config.plain_parents:
        return "cgroup", base
    if config.parents is not None and not any(
            fnmatch.fnmatchcase(parent, p) for p in config.parents):
        return None
    name = unescape_systemd(base)
    if "docker" in config.kinds and parent.endswith("/docker") and re.fullmatch(_HEX_ID, name):
        return "docker", name[:12]
    for kind, pattern in _PATTERNS:
        m = pattern.match(name)
        if m and kind in config.kinds:
            return kind, m.group(1)[:12] if kind in CONTAINER_KINDS else m.group(1)
    return None


def libvirt_domain(name, xml_dirs=LIBVIRT_XML_DIRS):
    """What libvirt's XML says of domain ``name``: ``(uuid, attributes)``.

    ``uuid`` is the domain's UUID (Nova's instance UUID) or None if no XML
    is readable.  ``attributes`` are the Nova metadata libvirt keeps in the
    domain (``<metadata><nova:instance>``), where present: ``project_id``,
    ``user_id``, ``display_name`` (the server's name) and ``flavor_name``,
    as a sorted tuple of (key, value) pairs.
    """
    for d in xml_dirs:
        try:
            root = ElementTree.parse(os.path.join(d, name + ".xml")).getroot()
        except (OSError, ElementTree.ParseError):
            continue
        uuid = (root.findtext("uuid") or "").strip().lower() or None
        attrs = {}
        for el in root.iter():
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "project" and el.get("uuid"):
                attrs["project_id"] = el.get("uuid")
            elif tag == "user" and el.get("uuid"):
                attrs["user_id"] = el.get("uuid")
            elif tag == "flavor" and el.get("name"):
                attrs["flavor_name"] = el.get("name")
            elif tag == "name" and el is not root.find("name") and (el.text or "").strip():
                attrs["display_name"] = el.text.strip()
        return uuid, tuple(sorted(attrs.items()))
    return None, ()


def libvirt_uuid(name, xml_dirs=LIBVIRT_XML_DIRS):
    """The domain's UUID from libvirt's XML, or None if it cannot be read."""
    return libvirt_domain(name, xml_dirs)[0]


def walk(root, config):
    """``{cgroup_id: (Zone or None, rel_path)}`` for every cgroup under ``root``."""
    found = {}
    stack = [("/", None)]
    while stack:
        rel, tenant = stack.pop()
        full = root if rel == "/" else root + rel
        try:
            st = os.stat(full)
        except OSError:
            continue  # removed while walking
        if tenant is None and rel != "/":
            hit = classify(rel, config)
            if hit:
                kind, name = hit
                uuid, attrs = libvirt_domain(name, config.libvirt_xml_dirs) \
                    if kind == "libvirt" else (None, ())
                tenant = Zone(st.st_ino, name, kind, uuid, rel, attrs)
        found[st.st_ino] = (tenant, rel)
        try:
            with os.scandir(full) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = ("" if rel == "/" else rel) + "/" + entry.name
                        stack.append((child, tenant))
        except OSError:
            continue
    return found


class CgroupZones:
    """cgroup-v2 id -> Zone, cached; refreshed on a miss; expiring gone cgroups."""

    def __init__(self, config=None, root=None, min_rescan_interval=1.0, ttl=30.0,
                 clock=time.monotonic):
        self.config = config or ZoneConfig()
        self.root = (root or unified_root()).rstrip("/") or "/"
        self.min_rescan_interval = min_rescan_interval
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._by_id = {}       # id -> (Zone or None, rel_path, checked_at)
        self._scanned_at = None
        self.scans = 0

    def rescan(self):
        now = self.clock()
        found = walk(self.root, self.config)
        with self._lock:
            self._by_id = {i: (zone, rel, now) for i, (zone, rel) in found.items()}
            self._scanned_at = now
            self.scans += 1

    def zones(self):
        """Every tenant seen by a fresh walk, by id."""
        self.rescan()
        with self._lock:
            tenants = {z.id: z for z, _, _ in self._by_id.values() if z is not None}
        return sorted(tenants.values())

    def resolve(self, cgroup_id):
        """The tenant that owns cgroup ``cgroup_id``, or None (host, or unknown id)."""
        entry = self._lookup(cgroup_id)
        if entry is None:
            with self._lock:
                recent = (self._scanned_at is not None
                          and self.clock() - self._scanned_at < self.min_rescan_interval)
            if not recent:
                self.rescan()
                entry = self._lookup(cgroup_id)
        return entry[0] if entry else None

    def path(self, cgroup_id):
        """The cgroup's path under the unified root, or None."""
        entry = self._lookup(cgroup_id)
        return entry[1] if entry else None

    def _lookup(self, cgroup_id):
        with self._lock:
            entry = self._by_id.get(cgroup_id)
        if entry is None:
            return None
        zone, rel, checked = entry
        now = self.clock()
        if now - checked < self.ttl:
            return entry
        full = self.root if rel == "/" else self.root + rel
        try:
            alive = os.stat(full).st_ino == cgroup_id
        except OSError:
            alive = False
        with self._lock:
            if alive:
                self._by_id[cgroup_id] = (zone, rel, now)
            else:
                self._by_id.pop(cgroup_id, None)
                LOG.debug("cgroup %d (%s) is gone", cgroup_id, rel)
        return (zone, rel, now) if alive else None
