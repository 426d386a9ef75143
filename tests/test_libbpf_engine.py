"""The libbpf engine for real: the shipped CO-RE programs, real cgroups, real workloads.

Root, real kernel, real libbpf (runs in CI, never skipped).  Each test puts
known work in zone A and different work in neighbour zone B and checks
each zone's numbers against what the test did -- or against the kernel's
own accounting (``/proc/<pid>/schedstat``).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import zone_workloads as meters
from linux_workloads import (
    cgroup_id,
    check_direct_io_writes_per_zone,
    check_hogs_wait_longer_than_sleeper,
    check_tcp_connects_per_zone,
    python_in,
    scratch_cgroups,
    stop,
    total_ns,
    wait_for,
)

from smartos_telemetry.engines.libbpf.engine import LibbpfEngine
from smartos_telemetry.engines.select import choose_engine
from smartos_telemetry.errors import ConfigError, EngineUnavailable
from smartos_telemetry.meters import catalogue
from smartos_telemetry.scripts import script_path

pytestmark = pytest.mark.root

HOG = "print('ready', flush=True)\nwhile True: pass"
SLEEPER = "import time\nwhile True: time.sleep(0.001)"


def engine_for(script, **options):
    rel = f"linux/{script}"
    with open(script_path(rel), encoding="utf-8") as f:
        return LibbpfEngine(f.read(), rel, options)


def schedstat(pid):
    """``(run_delay ns, timeslices)`` summed over the threads of ``pid``."""
    delay = slices = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            _, d, n = (int(x) for x in f.read().split())
        delay += d
        slices += n
    return delay, slices


def joined_and_held(path, code):
    """A python process that has joined cgroup ``path`` and waits, blocked in
    its shell, until a line reaches its stdin (then it execs ``code``)."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && echo joined && read -r _ && exec "$@"',
         path, sys.executable, "-c", code],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "joined"
    return proc


def start_hogs(path, n):
    hogs = [python_in(path, HOG, stdout=subprocess.PIPE, text=True)
            for _ in range(n)]
    for hog in hogs:
        assert hog.stdout.readline().strip() == "ready"
    return hogs


def test_unavailable_reasons_and_bad_options():
    assert LibbpfEngine.available() is None  # this host: root, BTF, objects built
    assert LibbpfEngine.version().startswith("libbpf v1.")
    with pytest.raises(ConfigError, match="runq_design"):
        engine_for("runqueue.bpf.c", runq_design="fast")
    with pytest.raises(ConfigError, match="unknown libbpf engine option"):
        engine_for("runqueue.bpf.c", zones=3)
    with pytest.raises(ConfigError, match="shipped"):
        LibbpfEngine(open(script_path("linux/runqueue.bpf.c")).read(), "mine.c")


@pytest.mark.parametrize("design", ["sched_info", "wakeup_stamp"])
def test_cpu_hogs_wait_far_longer_in_the_run_queue_than_a_sleeper(design):
    with scratch_cgroups("hogs", "sleeper") as cg, \
            engine_for("runqueue.bpf.c", runq_design=design) as engine:
        assert engine.design == design
        hog_id, sleeper_id = cgroup_id(cg["hogs"]), cgroup_id(cg["sleeper"])
        hogs = start_hogs(cg["hogs"], 3)
        sleeper = python_in(cg["sleeper"], SLEEPER)
        try:
            time.sleep(1)
            settled = engine.snapshot()
            time.sleep(3)
            snap = engine.snapshot().delta(settled)
        finally:
            stop(*hogs, sleeper)
    check_hogs_wait_longer_than_sleeper(snap, hog_id, sleeper_id)


