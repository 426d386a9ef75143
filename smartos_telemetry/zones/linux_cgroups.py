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
            ``qemu-N-NAME.libvirt-qemu``                the domain's UUID and
                                                        Nova metadata from
                                                        libvirt's record
docker      ``docker-ID.scope``, ``docker/ID``          ID[:12]
containerd  ``cri-containerd-ID.scope``                 ID[:12]
podman      ``libpod-ID.scope``                         ID[:12]
crio        ``crio-ID.scope``                           ID[:12]
service     ``NAME.service``                            NAME
scope       ``NAME.scope``                              NAME
cgroup      any directory directly below one of the     its name
            configured ``plain_parents``
==========  ==========================================  ====================

Names are the kernel's: bytes, of any value but ``/`` and NUL.
:func:`name_text` turns them into text every consumer can carry (JSON,
ceilometer's message signature, Prometheus labels): UTF-8 as it is, any
other byte as ``\\xHH``, reversibly (:func:`name_bytes`), so that distinct
names stay distinct.

A libvirt scope is trusted only as far as libvirt's own record of the
domain vouches for it: the NAME must be one libvirt could have written,
and the record (``/run/libvirt/qemu/NAME.xml``) must say that the domain
runs with that id and with its QEMU process in that scope.  Two live zones
never share a resource identity (:meth:`CgroupZones.rescan`).

:class:`ZoneConfig` says which kinds count and under which parents.

:class:`CgroupZones` caches id -> zone; a miss re-walks the tree (at most
once per ``min_rescan_interval``), and a cached id whose directory is gone
expires (checked when it is older than ``ttl``).
"""

import dataclasses
import fnmatch
import os
import posixpath
import re
import threading
import time
from xml.etree import ElementTree

from oslo_log import log as logging

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.text_format import display_text
from smartos_telemetry.zones import Zone

LOG = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
KINDS = frozenset({"libvirt", "docker", "containerd", "podman", "crio", "service", "scope",
                   "cgroup"})
CONTAINER_KINDS = frozenset({"docker", "containerd", "podman", "crio"})
#: where libvirt's QEMU driver keeps the status record of every running domain
#: (its state directory when privileged); a domain defined but shut off has
#: only its definition under /etc/libvirt/qemu, and no scope
LIBVIRT_XML_DIRS = ("/run/libvirt/qemu",)

#: What libvirt puts after ``qemu-N-`` in a machine name: the domain name
#: with every character but letters, digits, '-' and '.' dropped, runs of
#: '-'/'.' kept as their first, none leading or trailing, and the whole
#: machine name cut at 64 characters (virDomainMachineNameAppendValid and
#: virDomainDriverGenerateMachineName, src/hypervisor/domain_driver.c).  So
#: never a '/', a '..', a space or a non-ASCII character.
_MACHINE_NAME = r"[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*"
MACHINE_NAME_MAX = 64
_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_LIBVIRT = (re.compile(rf"machine-(qemu-(0|[1-9][0-9]*)-({_MACHINE_NAME}))\.scope\Z"),
            re.compile(rf"(qemu-(0|[1-9][0-9]*)-({_MACHINE_NAME}))\.libvirt-qemu\Z"))

_HEX_ID = r"([0-9a-f]{64})"
_PATTERNS = (  # (kind, regex on the unescaped directory name, group holding the name)
    ("docker", re.compile(rf"docker-{_HEX_ID}\.scope\Z")),
    ("containerd", re.compile(rf"cri-containerd-{_HEX_ID}\.scope\Z")),
    ("podman", re.compile(rf"libpod-{_HEX_ID}\.scope\Z")),
    ("crio", re.compile(rf"crio-{_HEX_ID}\.scope\Z")),
    ("service", re.compile(r"(.+)\.service\Z", re.DOTALL)),
    ("scope", re.compile(r"(.+)\.scope\Z", re.DOTALL)),
)
_SYSTEMD_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
#: the escapes name_text writes: an undecodable byte (never ASCII, so 0x80 up)
#: and a backslash (0x5c); a name's own "\\x2d" is none of them and stays as it is
_OUR_ESCAPE = re.compile(rb"\\x(5[cC]|[89a-fA-F][0-9a-fA-F])")
_LOOKS_ESCAPED = re.compile(r"\\(?=x(?:5[cC]|[89a-fA-F][0-9a-fA-F]))")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape made of a byte


def name_text(raw):
    """A name (or path) from the kernel, ``bytes``, as text: valid UTF-8 as
    it is, every other byte as ``\\xHH`` (``b"bad\\xff"`` -> ``bad\\xff``).

    Reversible (:func:`name_bytes`): a backslash the name itself has before
    what reads as one of these escapes is written ``\\x5c``, so ``bad\\xff``
    spelled out in ASCII and ``bad`` + byte 0xff stay two names (systemd's
    ``\\x2d`` reads as none and is left alone).  Control characters stay (JSON and
    Prometheus escape them; displays use text_format.display_text)."""
    text = raw.decode("utf-8", "surrogateescape")
    if "\\" not in text and text.isascii():
        return text
    text = _LOOKS_ESCAPED.sub(r"\\x5c", text)
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xdc00:02x}", text)


def name_bytes(text):
    """The kernel's bytes of a name :func:`name_text` gave."""
    return _OUR_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8"))


def os_path(text):
    """A path :func:`name_text` gave, as ``os`` functions take it."""
    return os.fsdecode(name_bytes(text))


def _raw(name):
    return name if isinstance(name, bytes) else os.fsencode(name)


def unescape_systemd(name):
    """``machine-qemu\\x2d1\\x2dvm.scope`` -> ``machine-qemu-1-vm.scope``.

    systemd escapes a unit name's bytes (unit_name_escape: ``\\xHH``), so
    the escapes are bytes, and ``caf\\xc3\\xa9`` is ``café``; the result is
    :func:`name_text` of those bytes.  ``name``: bytes, or a str as ``os``
    gives it."""
    return name_text(_SYSTEMD_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), _raw(name)))


