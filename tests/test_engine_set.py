"""The engine set below the meters: the caller hands it scripts, the engine
class says whether one engine runs several, health is summed once."""

from smartos_telemetry.engines import engine_set
from smartos_telemetry.engines.base import Engine
from smartos_telemetry.engines.bpftrace.engine import BpftraceEngine
from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.meters.reduce import HOST, SnapshotReducer
from smartos_telemetry.platform.linux import Linux
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Snapshot, Snapshots


def test_the_libdtrace_engine_combines_the_scripts_it_is_handed():
    scripts = Linux().scripts("dtrace")
    assert DTraceConsumer.combines_scripts and len(scripts) == 3
    [(engine, served)] = DTraceConsumer.for_scripts(scripts, label="linux meters")
    assert served == scripts and engine.script_name == "linux meters"
    for rel in scripts:
        assert f"/* ---- {rel} ---- */" in engine.source


def test_bpftrace_runs_one_engine_per_script():
    scripts = Linux().scripts("bpftrace")
    assert not BpftraceEngine.combines_scripts
    made = BpftraceEngine.for_scripts(scripts)
    assert [served for _, served in made] == [[rel] for rel in scripts]
    assert [e.script_name for e, _ in made] == scripts


class Pair(Engine):
    """One fake engine serving every script it is handed, with drops."""

    name = "fake"
    combines_scripts = True

    @classmethod
    def for_scripts(cls, relatives, options=None, label="meters"):
        return [(cls("", script_name=label), list(relatives))]

    @classmethod
    def available(cls):
        return None

    @classmethod
    def version(cls):
        return "0"

    def start(self):
        pass

    def snapshot(self):
        rows = {(7,): 3}
        return Snapshot("fake", {"retransmits": Aggregation("retransmits", "count", rows)},
                        health=self.health())

    def health(self):
        return EngineHealth(drops={"principal": 4}, restarts=1)

    def is_alive(self):
        return True

    def stop(self):
        pass

    def forget(self, first_keys):
        return len(first_keys)


def test_one_engine_for_two_scripts_is_snapshotted_and_counted_once(monkeypatch):
    monkeypatch.setattr(engine_set, "engine_class", lambda name: Pair)
    engines = engine_set.EngineSet("fake", ["linux/tcp.bt", "linux/runqueue.bt"])
    assert len(engines.engines) == 1
    assert engines.engine_for("linux/tcp.bt") is engines.engine_for("linux/runqueue.bt")
    snaps = engines.snapshot()
    assert isinstance(snaps, Snapshots)
    assert snaps["linux/tcp.bt"] is snaps["linux/runqueue.bt"]
    assert (snaps.health.total_drops, snaps.health.restarts) == (4, 1)  # not 8, 2
    assert engines.health() == snaps.health
    assert engines.forget({7}) == {"linux/tcp.bt", "linux/runqueue.bt"}


def test_the_reducer_takes_the_engine_set_s_health_figure():
    shared = Snapshot("x", {}, health=EngineHealth(drops={"principal": 9}))
    reducer = SnapshotReducer("linux", "bpftrace")
    # the set's one figure wins over the snapshots' own
    out = reducer.reduce(Snapshots({"linux/tcp.bt": shared, "linux/diskio.bt": shared},
                                   health=EngineHealth(drops={"principal": 5})))
    assert out["telemetry.engine.drops"].totals == [5]
    assert out["telemetry.engine.drops"].zones == (HOST,)
    # a plain dict: each distinct snapshot's health once
    again = SnapshotReducer("linux", "bpftrace")
    out = again.reduce({"linux/tcp.bt": shared, "linux/diskio.bt": shared})
    assert out["telemetry.engine.drops"].totals == [9]