def test_run_queue_wait_per_zone_is_the_kernel_s_run_delay():
    """Zone A's waits, summed, are what its tasks' run_delay grew by (within 2%:
    the sum is read from the buckets, each at most 6.25% wide), one event per
    time slice; neighbour B's are B's."""
    with scratch_cgroups("a", "b") as cg, engine_for("runqueue.bpf.c") as engine:
        assert engine.design == "sched_info"
        a, b = cgroup_id(cg["a"]), cgroup_id(cg["b"])
        # What a task waited before it joined its zone (forked in the test's
        # cgroup, its shell starting) is in its run_delay but not the zone's;
        # the program records a task's waits at its switch-outs, so once every
        # task has joined and is blocked (switched out), the zone's histogram
        # and the tasks' run_delay are taken as the baselines of both sides.
        procs = []
        try:
            hogs = [joined_and_held(cg["a"], HOG) for _ in range(3)]
            procs += hogs
            sleepers = [joined_and_held(cg["b"], SLEEPER) for _ in range(2)]
            procs += sleepers
            assert wait_for(lambda: all(_state(p.pid) == "S" for p in procs), 5)
            base = {p.pid: schedstat(p.pid) for p in procs}
            settled = engine.snapshot()
            for p in procs:
                p.stdin.write("\n")
                p.stdin.flush()
            for hog in hogs:
                assert hog.stdout.readline().strip() == "ready"
            time.sleep(3)
            # stopped, each task has left its CPU: its last wait is recorded
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            assert wait_for(lambda: all(_state(p.pid) == "T" for p in procs), 5)
            truth = {z: [tuple(now - then for now, then in zip(schedstat(p.pid), base[p.pid],
                                                                strict=True)) for p in ps]
                     for z, ps in ((a, hogs), (b, sleepers))}
            snap = engine.snapshot().delta(settled)
        finally:
            stop(*procs)
    for zone, stats in truth.items():
        run_delay = sum(d for d, _ in stats)
        slices = sum(n for _, n in stats)
        measured = total_ns(snap["runq_ns"].rows[(zone,)])
        events = snap["runq_ns"].rows[(zone,)].count
        assert run_delay > 0
        assert abs(measured - run_delay) <= 0.02 * run_delay, (zone, measured, run_delay)
        assert abs(events - slices) <= 0.02 * slices + 2, (zone, events, slices)


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _all_threads(pid, state):
    return all(_state(f"{pid}/task/{tid}") == state for tid in os.listdir(f"/proc/{pid}/task"))


#: three threads hashing 1 MiB buffers: hashlib lets go of the GIL for
#: them, so they are three CPU hogs of one process
THREAD_HOGS = """
import hashlib, threading
data = bytes(1 << 20)
def hog():
    while True:
        hashlib.sha256(data).digest()
threads = [threading.Thread(target=hog, daemon=True) for _ in range(3)]
for t in threads:
    t.start()
print('ready', flush=True)
for t in threads:
    t.join()
"""


def moved_while_waiting(mover_code, n_mover_threads):
    """A CPU hog process (``mover_code``) in zone A beside two other hogs,
    moved to zone B by writing its pid to B's cgroup.procs while all of
    them compete for the CPUs: ``{zone: (waits summed by the engine, the
    kernel's run_delay growth)}`` for A (the other hogs, and the mover up to
    the move) and B (the mover after the move)."""
    with scratch_cgroups("a", "b") as cg, engine_for("runqueue.bpf.c") as engine:
        assert engine.design == "sched_info"
        a, b = cgroup_id(cg["a"]), cgroup_id(cg["b"])
        procs = []
        try:
            # baselines taken with every task joined and blocked (switched
            # out), as in test_run_queue_wait_per_zone_is_the_kernel_s_run_delay
            mover = joined_and_held(cg["a"], mover_code)
            procs.append(mover)
            others = [joined_and_held(cg["a"], HOG) for _ in range(2)]
            procs += others
            assert wait_for(lambda: all(_all_threads(p.pid, "S") for p in procs), 5)
            base = {p.pid: schedstat(p.pid)[0] for p in procs}
            settled = engine.snapshot()
            for p in procs:
                p.stdin.write("\n")
                p.stdin.flush()
            for p in procs:
                assert p.stdout.readline().strip() == "ready"
            assert len(os.listdir(f"/proc/{mover.pid}/task")) == n_mover_threads + (
                n_mover_threads > 1)  # and its main thread, blocked in join
            time.sleep(1.5)
            at_move = schedstat(mover.pid)[0]
            with open(os.path.join(cg["b"], "cgroup.procs"), "w") as f:
                f.write(str(mover.pid))
            time.sleep(3)
            # stopped, each task has left its CPU: its last wait is recorded
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            assert wait_for(lambda: all(_all_threads(p.pid, "T") for p in procs), 5)
            end = {p.pid: schedstat(p.pid)[0] for p in procs}
            snap = engine.snapshot().delta(settled)
        finally:
            stop(*procs)
    truth = {a: sum(end[p.pid] - base[p.pid] for p in others) + at_move - base[mover.pid],
             b: end[mover.pid] - at_move}
    rows = snap["runq_ns"].rows
    return {z: (total_ns(rows[(z,)]) if (z,) in rows else 0, truth[z]) for z in (a, b)}


