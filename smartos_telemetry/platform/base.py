"""What a platform decides for the agent and for ``smartos-dtrace-top``."""

from smartos_telemetry.engines.select import choose_engine
from smartos_telemetry.meters import catalogue


class Platform:
    """One platform: its zone layer and the choices that follow from it."""

    #: the catalogue's key for this platform's sources ("linux", "smartos")
    name = None
    #: the name of the row for the host and keys of no zone (smartos-dtrace-top)
    host_row_name = None
    #: True where scripts key rows by cgroup id and a zone's child cgroups
    #: (a VM's vCPU threads under its scope) must count in the zone: the
    #: owners are remembered, and gone child cgroups' final values kept
    rolls_up_children = False
    #: True where a zone that is gone is known by the walk no longer finding
    #: it (cgroup ids are never reused): its last samples are delivered once,
    #: then its rows are deleted from the engines and its totals forgotten
    tracks_departed_zones = False
    #: True where the kstat counter pollsters have a source (SmartOS)
    has_kstat_counters = False
    #: True where the cgroup-v2 counter pollsters have a source (Linux)
    has_cgroup_counters = False
    #: the engine ``auto`` asks for here ("auto": the first that runs)
    auto_engine = "auto"

    def __str__(self):
        return self.name

    def choose_engine(self, requested="auto"):
        """``(engine name, reason)``; raises EngineUnavailable."""
        return choose_engine(self.auto_engine if requested == "auto" else requested)

    def scripts(self, engine):
        """The shipped scripts ``engine`` runs here for the catalogue's meters."""
        return catalogue.scripts_for(self.name, engine)

    def zone_layer(self, options=None, plain_parents=()):
        """The zone layer: from the ``[smartos]`` option group ``options``
        (the agent) or the defaults (``smartos-dtrace-top``), with
        ``plain_parents`` added (``--plain-parent``)."""
        raise NotImplementedError

    def cpu_reader(self, layer):
        """A reader of each zone's CPU use (``read({row: path})``), or None."""
        return None
