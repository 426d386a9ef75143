"""SmartOS zones: the VMs ``vmadm`` manages, joined with their live zoneids.

On a SmartOS compute node every Nova instance is a zone whose zonename is
the VM UUID, which is the instance UUID; ``owner_uuid`` is the project.

Two sources, two speeds:

* **vmadm** (``vmadm lookup -j -o FIELDS``): what each VM *is* -- uuid,
  zonename, alias, brand (joyent, joyent-minimal, builder, lx, kvm, bhyve),
  state, owner_uuid, billing_id, cpu_cap, max_physical_memory, zfs_io_priority,
  nics.  vmadm is a node.js program that reads every zone's configuration:
  slow (hundreds of ms to seconds), so :class:`VmadmInventory` caches its answer for
  ``refresh_interval`` and re-runs it early (at most once per
  ``min_refresh_interval``) when a running zone is not in the cache.
* **zoneadm** (``zoneadm list -p``, one line
  ``zoneid:zonename:state:zonepath:uuid:brand:ip-type:debugid`` per zone
  that has a zoneid, the zonepath's ``:`` escaped as ``\\:``; illumos
  ``usr/src/cmd/zoneadm/zoneadm.c`` ``zone_print()``): which zones are up
  *now*, under which zoneid.  zoneids change on every boot, so they are
  never cached for long (``zoneid_ttl``).

Why zoneadm and not the ``zones:*:zone_misc`` kstat instances for the
zoneids: zoneadm reads the kernel's own zone table (``zone_list(2)``), a
documented parsable format carrying the full zonename (kstat names are cut at
30 characters), the zone state and the brand; it lists a zone from the
moment it has an id, before its kstats are installed; and it keeps the zone
layer independent of the counters, which need no zoneid at all
(``smartos_telemetry.meters.kstat_counters`` matches kstats by their full
``zonename`` field).  It is a small C program, cheap enough to run on every
zoneid miss.

A failing command (missing, not executable, timing out, exiting non-zero,
printing something that does not parse) raises :class:`CommandFailed`,
naming the command, what happened and the fix -- unless the last good answer
is younger than its bound (``max_stale`` for vmadm, ``zoneid_max_stale`` for
zoneadm), which is then used, with a warning.

The global zone (zoneid 0, zonename ``global``) is never a tenant.
"""

import dataclasses
import json
import re
import threading
import time

from oslo_log import log as logging

from smartos_telemetry.commands import CommandFailed, run_command
from smartos_telemetry.zones import Zone

LOG = logging.getLogger(__name__)

GLOBAL_ZONE = "global"
#: vmadm's brands (smartos-live src/vm/man/vmadm.8.md "brand"; proptable.js
#: BRAND_OPTIONS); an entry of another brand is still a VM
BRANDS = frozenset({"joyent", "joyent-minimal", "builder", "lx", "kvm", "bhyve"})
VMADM_FIELDS = ("uuid", "zonename", "alias", "brand", "state", "owner_uuid", "billing_id",
                "cpu_cap", "max_physical_memory", "zfs_io_priority", "nics")
#: vmadm's billing_id when none was set (vmadm.8.md, billing_id: "default:
#: 00000000-0000-0000-0000-000000000000"): no billing category
NO_BILLING_ID = "00000000-0000-0000-0000-000000000000"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}\Z")
@dataclasses.dataclass(frozen=True)
class Nic:
    """One of a VM's vnics, as vmadm describes it.

    ``interface`` is the name inside the zone and in the per-vnic kstats:
    ``net0``, ``net1``... -- ``eth0``... in lx zones (smartos-live
    proptable.js, the lx brand's ``interface_prefix``; VM.js).  ``ips`` are
    the vnic's addresses as vmadm lists them in ``nics.*.ips`` (CIDR
    addresses, ``dhcp``, ``addrconf``); a VM that has only the deprecated
    ``nics.*.ip`` (vmadm.8.md) has that one address.
    """

    interface: str
    mac: str = None
    nic_tag: str = None
    ips: tuple = ()
    vlan_id: int = None
    primary: bool = False