@pytest.mark.parametrize("mover_code, threads", [(HOG, 1), (THREAD_HOGS, 3)],
                         ids=["one-task", "thread-group"])
def test_a_task_moved_to_another_zone_has_its_later_waits_there(mover_code, threads):
    """The zone slot each task caches is looked up again after any cgroup
    migration (runq_migrate), for every thread of a moved process: its later
    waits go to the new zone, its earlier ones stay in the old, each within
    2% of the kernel's run_delay."""
    for zone, (measured, run_delay) in moved_while_waiting(mover_code, threads).items():
        assert run_delay > 0.3e9, (zone, run_delay)  # hogs on 2 CPUs: seconds of waits
        assert abs(measured - run_delay) <= 0.02 * run_delay, (zone, measured, run_delay)


def test_a_deleted_zone_is_reclaimed_from_the_kernel_and_keeps_its_counts():
    with engine_for("runqueue.bpf.c", reclaim_interval=0) as engine:
        with scratch_cgroups("gone", "stays") as cg:
            gone, stays = cgroup_id(cg["gone"]), cgroup_id(cg["stays"])
            procs = [python_in(cg["gone"], SLEEPER), python_in(cg["stays"], SLEEPER)]
            time.sleep(1)
            stop(procs[0])
            before = engine.snapshot()
            assert {gone, stays} <= engine.kernel_keys("runq_ns")
            last = before["runq_ns"].rows[(gone,)]
            assert last.count > 100
            os.rmdir(cg["gone"])
            after = engine.snapshot()  # reclaims: the cgroup is gone
            keys = engine.kernel_keys("runq_ns")
            assert gone not in keys and stays in keys
            assert engine.reclaimed >= 1
            # its final counts are still delivered, and stay (totals never drop)
            assert after["runq_ns"].rows[(gone,)] == last
            time.sleep(0.3)
            later = engine.snapshot()
            assert later["runq_ns"].rows[(gone,)] == last
            assert later["runq_ns"].rows[(stays,)].count > after["runq_ns"].rows[(stays,)].count
            stop(procs[1])


def test_snapshots_taken_while_the_programs_write_only_ever_grow():
    """The read in C runs while the kernel adds events to the same buckets:
    snapshot after snapshot a busy zone's buckets never lose a count or
    vanish, none reads 0, and once its tasks are gone the last snapshot is
    what reading its buckets one by one gives."""
    from smartos_telemetry.engines.libbpf.maps import row_value
    from smartos_telemetry.snapshot import PackedHistogram

    with engine_for("runqueue.bpf.c", reclaim_interval=1e9) as engine, \
            scratch_cgroups("busy") as cg:
        busy = cgroup_id(cg["busy"])
        procs = start_hogs(cg["busy"], 3) + [python_in(cg["busy"], SLEEPER)]
        try:
            last, reads, deadline = {}, 0, time.monotonic() + 2
            while time.monotonic() < deadline:
                hist = engine.snapshot()["runq_ns"].rows.get((busy,))
                time.sleep(0.005)
                if hist is None:
                    continue
                assert type(hist) is PackedHistogram and min(hist.counts) > 0
                now = dict(zip(hist.lows, hist.counts, strict=True))
                assert all(now.get(low, 0) >= n for low, n in last.items()), (last, now)
                last, reads = now, reads + 1
        finally:
            stop(*procs)
        assert reads > 50 and sum(last.values()) > 1000
        time.sleep(0.2)
        final = engine.snapshot()["runq_ns"].rows[(busy,)]
        slot = engine._zones.slot_of(busy)
        assert final == row_value(engine._zones.maps["runq_ns"].view[slot])


