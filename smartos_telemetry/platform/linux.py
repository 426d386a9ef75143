"""Linux: zones are tenant cgroups (cgroup v2), keyed by cgroup id."""

import dataclasses
import time

from smartos_telemetry.platform.base import Platform


class Linux(Platform):
    name = "linux"
    host_row_name = "(host)"
    rolls_up_children = True
    tracks_departed_zones = True
    has_cgroup_counters = True

    def zone_layer(self, options=None, plain_parents=()):
        from smartos_telemetry.zones.linux_cgroups import (
            CgroupZones,
            ZoneConfig,
            config_from_options,
        )

        config = config_from_options(options) if options is not None else ZoneConfig()
        if plain_parents:
            config = dataclasses.replace(
                config, plain_parents=config.plain_parents + tuple(plain_parents))
        return CgroupZones(config)

    def cgroup_counters(self, layer, ttl=900.0, max_zones=10000):
        """The per-zone counters from each zone's cgroup files
        (meters/cgroup_counters.py)."""
        from smartos_telemetry.meters.cgroup_counters import CgroupCounters

        return CgroupCounters(layer.root, ttl=ttl, max_zones=max_zones)

    def cpu_reader(self, layer):
        return CgroupCpu(layer.root)


class CgroupCpu:
    """CPU use of Linux zones from their cgroup's ``cpu.stat`` (``usage_usec``)."""

    def __init__(self, root, clock=time.monotonic):
        self.root = root.rstrip("/")
        self.clock = clock
        self._last = {}  # row id -> (usage_usec, when)

    def _usage(self, path):
        from smartos_telemetry.meters.cgroup_counters import parse_flat, read_file
        from smartos_telemetry.zones.linux_cgroups import os_path

        try:
            # a zone's path is text (linux_cgroups.name_text): the file's is its bytes
            return parse_flat(read_file(f"{self.root}{os_path(path)}/cpu.stat")).get(
                "usage_usec")
        except (OSError, ValueError):  # Malformed and UnicodeDecodeError are ValueErrors
            return None

    def read(self, paths):
        """``{row id: percent of one CPU since the last read}`` for ``{row id: cgroup
        path}`` (``""``: the root, i.e. the whole host); none for a new row."""
        now, out, seen = self.clock(), {}, {}
        for row_id, path in paths.items():
            usage = self._usage(path)
            if usage is None:
                continue
            seen[row_id] = (usage, now)
            prev = self._last.get(row_id)
            if prev and now > prev[1] and usage >= prev[0]:
                out[row_id] = 100.0 * (usage - prev[0]) / 1e6 / (now - prev[1])
        self._last = seen
        return out