@dataclasses.dataclass(frozen=True)
class VM:
    """One VM of ``vmadm``; ``zoneid`` is set when the zone is up (from zoneadm)."""

    uuid: str
    zonename: str
    brand: str
    alias: str = None
    state: str = None
    owner_uuid: str = None
    #: the billing category (vmadm.8.md: "which billing category this VM
    #: should fall into"; a UUID): what the VM is sold as, its flavor
    billing_id: str = None
    cpu_cap: int = None             # percent of one CPU; None: uncapped
    max_physical_memory: int = None  # MiB
    zfs_io_priority: int = None
    nics: tuple = ()
    zoneid: int = None

    def metadata(self):
        """What Ceilometer's resource metadata takes from vmadm."""
        return {
            "display_name": self.alias or self.uuid,
            "project_id": self.owner_uuid,
            "instance_id": self.uuid,
            "zonename": self.zonename,
            "brand": self.brand,
            "state": self.state,
            "cpu_cap": self.cpu_cap,
            "max_physical_memory": self.max_physical_memory,
            "zfs_io_priority": self.zfs_io_priority,
            **({"flavor_id": self.billing_id} if self.billing_id else {}),
        }

    def zone(self):
        """The :class:`Zone` of a VM that is up (``zoneid`` set)."""
        attrs = {k: v for k, v in self.metadata().items()
                 if v is not None and k not in ("instance_id", "state")}
        return Zone(id=self.zoneid, name=self.alias or self.uuid, kind=self.brand,
                    instance_uuid=self.uuid, path=None, attributes=tuple(sorted(attrs.items())))


# -- parsing -------------------------------------------------------------------

