"""The platform this host is: SmartOS or Linux, decided in one place.

A :class:`~smartos_telemetry.platform.base.Platform` owns what differs
between them above the engines: the zone layer, the script set, the host
row's name, whether child cgroups roll up into their zone, what engine
``auto`` means and how a zone's CPU use is read.  Nothing outside this
package compares platform names; ``Platform.name`` is the catalogue's key.
"""

import os

from smartos_telemetry.errors import ConfigError

CHOICES = ("auto", "linux", "smartos")


def detect():
    """The Platform of this host (SunOS: SmartOS; anything else: Linux)."""
    return named("smartos" if os.uname().sysname == "SunOS" else "linux")


def named(name):
    """The Platform called ``name`` (``auto``: this host's)."""
    if name == "auto":
        return detect()
    if name == "linux":
        from smartos_telemetry.platform.linux import Linux
        return Linux()
    if name == "smartos":
        from smartos_telemetry.platform.smartos import SmartOS
        return SmartOS()
    raise ConfigError(f"unknown platform {name!r}; choose one of {', '.join(CHOICES)}")