def unified_root(mountinfo=MOUNTINFO):
    """Mount point of the cgroup2 (unified) hierarchy."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
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


def _normal_parent(path):
    """A ``plain_parents`` entry as the walk spells parents: absolute, no
    trailing or doubled slash."""
    if not path.startswith("/"):
        fix = "/" + path.strip("/") if path.strip("/") else "/tenants"
        raise ConfigError(
            f"plain parent {path!r} is not an absolute cgroup path ([smartos] plain_parents, "
            f"--plain-parent: paths under the unified hierarchy's root, starting with '/'; "
            f"fix: {fix})")
    return "/" + posixpath.normpath(path).lstrip("/")


@dataclasses.dataclass(frozen=True)
class ZoneConfig:
    """Which cgroups count as tenants.

    ``kinds``: the recognised kinds that count.  ``parents``: glob patterns of
    parent paths (relative to the unified root, e.g. ``/machine.slice``)
    under which a recognised name counts; None means anywhere.
    ``plain_parents``: paths whose direct children are tenants of kind
    ``cgroup`` whatever their name (``/tenants/`` is ``/tenants``; a
    relative path is a ConfigError).  ``libvirt_xml_dirs``: where libvirt
    keeps the status records of running domains.
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
        object.__setattr__(self, "plain_parents",
                           tuple(dict.fromkeys(_normal_parent(p) for p in self.plain_parents)))


def config_from_options(group):
    """The ZoneConfig the ``[smartos]`` options ask for (a ConfigError names a
    bad one: the agent checks them at start, opts.validate)."""
    return ZoneConfig(kinds=frozenset(group.zone_kinds or KINDS),
                      plain_parents=tuple(group.plain_parents),
                      libvirt_xml_dirs=tuple(group.libvirt_xml_dirs))


def _libvirt_match(name):
    """``(machine name, domain id, NAME)`` when ``name`` (unescaped) is a scope
    or cgroup libvirt could have made for a QEMU domain, else None."""
    for pattern in _LIBVIRT:
        m = pattern.match(name)
        if m and len(m.group(1)) <= MACHINE_NAME_MAX:
            return m.group(1), int(m.group(2)), m.group(3)
    return None


def classify(rel_path, config):
    """``(kind, name)`` when the cgroup at ``rel_path`` (as ``os`` spells it)
    is a tenant, else None."""
    parent, _, base = rel_path.rpartition("/")
    parent = parent or "/"
    if "cgroup" in config.kinds and parent in config.plain_parents:
        return "cgroup", name_text(_raw(base))
    if config.parents is not None and not any(
            fnmatch.fnmatchcase(parent, p) for p in config.parents):
        return None
    name = unescape_systemd(base)
    if "docker" in config.kinds and parent.endswith("/docker") and re.fullmatch(_HEX_ID, name):
        return "docker", name[:12]
    machine = _libvirt_match(name)
    if machine and "libvirt" in config.kinds:
        return "libvirt", machine[2]
    for kind, pattern in _PATTERNS:
        m = pattern.match(name)
        if m and kind in config.kinds:
            return kind, m.group(1)[:12] if kind in CONTAINER_KINDS else m.group(1)
    return None