def _int(value):
    """An integer field of vmadm's JSON, or None (absent, null, not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _str(value):
    return value if isinstance(value, str) and value else None


def _billing_id(value):
    """``billing_id``, or None where it is unset (absent, or vmadm's default)."""
    value = _str(value)
    return None if value is None or value == NO_BILLING_ID else value


def _ips(nic):
    """``nics.*.ips``, or the deprecated ``nics.*.ip`` where it is all there is."""
    ips = nic.get("ips")
    if isinstance(ips, list):
        return tuple(ip for ip in ips if _str(ip))
    ip = _str(nic.get("ip"))
    return (ip,) if ip else ()


def _nics(value):
    if not isinstance(value, list):
        return ()
    out = []
    for nic in value:
        if isinstance(nic, dict) and _str(nic.get("interface")):
            out.append(Nic(nic["interface"], _str(nic.get("mac")), _str(nic.get("nic_tag")),
                           _ips(nic), _int(nic.get("vlan_id")), nic.get("primary") is True))
    return tuple(out)


def parse_vmadm(text):
    """``(vms by zonename, skipped)`` from ``vmadm lookup -j`` (a JSON array of
    VM objects) or ``vmadm get`` (one object).

    Entries that are not objects, lack a UUID ``uuid`` or a brand, or are the
    global zone are skipped and counted; fields of the wrong type read as
    absent.  Raises ValueError if ``text`` is not JSON of either shape.
    """
    data = json.loads(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array of VM objects, got {type(data).__name__}")
    vms, skipped = {}, 0
    for entry in data:
        uuid = entry.get("uuid") if isinstance(entry, dict) else None
        if not isinstance(uuid, str) or not _UUID.match(uuid) or not _str(entry.get("brand")):
            skipped += 1
            continue
        zonename = _str(entry.get("zonename")) or uuid
        if zonename == GLOBAL_ZONE:
            skipped += 1
            continue
        vms[zonename] = VM(
            uuid=uuid, zonename=zonename, brand=entry["brand"], alias=_str(entry.get("alias")),
            state=_str(entry.get("state")), owner_uuid=_str(entry.get("owner_uuid")),
            billing_id=_billing_id(entry.get("billing_id")),
            cpu_cap=_int(entry.get("cpu_cap")) or None,
            max_physical_memory=_int(entry.get("max_physical_memory")),
            zfs_io_priority=_int(entry.get("zfs_io_priority")), nics=_nics(entry.get("nics")))
    return vms, skipped


def _split_escaped(line):
    """Split a ``zoneadm list -p`` line on ``:``; ``\\:`` is an escaped ``:``
    (zoneadm.c zone_print() escapes the zonepath's), and so, for safety,
    ``\\\\`` a backslash."""
    fields, cur, i = [], [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            i += 2
            continue
        if c == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    fields.append("".join(cur))
    return fields


@dataclasses.dataclass(frozen=True)
class LiveZone:
    """One line of ``zoneadm list -p``."""

    zoneid: int
    zonename: str
    state: str
    brand: str


def parse_zoneadm(text):
    """``(live zones by zonename, malformed lines)`` from ``zoneadm list -p``.

    The global zone and zones without an id (``-``) are left out; a line
    with fewer than 6 fields or a non-numeric zoneid is counted as malformed.
    """
    zones, malformed = {}, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = _split_escaped(line.rstrip("\r"))
        if len(fields) < 6 or not fields[1] or not (fields[0] == "-" or fields[0].isdigit()):
            malformed += 1
            continue
        if fields[0] == "-" or fields[1] == GLOBAL_ZONE:
            continue
        zones[fields[1]] = LiveZone(int(fields[0]), fields[1], fields[2], fields[5])
    return zones, malformed


# -- the inventory ---------------------------------------------------------------

class _LastGood:
    """The last good answer of a command, and when it was had."""

    def __init__(self):
        self.value = None
        self.at = None
        self.error = None

    def age(self, now):
        return None if self.at is None else now - self.at


class VmadmInventory:
    """The VMs of this host (from vmadm) with their live zoneids (from zoneadm).

    ``vmadm`` and ``zoneadm`` are the commands' paths; ``*_timeout`` bound
    each run (seconds).  ``refresh_interval``: how long a vmadm answer is
    used before it is asked again; ``min_refresh_interval``: the least time
    between two vmadm runs, also for early runs on an unknown zone;
    ``max_stale``: how long the last good vmadm answer stands in for a
    failing vmadm.  ``zoneid_ttl``, ``zoneid_min_refresh_interval``,
    ``zoneid_max_stale``: the same for zoneadm.
    """

    def __init__(self, vmadm="/usr/sbin/vmadm", zoneadm="/usr/sbin/zoneadm",
                 vmadm_timeout=60.0, zoneadm_timeout=10.0, refresh_interval=300.0,
                 min_refresh_interval=10.0, max_stale=1800.0, zoneid_ttl=10.0,
                 zoneid_min_refresh_interval=1.0, zoneid_max_stale=60.0,
                 clock=time.monotonic):
        self.vmadm_argv = [vmadm, "lookup", "-j", "-o", ",".join(VMADM_FIELDS)]
        self.zoneadm_argv = [zoneadm, "list", "-p"]
        self.vmadm_timeout = vmadm_timeout
        self.zoneadm_timeout = zoneadm_timeout
        self.refresh_interval = refresh_interval
        self.min_refresh_interval = min_refresh_interval
        self.max_stale = max_stale
        self.zoneid_ttl = zoneid_ttl
        self.zoneid_min_refresh_interval = zoneid_min_refresh_interval
        self.zoneid_max_stale = zoneid_max_stale
        self.clock = clock
        self._lock = threading.Lock()
        self._vms = _LastGood()
        self._live = _LastGood()
        self._vmadm_tried = None
        self._zoneadm_tried = None
        self._not_vms = set()   # zones up that the latest vmadm answer lacks
        self.vmadm_runs = 0     # runs of each command, for tests and stats
        self.zoneadm_runs = 0

    # the two commands ------------------------------------------------------------
    def _run_vmadm(self):
        self.vmadm_runs += 1
        fix = (f"check that {self.vmadm_argv[0]} exists and runs as this user (root, in the "
               f"global zone) and answers within {self.vmadm_timeout:g} s, or set the vmadm "
               f"path/timeout options")
        text = run_command(self.vmadm_argv, self.vmadm_timeout, fix)
        try:
            vms, skipped = parse_vmadm(text)
        except ValueError as exc:
            raise CommandFailed(self.vmadm_argv, f"output is not vmadm's JSON: {exc}",
                                fix) from exc
        if skipped:
            LOG.warning("%s: skipped %d entries that are not VMs (no UUID uuid or brand, "
                        "or the global zone)", self.vmadm_argv[0], skipped)
        return vms

    def _run_zoneadm(self):
        self.zoneadm_runs += 1
        fix = (f"check that {self.zoneadm_argv[0]} exists and runs in the global zone, or "
               f"set the zoneadm path/timeout options")
        live, malformed = parse_zoneadm(run_command(self.zoneadm_argv, self.zoneadm_timeout,
                                                    fix))
        if malformed:
            LOG.warning("%s: skipped %d malformed lines", self.zoneadm_argv[0], malformed)
        return live

    def _get(self, cache, run, fresh_for, stale_for, min_interval, tried_attr, force):
        """The cached answer while fresh (or ``force``: a new one), else a new
        one; a failing command raises, unless its last good answer is younger
        than ``stale_for``.  The command runs at most once per
        ``min_interval``: in between, a failure is answered from the cache
        (or raised again) without running it."""
        now = self.clock()
        age = cache.age(now)
        tried = getattr(self, tried_attr)
        recently = tried is not None and now - tried < min_interval
        wanted = force or age is None or age >= fresh_for
        if not wanted or recently and cache.error is None and age is not None:
            return cache.value
        if recently and cache.error is not None:
            return self._fallback(cache, cache.error, age, stale_for)
        setattr(self, tried_attr, now)
        try:
            cache.value, cache.at, cache.error = run(), now, None
        except CommandFailed as exc:
            cache.error = exc
            if age is not None and age < stale_for:
                LOG.warning("%s; using the answer from %.0f s ago (kept up to %.0f s)",
                            exc, age, stale_for)
            return self._fallback(cache, exc, age, stale_for)
        return cache.value

    @staticmethod
    def _fallback(cache, exc, age, stale_for):
        if age is not None and age < stale_for:
            return cache.value
        raise exc

    def vms(self, force=False):
        """``{zonename: VM}`` from vmadm (cached), without zoneids."""
        with self._lock:
            return self._get(self._vms, self._run_vmadm, self.refresh_interval,
                             self.max_stale, self.min_refresh_interval, "_vmadm_tried", force)

    def live_zones(self, force=False):
        """``{zonename: LiveZone}`` from zoneadm (cached for ``zoneid_ttl``)."""
        with self._lock:
            return self._get(self._live, self._run_zoneadm, self.zoneid_ttl,
                             self.zoneid_max_stale, self.zoneid_min_refresh_interval,
                             "_zoneadm_tried", force)

    @property
    def last_error(self):
        """The last CommandFailed of either command that has not been followed
        by a success, or None."""
        return self._vms.error or self._live.error

    def inventory(self, refresh_zoneids=False):
        """Every VM, with its zoneid where it is up (``{zonename: VM}``).

        A zone that is up but unknown to the cached vmadm answer makes vmadm
        run again (no more than once per ``min_refresh_interval``, and once
        per zone while it is up: zones that are not VMs are not a reason to
        run vmadm every poll).
        """
        live = self.live_zones(force=refresh_zoneids)
        vms = self.vms()
        self._not_vms &= live.keys()  # forgotten once they are down
        missing = {name for name in live if name not in vms} - self._not_vms
        if missing:
            vms = self.vms(force=True)
            if self._vms.at is not None and self._vms.at >= self._live.at:
                # up, and unknown to a vmadm answer had since: not VMs; they
                # do not make vmadm run early again
                self._not_vms |= {name for name in missing if name not in vms}
        out = {}
        for name, vm in vms.items():
            lz = live.get(name)
            out[name] = dataclasses.replace(vm, zoneid=lz.zoneid, state=lz.state) if lz \
                else vm
        return out


class SmartOSZones:
    """The zone layer on SmartOS: VMs that are up, as :class:`Zone` objects.

    ``Zone(id=zoneid, name=alias or uuid, kind=brand, instance_uuid=uuid,
    path=None, attributes=metadata)``; zones up but unknown to vmadm (not
    VMs) are left out.
    """

    def __init__(self, inventory=None, **inventory_options):
        self.inventory = inventory or VmadmInventory(**inventory_options)

    def _up(self, refresh_zoneids=False):
        return {name: vm for name, vm in self.inventory.inventory(refresh_zoneids).items()
                if vm.zoneid is not None}

    def zones(self):
        """Every VM that is up, sorted by zoneid."""
        return sorted(vm.zone() for vm in self._up().values())

    def vms(self):
        """``{zonename: VM}`` of every VM, up or not (nics, metadata)."""
        return self.inventory.inventory()

    def resolve(self, zoneid):
        """The Zone with ``zoneid``, or None (global zone, not a VM, gone).

        A miss asks zoneadm again (a zone may have rebooted under a new id).
        """
        for refresh in (False, True):
            for vm in self._up(refresh_zoneids=refresh).values():
                if vm.zoneid == zoneid:
                    return vm.zone()
        return None

    def by_zonename(self, name):
        """The Zone whose zonename (or VM UUID) is ``name``, or None if not up."""
        up = self._up()
        vm = up.get(name) or next((v for v in up.values() if v.uuid == name), None)
        return vm.zone() if vm else None

    def metadata(self, zone):
        """Ceilometer resource metadata of ``zone`` (a Zone, zonename or UUID):
        display_name (alias), project_id (owner_uuid), instance_id, zonename,
        brand, state, cpu_cap, max_physical_memory (MiB), zfs_io_priority, and
        flavor_id (billing_id) where set; {} if unknown."""
        uuid = zone.instance_uuid if isinstance(zone, Zone) else zone
        for vm in self.vms().values():
            if uuid in (vm.uuid, vm.zonename):
                return vm.metadata()
        return {}

    def uuids_by_zonename(self):
        """``{zonename: VM UUID}`` of every VM (what the kstat counters key by)."""
        return {name: vm.uuid for name, vm in self.vms().items()}

    def nic(self, uuid, interface):
        """The :class:`Nic` ``interface`` of VM ``uuid``, or None."""
        for vm in self.vms().values():
            if vm.uuid == uuid:
                return next((n for n in vm.nics if n.interface == interface), None)
        return None
