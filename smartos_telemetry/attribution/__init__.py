"""Attribution: which zone each row of an engine snapshot belongs to.

The step between the engines and the reducer (README "Data flow").  Scripts
key their rows by what the kernel knows -- a cgroup id on Linux, a zoneid or
zonename on SmartOS -- and not every key is a zone's own:

* :class:`~smartos_telemetry.attribution.zone_keys.ZoneKeys`: the zones by
  every key a script may record them under (id, and on SmartOS the
  zonename, so zoneid <-> zonename), built once per cycle from the zone list;
* :class:`~smartos_telemetry.attribution.rows.Attribution`: engine snapshots
  -> attributed snapshots, a child cgroup's rows counted under its zone (its
  owner remembered while the engine may hold rows for it) and, where asked,
  the rows of no zone under one host row.
"""

from smartos_telemetry.attribution.rows import HOST_ROW, Attribution
from smartos_telemetry.attribution.zone_keys import ZoneKeys

__all__ = ["HOST_ROW", "Attribution", "ZoneKeys"]