def machine_name(domain_id, domain_name):
    """The machine name libvirt gives domain ``domain_name`` running as id
    ``domain_id`` (virDomainDriverGenerateMachineName, privileged, no
    embedded root; src/hypervisor/domain_driver.c)."""
    out = f"qemu-{domain_id}-"
    skip = True
    for ch in domain_name:
        if len(out) >= MACHINE_NAME_MAX:
            break
        if ch in ".-":
            if not skip:
                out += ch
                skip = True
        elif ch in _HOSTNAME_CHARS:
            out += ch
            skip = False
    return out.rstrip("-.")


@dataclasses.dataclass(frozen=True)
class DomainRecord:
    """What libvirt's XML says of one domain.

    ``domain_id`` and ``pid`` (its QEMU process) are in a status record
    (``<domstatus>``, written while the domain runs) and None in a bare
    definition.  ``attributes``: the Nova metadata libvirt keeps in the
    domain (``<metadata><nova:instance>``), where present: ``project_id``,
    ``user_id``, ``display_name`` (the server's name), ``flavor_name`` and
    ``flavor_id``, as sorted (key, value) pairs.
    """

    name: str
    uuid: str = None
    domain_id: int = None
    pid: int = None
    attributes: tuple = ()


def libvirt_record(name, xml_dirs=LIBVIRT_XML_DIRS):
    """libvirt's record of the domain a machine scope names (``NAME.xml``, the
    first readable of ``xml_dirs``), or None.

    Only a NAME libvirt could have written selects a file, and only a file
    inside the directory (a symlink out of it is not followed)."""
    if not re.fullmatch(_MACHINE_NAME, name):
        return None
    for d in xml_dirs:
        where = os.path.realpath(d)
        path = os.path.realpath(os.path.join(where, name + ".xml"))
        if os.path.dirname(path) != where:
            continue
        try:
            root = ElementTree.parse(path).getroot()
        except (OSError, ElementTree.ParseError):
            continue
        return _record(root)
    return None


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _record(root):
    status = root.tag == "domstatus"
    domain = root.find("domain") if status else root
    if domain is None:
        return None
    own_name = domain.find("name")
    attrs = {}
    for el in domain.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "project" and el.get("uuid"):
            attrs["project_id"] = el.get("uuid")
        elif tag == "user" and el.get("uuid"):
            attrs["user_id"] = el.get("uuid")
        elif tag == "flavor" and el.get("name"):
            # Nova writes the flavor's id beside its name from 2025.2 on; where
            # it is missing ceilometer's libvirt discovery asks Nova's API and,
            # without an answer, reports the name as the id (ceilometer/compute/
            # discovery.py, InstanceDiscovery._get_flavor_id) -- the agent asks
            # no API, so the name, as ceilometer without one
            attrs["flavor_name"] = el.get("name")
            attrs["flavor_id"] = el.get("id") or el.get("name")
        elif tag == "name" and el is not own_name and (el.text or "").strip():
            attrs["display_name"] = el.text.strip()
    return DomainRecord(
        name=(own_name.text or "").strip() if own_name is not None else "",
        uuid=(domain.findtext("uuid") or "").strip().lower() or None,
        domain_id=_int(domain.get("id")) if status else None,
        pid=_int(root.get("pid")) if status else None,
        attributes=tuple(sorted(attrs.items())))