def test_zones_past_max_zones_are_counted_as_drops():
    with scratch_cgroups("z1", "z2", "z3") as cg, \
            engine_for("runqueue.bpf.c", max_zones=2) as engine:
        procs = [python_in(cg[z], SLEEPER) for z in ("z1", "z2", "z3")]
        try:
            time.sleep(1)
            snap = engine.snapshot()
        finally:
            stop(*procs)
        assert len(engine.kernel_keys("runq_ns")) == 2
    assert len(snap["runq_ns"].rows) == 2
    assert snap.health.drops.get("zones_full", 0) > 100  # three sleepers, 1,000 wakeups/s
    assert engine.health().drops == {}  # stopped: nothing more to read


def test_without_the_binding_the_engine_says_why(monkeypatch):
    from smartos_telemetry.engines.libbpf import binding

    def no_module(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    binding._binding.cache_clear()
    monkeypatch.setattr(binding.importlib, "import_module", no_module)
    try:
        reason = LibbpfEngine.available()
        assert "no <bpf/libbpf.h> was found" in reason
        with pytest.raises(EngineUnavailable, match="libbpf not available.*apt-get install"):
            engine_for("runqueue.bpf.c").start()
    finally:
        monkeypatch.undo()
        binding._binding.cache_clear()
    assert LibbpfEngine.available() is None


def test_an_object_built_from_another_source_is_refused():
    source = open(script_path("linux/runqueue.bpf.c")).read() + "\n/* changed */\n"
    with pytest.raises(EngineUnavailable, match="built from another version"):
        LibbpfEngine(source, "linux/runqueue.bpf.c").start()


def test_direct_io_writes_are_counted_per_zone(tmp_path):
    snap, _, _ = check_direct_io_writes_per_zone(engine_for, "diskio.bpf.c", tmp_path)
    assert snap["io_ns"].action == "llquantize"


def test_tcp_connects_are_attributed_by_the_socket_cgroup():
    snap, a, b = check_tcp_connects_per_zone(engine_for, "tcp.bpf.c")
    assert (a,) not in snap["connect_failed"].rows and (b,) not in snap["connect_failed"].rows


def test_every_linux_meter_from_libbpf():
    """As test_linux_meters does for bpftrace: every meter of zone A, nothing of B."""
    running = {rel: LibbpfEngine(open(script_path(rel)).read(), rel)
               for rel in catalogue.scripts_for("linux", "libbpf")}
    assert sorted(running) == ["linux/diskio.bpf.c", "linux/runqueue.bpf.c",
                               "linux/tcp.bpf.c"]
    a, samples, before, durations = meters.run_per_script_engines(running, "linux", "libbpf")
    mine = meters.check_zone_a_samples(samples, a, before, durations, "linux", "libbpf", 1.07)
    assert all(mine[f"{meter}.sum"] > 0 for meter in meters.DISTRIBUTIONS)


def test_auto_picks_libbpf_here_and_check_says_what_loaded():
    assert choose_engine("auto")[0] == "libbpf"
    cli = os.path.join(os.path.dirname(sys.executable), "smartos-telemetry")
    run = subprocess.run([cli, "check", "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["engine"] == "libbpf"
    assert report["engine_reason"] == "kernel BTF present and the libbpf objects load"
    lib = report["libbpf"]
    assert lib["btf"] and lib["version"].startswith("v1.") and lib["unavailable"] is None
    assert lib["programs"] == {
        "linux/diskio.bpf.c": ["io_begin", "io_done"],
        "linux/runqueue.bpf.c": ["runq_switch", "runq_migrate", "design sched_info"],
        "linux/tcp.bpf.c": ["tcp_state", "tcp_ack", "tcp_retransmit"],
    }
    text = subprocess.run([cli, "check"], capture_output=True, text=True, timeout=120).stdout
    assert "engine:       libbpf (" in text
    assert "linux/runqueue.bpf.c: runq_switch, runq_migrate, design sched_info" in text


def test_auto_falls_back_when_the_objects_do_not_load(monkeypatch):
    monkeypatch.setattr(LibbpfEngine, "_trial", "linux/runqueue.bpf.c: verifier says no")
    name, why = choose_engine("auto")
    assert name != "libbpf"
    assert "libbpf: linux/runqueue.bpf.c: verifier says no" in why


def test_histogram_rows_decode_exactly_as_the_buckets_grow():
    """Rows written into the kernel map from user space come back as the
    same log-linear buckets (slot 592: everything from 2^40 ns), whether the
    zone's events land in buckets it had or in new ones."""
    from smartos_telemetry.engines.bpftrace import loglinear
    from smartos_telemetry.engines.libbpf.maps import HIST_SLOTS
    from smartos_telemetry.snapshot import INT64_MAX, Histogram

    fake = 10**12 + 14  # no cgroup has this id (reclaim is off)
    with engine_for("runqueue.bpf.c", reclaim_interval=1e9) as engine:

        def write(slots):
            # into the zone's slot of the mapped array, as the program adds
            value = [0] * HIST_SLOTS
            for i, n in slots.items():
                value[i] = n
            engine._zones.inject(fake, {"runq_ns": value})

        def expected(slots):
            return Histogram.from_counts(
                (*((1 << 40, INT64_MAX) if i == 592 else loglinear.bucket_bounds(i)), n)
                for i, n in slots.items())

        for slots in ({0: 3, 100: 5}, {0: 4, 100: 5}, {0: 4, 100: 9, 592: 1},
                      {0: 4, 100: 9, 592: 2}):
            write(slots)
            assert engine.snapshot()["runq_ns"].rows[(fake,)] == expected(slots)
        assert loglinear.bucket_index(1 << 40) == 592 and \
            loglinear.bucket_bounds(591)[1] == (1 << 40) - 1


def test_forget_drops_a_gone_zone_from_the_kernel_and_from_the_kept_values():
    # the service forgets a departed zone once its last values are delivered:
    # neither the kernel map nor the values kept at reclaim may hold it after
    with engine_for("runqueue.bpf.c", reclaim_interval=0) as engine:
        with scratch_cgroups("gone", "stays") as cg:
            gone, stays = cgroup_id(cg["gone"]), cgroup_id(cg["stays"])
            procs = [python_in(cg["gone"], SLEEPER), python_in(cg["stays"], SLEEPER)]
            time.sleep(1)
            stop(procs[0])
            os.rmdir(cg["gone"])
            kept = engine.snapshot()  # reclaims: the values are kept
            assert kept["runq_ns"].rows[(gone,)].count > 100
            assert engine.forget({gone}) >= 1
            after = engine.snapshot()
            assert (gone,) not in after["runq_ns"].rows
            assert gone not in engine.kernel_keys("runq_ns")
            assert after["runq_ns"].rows[(stays,)].count >= kept["runq_ns"].rows[(stays,)].count
            assert engine.forget({gone}) == 0
            stop(procs[1])


def test_a_reclaimed_slot_is_held_then_zeroed_and_late_events_stay_with_its_zone():
    """A gone zone's slot is not handed out again at once: events a program
    still adds to it (it looked the slot up before the release) are the gone
    zone's, and the slot is zeroed before any new zone can take it."""
    from smartos_telemetry.engines.libbpf import maps
    from smartos_telemetry.engines.libbpf.maps import HIST_SLOTS, NZ_WORDS

    fake = 10**12 + 21  # no cgroup has this id: reclaim finds it dead
    with engine_for("tcp.bpf.c", reclaim_interval=0) as engine:
        zones = engine._zones
        counts = [0] * HIST_SLOTS
        counts[100] = 5
        slot = zones.inject(fake, {"srtt_ns": counts, "retransmits": [3]})
        snap = engine.snapshot()  # reclaims: the slot is released and held
        assert fake not in engine.kernel_keys("srtt_ns")
        assert snap["srtt_ns"].rows[(fake,)].counts == (5,)
        assert snap["retransmits"].rows[(fake,)] == 3
        view = zones.maps["srtt_ns"].view
        # a program that held the slot adds two more events, one in a new bucket
        view[slot, NZ_WORDS + 100] += 1
        view[slot, NZ_WORDS + 200] += 1
        assert zones.maps["srtt_ns"].view[slot].any()  # held: not zeroed yet
        time.sleep(maps.HOLD + 0.1)
        later = engine.snapshot()  # gives the held slot back
        assert later["srtt_ns"].rows[(fake,)].count == 7
        assert later["retransmits"].rows[(fake,)] == 3
        assert not view[slot].any() and not zones.maps["retransmits"].view[slot].any()
        assert zones._owner.view[slot, 0] == 0
        assert slot not in zones.zones


def test_a_live_zone_forgotten_starts_again_in_a_new_slot():
    """The run-queue program keeps each task's zone slot in task storage; a
    slot taken away (here: forget() of a zone still running) is looked up
    again at the task's next switch, so the zone's new events start in a new
    slot instead of going into the old one."""
    with scratch_cgroups("a") as cg, \
            engine_for("runqueue.bpf.c", reclaim_interval=1e9) as engine:
        a = cgroup_id(cg["a"])
        proc = python_in(cg["a"], SLEEPER)
        try:
            time.sleep(1)
            before = engine.snapshot()["runq_ns"].rows[(a,)]
            old_slot = engine._zones.slot_of(a)
            assert engine.forget({a}) >= 1
            time.sleep(0.5)
            after = engine.snapshot()["runq_ns"].rows[(a,)]
            assert a in engine.kernel_keys("runq_ns")
            assert engine._zones.slot_of(a) not in (None, old_slot)
            assert 0 < after.count < before.count
        finally:
            stop(proc)


def test_every_touched_zone_decodes_as_a_bucket_by_bucket_reading_would():
    """The snapshot decodes all touched zones of a map at once; each zone's
    histogram must be what reading its buckets one by one gives: empty
    histograms (no row), the first and the last (2^40 ns and up) bucket,
    counts past 2^53, every slot up to max_zones, zones whose events land
    in the buckets they had, in new ones, or nowhere since the last read."""
    import random

    from smartos_telemetry.engines.bpftrace import loglinear
    from smartos_telemetry.engines.libbpf.maps import HIST_SLOTS, OVERFLOW_SLOT
    from smartos_telemetry.errors import EngineError
    from smartos_telemetry.snapshot import INT64_MAX, Histogram

    def by_bucket(counts):
        triples = []
        for i in range(HIST_SLOTS):
            if counts[i]:
                low, high = (1 << 40, INT64_MAX) if i == OVERFLOW_SLOT else \
                    loglinear.bucket_bounds(i)
                triples.append((low, high, counts[i]))
        return Histogram(triples) if triples else None

    rng = random.Random(14)

    def random_counts():
        counts = [0] * HIST_SLOTS
        shape = rng.random()
        if shape < 0.15:
            return counts  # empty
        picks = rng.sample(range(HIST_SLOTS), rng.randrange(1, 80))
        if shape < 0.5:
            picks += [0, OVERFLOW_SLOT]
        for i in picks:
            counts[i] = rng.choice((1, rng.randrange(1, 10**6), (1 << 62) + rng.randrange(9)))
        return counts

    hists = ("connect_ns", "srtt_ns")
    with engine_for("tcp.bpf.c", max_zones=64, reclaim_interval=1e9) as engine:
        zones = engine._zones
        rows, slots, fake = {}, {}, 10**12 + 100  # ids no cgroup has (reclaim is off)
        while True:  # every free slot, the last one (max_zones - 1) too
            values = {name: random_counts() for name in hists}
            values["retransmits"] = [rng.randrange(3)]
            try:
                slots[fake] = zones.inject(fake, values)
            except EngineError:
                break
            rows[fake] = values
            fake += 1
        assert zones.capacity - 1 in slots.values()
        for round_ in range(4):
            if round_:
                for cg, values in rows.items():
                    change = rng.random()
                    for name in hists:
                        counts = values[name]
                        if change < 0.4:  # more events in the buckets it had
                            values[name] = [n + rng.randrange(3) if n else 0 for n in counts]
                        elif change < 0.7:  # and in new buckets
                            values[name] = [max(n, m) for n, m in
                                            zip(counts, random_counts(), strict=True)]
                    if change < 0.7:
                        zones.inject(cg, values)
            snap = engine.snapshot()
            for cg, values in rows.items():
                for name in hists:
                    want = by_bucket(values[name])
                    got = snap[name].rows.get((cg,))
                    assert got == want, (round_, cg, slots[cg], name)
                    if got is not None:  # ints, as the other engines give
                        assert all(type(n) is int for n in got.counts + got.lows + got.highs)
                assert snap["retransmits"].rows.get((cg,)) == (values["retransmits"][0] or None)
