"""Zones by every key a script may record them under."""


class ZoneKeys:
    """``zones`` by id (cgroup id, SmartOS zoneid) and, where a zone has one,
    by zonename: the two keys the SmartOS scripts use for one zone."""

    __slots__ = ("_by_key",)

    def __init__(self, zones):
        by_key = {}
        for zone in zones:
            by_key[zone.id] = zone
            zonename = zone.attribute("zonename")
            if zonename:
                by_key[zonename] = zone
        self._by_key = by_key

    def get(self, key):
        """The zone recorded under ``key``, or None."""
        return self._by_key.get(key)

    def __contains__(self, key):
        return key in self._by_key

    def keys(self):
        """Every key of every zone (what the reducer may sample)."""
        return self._by_key.keys()