def _cgroup_of(pid):
    """The unified-hierarchy cgroup of process ``pid`` (as ``os`` spells paths),
    or None."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            for line in f:
                if line.startswith(b"0::"):
                    return os.fsdecode(line[3:].rstrip(b"\n"))
    except OSError:
        pass
    return None


def libvirt_identity(rel, scope_name, config):
    """``(record, problem)`` for the libvirt scope at ``rel`` whose unescaped
    name is ``scope_name``: libvirt's record if it vouches for the scope,
    else None and why not (None when there is simply no record)."""
    machine, domain_id, name = _libvirt_match(scope_name)
    record = libvirt_record(name, config.libvirt_xml_dirs)
    if record is None:
        return None, None
    if record.pid is None and record.domain_id is None:
        expected = machine_name(domain_id, record.name)  # a bare definition
    else:
        expected = machine_name(record.domain_id, record.name)
    if expected != machine:
        return None, (f"libvirt's record of domain {record.name} is of machine {expected}, "
                      f"not of this scope's {machine}")
    if record.domain_id is not None or record.pid is not None:
        inside = _cgroup_of(record.pid) if record.pid is not None else None
        if inside is None or not (inside == rel or inside.startswith(rel + "/")):
            return None, (f"the QEMU process of domain {record.name} (pid {record.pid}, "
                          f"libvirt's record) does not run in this scope")
    if record.uuid is None:
        return None, f"libvirt's record of domain {record.name} has no <uuid>"
    return record, None


def identity(zone):
    """What names a zone outside this host's walk: the resource id the pollsters
    give it (pollsters.zone_resource_id) is its instance UUID, else built
    from its kind and name."""
    return ("instance", zone.instance_uuid) if zone.instance_uuid else (zone.kind, zone.name)


def walk(root, config):
    """``({cgroup_id: (Zone or None, rel_path)}, [(rel_path, problem)])`` for
    every cgroup under ``root``; ``rel_path`` as ``os`` spells it."""
    found, problems = {}, []
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
                uuid, attrs = None, ()
                if kind == "libvirt":
                    record, problem = libvirt_identity(
                        rel, unescape_systemd(rel.rpartition("/")[2]), config)
                    if record is not None:
                        uuid, attrs = record.uuid, record.attributes
                    elif problem:
                        problems.append((rel, f"{problem}; counted as a zone without "
                                              f"the instance's identity"))
                tenant = Zone(st.st_ino, name, kind, uuid, name_text(_raw(rel)), attrs)
        found[st.st_ino] = (tenant, rel)
        try:
            with os.scandir(full) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = ("" if rel == "/" else rel) + "/" + entry.name
                        stack.append((child, tenant))
        except OSError:
            continue
    return found, problems


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
        self._warned = {}      # rel_path or plain parent -> what was logged of it
        self.scans = 0

    def rescan(self):
        now = self.clock()
        found, problems = walk(self.root, self.config)
        with self._lock:
            holders = {identity(z): z.id for z, _, _ in self._by_id.values() if z is not None}
        problems += self._refuse_shared(found, holders)
        problems += self._missing_parents()
        self._warn_once(problems, {rel for _, rel in found.values()})
        with self._lock:
            self._by_id = {i: (zone, rel, now) for i, (zone, rel) in found.items()}
            self._scanned_at = now
            self.scans += 1

    @staticmethod
    def _refuse_shared(found, holders):
        """Two live zones never share a resource identity (a second scope
        naming a domain already running, two cgroups whose names unescape
        alike): the zone that held it before this walk keeps it, else the
        oldest cgroup (kernfs numbers new directories upwards); the others
        are refused -- not zones, their rows the host's -- with a warning."""
        claims = {}
        for zone, _ in found.values():
            if zone is not None:
                claims.setdefault(identity(zone), {})[zone.id] = zone
        refused, problems = set(), []
        for key, zones in claims.items():
            if len(zones) < 2:
                continue
            keeper = holders.get(key) if holders.get(key) in zones else min(zones)
            for zone_id, zone in zones.items():
                if zone_id != keeper:
                    refused.add(zone_id)
                    problems.append((os_path(zone.path), (
                        f"{key[0]} {key[1]} is already zone {zones[keeper].path}; this "
                        f"cgroup is not counted as a zone while that one lives")))
        if refused:
            for cgroup_id, (zone, rel) in found.items():
                if zone is not None and zone.id in refused:
                    found[cgroup_id] = (None, rel)
        return problems

    def _missing_parents(self):
        problems = []
        for parent in self.config.plain_parents:
            if os.path.isdir(self.root + parent if parent != "/" else self.root):
                continue
            hint = ""
            if parent.startswith(self.root + "/"):
                hint = f" (paths are under the unified root: {parent[len(self.root):]})"
            problems.append((parent, (
                f"plain parent {parent}: no such cgroup under {self.root}{hint}; no zones "
                f"come from it until it exists (fix: create it, or correct [smartos] "
                f"plain_parents / --plain-parent)")))
        return problems

    def _warn_once(self, problems, live):
        """Log each problem once while its cgroup lives (a hostile tenant's
        cgroups cannot fill the log), names escaped (they cannot forge lines)."""
        now = {}
        with self._lock:
            for where, text in problems:
                now.setdefault(where, set()).add(text)
                if text not in self._warned.get(where, ()):
                    LOG.warning("smartos-telemetry: cgroup %s: %s",
                                display_text(name_text(_raw(where))), display_text(text))
            self._warned = {w: t for w, t in now.items()
                            if w in live or w in self.config.plain_parents}

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
        """The cgroup's path under the unified root (:func:`name_text`), or None."""
        entry = self._lookup(cgroup_id)
        return name_text(_raw(entry[1])) if entry else None

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
                LOG.debug("cgroup %d (%s) is gone", cgroup_id, name_text(_raw(rel)))
        return (zone, rel, now) if alive else None
