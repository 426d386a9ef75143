"""Engine snapshots -> snapshots whose rows are keyed by the zone they belong to."""

import dataclasses

from smartos_telemetry.snapshot import Aggregation, Snapshots, merge_values

HOST_ROW = None  # the key of the host row: the host and keys of no zone


class Attribution:
    """Re-keys each cycle's snapshots by zone, remembering child cgroups' owners.

    ``resolve(key)``: the zone layer's lookup of a key that is no zone's own
    (a child cgroup id: its zone, or None), used where the platform rolls
    child cgroups up.  ``host_row``: count rows of no zone under
    :data:`HOST_ROW` (``smartos-dtrace-top``'s host row) instead of leaving
    them out.  ``by_zone_id``: a zone's rows under its id whatever key the
    script used (a SmartOS zone's zonename rows and zoneid rows meet); else
    a zone's own keys stay as recorded (the agent: a zonename outlives the
    zone's reboots, and its running totals follow it).

    A child cgroup's zone is remembered once found (cgroup ids are never
    reused), so its rows keep counting in the zone after the cgroup is gone
    from the zone layer's walk: the zone's totals never drop.  A key of no
    zone is looked at again each cycle -- a zone that was not yet known takes
    its rows once it is (the host row may then count fewer events than the
    cycle before; the reducer reads that as a reset, for that row only).
    """

    def __init__(self, resolve=None, host_row=False, by_zone_id=False):
        self.resolve = resolve
        self.host_row = host_row
        self.by_zone_id = by_zone_id
        self.owners = {}  # child key -> the id of the zone it rolls up to
        # the final values of gone child cgroups of zones that live on (their
        # rows were deleted from the engine): {aggregation: {zone key: value}}
        self.retired = {}

    def forget_owners(self):
        """A new engine: new maps, counting from zero; nothing of the old
        keys is left."""
        self.owners.clear()
        self.retired.clear()

    def retire(self, agg, gone, delivered):
        """Keep the final rows of ``gone`` child keys whose zone is still
        counted (not ``delivered``) as that zone's retired base, added to its
        rows from now on, so that its totals never drop."""
        for key, value in agg.rows.items():
            if not key or key[0] not in gone:
                continue
            owner = self.owners.get(key[0])
            if owner is None or owner in delivered:
                continue
            extra = self.retired.setdefault(agg.name, {})
            target = (owner, *key[1:])
            extra[target] = merge_values(agg.action, extra[target], value) \
                if target in extra else value

    def forget_zones(self, zones):
        """Zones gone, their last samples delivered: their children's owners
        and retired values go."""
        for key in [k for k, owner in self.owners.items() if owner in zones]:
            del self.owners[key]
        for extra in self.retired.values():
            for key in [k for k in extra if k[0] in zones]:
                del extra[key]

    def row_key(self, key, zone_keys):
        """The zone id ``key`` counts under; HOST_ROW; or the key unchanged
        when it is no zone's and there is no host row (left to the reducer's
        ``zones``, which never samples it)."""
        zone = zone_keys.get(key)
        if zone is not None:
            return zone.id if self.by_zone_id else key
        owner = self.owners.get(key)
        if owner is None and self.resolve is not None and isinstance(key, int):
            found = self.resolve(key)
            if found is not None:
                owner = self.owners[key] = found.id
        if owner is not None:
            return owner if owner in zone_keys or not self.host_row else _LEFT_OUT
        return HOST_ROW if self.host_row else key

    def attribute(self, snapshots, zone_keys):
        """``{script: Snapshot}`` with every row under :meth:`row_key` of its
        first key (rows that meet under one key merged, as the action merges).
        Scripts that share one snapshot (a combined D program) share its
        attributed one."""
        if self.resolve is None and not (self.host_row or self.by_zone_id or self.retired):
            return snapshots  # nothing to re-key (SmartOS keys are the zones' own)
        memo = {}

        def new_key(key):
            if not key:
                return key
            first = key[0]
            if first not in memo:
                memo[first] = self.row_key(first, zone_keys)
            target = memo[first]
            if target is _LEFT_OUT:
                return None
            return (target, *key[1:])

        done = []  # (engine snapshot, attributed snapshot)
        out = Snapshots(health=getattr(snapshots, "health", None) or Snapshots(snapshots).health)
        for script, snap in snapshots.items():
            new = next((a for e, a in done if e is snap), None)
            if new is None:
                new = self._with_retired(snap.rekeyed(new_key))
                done.append((snap, new))
            out[script] = new
        return out


    def _with_retired(self, snap):
        """``snap`` with the retired values added to their zones' rows."""
        if not self.retired:
            return snap
        aggregations = dict(snap.aggregations)
        for name, extra in self.retired.items():
            agg = aggregations.get(name)
            if agg is None:
                continue
            rows = dict(agg.rows)
            for key, value in extra.items():
                rows[key] = merge_values(agg.action, rows[key], value) if key in rows else value
            aggregations[name] = Aggregation(name, agg.action, rows)
        return dataclasses.replace(snap, aggregations=aggregations)


#: a row of a zone that is filtered out (no row of its own, not the host's)
_LEFT_OUT = object()
