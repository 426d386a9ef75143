"""The attribution step: engine rows -> rows keyed by the zone they belong to."""

from smartos_telemetry.attribution import HOST_ROW, Attribution, ZoneKeys
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Histogram, Snapshot
from smartos_telemetry.zones import Zone


def snap(rows, action="count", health=None):
    return Snapshot("dtrace", {"a": Aggregation("a", action, rows)},
                    health=health or EngineHealth())


def test_zone_keys_find_a_smartos_zone_by_zoneid_and_by_zonename():
    web = Zone(5, "web01", "joyent", "uuid-a", attributes=(("zonename", "uuid-a"),))
    db = Zone(7, "db", "lx")
    keys = ZoneKeys([web, db])
    assert keys.get(5) is web and keys.get("uuid-a") is web and keys.get(7) is db
    assert keys.get(6) is None and "uuid-a" in keys
    assert set(keys.keys()) == {5, "uuid-a", 7}


def test_zonename_and_zoneid_rows_of_one_zone_meet_under_its_id():
    web = Zone(5, "web01", "joyent", attributes=(("zonename", "z-web"),))
    keys = ZoneKeys([web])
    out = Attribution(by_zone_id=True).attribute({"s.d": snap({(5,): 2, ("z-web",): 3})}, keys)
    assert out["s.d"]["a"].rows == {(5,): 5}
    # the agent keeps a zone's own keys: the zonename outlives a zone reboot
    engine = {"s.d": snap({(5,): 2, ("z-web",): 3})}
    assert Attribution().attribute(engine, keys) is engine


def test_child_cgroups_roll_up_and_their_owner_is_remembered():
    vm = Zone(10, "vm", "libvirt")
    children = {11: vm, 12: vm}
    attribution = Attribution(resolve=children.get)
    keys = ZoneKeys([vm])
    hist = Histogram.from_counts([(1, 1, 2)])
    first = attribution.attribute(
        {"r": snap({(10,): hist, (11,): hist, (99,): hist}, "quantize")}, keys)
    assert first["r"]["a"].rows == {(10,): Histogram.from_counts([(1, 1, 4)]),
                                    (99,): hist}  # no zone's: left as it is
    del children[11]  # the child cgroup is gone from the walk; its rows are not
    again = attribution.attribute({"r": snap({(10,): 1, (11,): 2, (12,): 4})}, keys)
    assert again["r"]["a"].rows == {(10,): 7}
    attribution.forget_owners()  # a new engine
    fresh = attribution.attribute({"r": snap({(11,): 2})}, keys)
    assert fresh["r"]["a"].rows == {(11,): 2}


def test_the_host_row_takes_keys_of_no_zone_and_a_filtered_out_zone_is_left_out():
    a, b = Zone(10, "a", "cgroup"), Zone(20, "b", "cgroup")
    children = {11: a, 21: b}
    everything = Attribution(resolve=children.get, host_row=True)
    out = everything.attribute({"t": snap({(10,): 1, (11,): 1, (21,): 4, (99,): 2, (1,): 3})},
                               ZoneKeys([a, b]))
    assert out["t"]["a"].rows == {(10,): 2, (20,): 4, (HOST_ROW,): 5}
    # zone b not among the zones: its child is b's (not the host's), left out
    filtered = Attribution(resolve=children.get, host_row=True)
    out = filtered.attribute({"t": snap({(10,): 1, (21,): 4, (99,): 2})}, ZoneKeys([a]))
    assert out["t"]["a"].rows == {(10,): 1, (HOST_ROW,): 2}
    # no host row (the agent): rolled up all the same, the rest left to the
    # reducer's zones, which never samples them
    agent = Attribution(resolve=children.get)
    out = agent.attribute({"t": snap({(10,): 1, (21,): 4, (20,): 1, (99,): 2})}, ZoneKeys([a]))
    assert out["t"]["a"].rows == {(10,): 1, (20,): 5, (99,): 2}


def test_scripts_sharing_one_snapshot_share_its_attributed_one():
    shared = snap({(10,): 1}, health=EngineHealth(drops={"x": 3}))
    out = Attribution().attribute({"a.d": shared, "b.d": shared, "c.d": snap({})},
                                  ZoneKeys([]))
    assert out["a.d"] is out["b.d"] and out["a.d"] is not out["c.d"]
    assert out["a.d"].health.total_drops == 3
