"""Engine snapshots -> snapshots whose rows are keyed by the zone they belong to."""

HOST_ROW = None  # the key of the host row: the host and keys of no zone


class Attribution:
    """Re-keys each cycle's snapshots by zone, remembering child cgroups' owners.

    ``resolve(key)``: the zone layer's lookup of a key that is no zone's own
    (a child cgroup id: its zone, or None), used where the platform rolls
    child cgroups up.  ``host_row``: count rows of no zone under
    :data:`HOST_ROW` (``smartos-dtrace-top``'s host row) instead of leaving
    them out.

    A child cgroup's zone is remembered once found (cgroup ids are never
    reused), so its rows keep counting in the zone after the cgroup is gone
    from the zone layer's walk: the zone's totals never drop.  A key of no
    zone is looked at again each cycle -- a zone that was not yet known takes
    its rows once it is (the host row may then count fewer events than the
    cycle before; the reducer reads that as a reset, for that row only).
    """

    def __init__(self, resolve=None, host_row=False):
        self.resolve = resolve
        self.host_row = host_row
        self.owners = {}  # child key -> the id of the zone it rolls up to

    def forget_owners(self):
        """A new engine: new maps, nothing of the old keys is left."""
        self.owners.clear()

    def row_key(self, key, zone_keys):
        """The zone id ``key`` counts under; HOST_ROW; or the key unchanged
        when it is no zone's and there is no host row (left to the reducer's
        ``zones``, which never samples it)."""
        zone = zone_keys.get(key)
        if zone is not None:
            return zone.id
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
        out = {}
        for script, snap in snapshots.items():
            new = next((a for e, a in done if e is snap), None)
            if new is None:
                new = snap.rekeyed(new_key)
                done.append((snap, new))
            out[script] = new
        return out


#: a row of a zone that is filtered out (no row of its own, not the host's)
_LEFT_OUT = object()
