"""The SmartOS D scripts against the illumos facts they rest on.

This host cannot run them, so each test replays, on the script's own
clauses, what the kernel does:

* runqueue.d -- the sched provider's firing order, read from
  usr/src/uts/common/disp/disp.c: ``enqueue`` in setbackdq()/setfrontdq()
  when a thread is queued; ``dequeue`` in disp() on the thread chosen to run
  *before* ``on-cpu`` (fired by resume(), intel/ml/swtch.S), and in
  dispdeq() when a thread is stolen (disp_getbest(), then run) or moved
  (thread_change_pri(), disp_cpu_inactive(), then queued again); a thread
  put back by disp_ratify() is queued again by setfrontdq(); a preempted
  thread that disp() chooses again gets ``remain-cpu`` (swtch()), not
  ``on-cpu``.  The replay understands just the statements the script uses
  and fails on anything else, so a change to the script must be taught here.
* tcp.d -- the zone of an RTT sample: conn_zoneid is GLOBAL_ZONEID for every
  connection of an exclusive-IP stack (tcp.c tcp_create_common()); the zone
  is the credential's (ip.d.in's cs_zoneid translator, same rule).
* zfs_io.d -- zfs-zone-latency's arg1 is the zio type (zfs_zone.c
  zfs_zone_zio_done(), ZIO_TYPE_READ 1, ZIO_TYPE_WRITE 2).
"""

import re

from d_source import d_clauses

from smartos_telemetry import scripts


def clauses_of(relative):
    return d_clauses(open(scripts.script_path(relative)).read().partition("*/")[2])


# -- runqueue.d ------------------------------------------------------------------

#: key expressions that name "the thread of this event": the enqueued or
#: dequeued thread in enqueue/dequeue (args[0] is its lwpsinfo_t, pr_addr its
#: kthread_t address), the running thread in on-cpu/remain-cpu
THREAD_KEYS = {"args[0]->pr_addr", "(uintptr_t)curthread",
               "args[0]->pr_lwpid, args[1]->pr_pid", "curlwpsinfo->pr_lwpid, pid"}


class RunQueueReplay:
    """Runs runqueue.d's clauses over a sequence of sched events."""

    def __init__(self, clauses):
        self.clauses = clauses
        self.vars = {}  # (array, thread) -> value; 0 / absent are the same in D
        self.recorded = []  # (zonename, ns)

    def _thread_key(self, key, thread):
        key = " ".join(key.split())
        assert key in THREAD_KEYS, f"the replay does not know the key {key!r}"
        return thread

    def _read(self, term, thread):
        m = re.fullmatch(r"(\w+)\[(.+)\]", term.strip())
        assert m, f"the replay does not know the term {term!r}"
        return self.vars.get((m.group(1), self._thread_key(m.group(2), thread)), 0)

    def _predicate(self, predicate, thread):
        if predicate is None:
            return True
        for term in predicate.split("&&"):
            term = term.strip()
            if term == "curthread->t_pri != -1":
                continue  # never the idle thread here
            negate = term.startswith("!")
            value = self._read(term.lstrip("!"), thread)
            if bool(value) == negate:
                return False
        return True

    def _run(self, action, thread, now, zone):
        for statement in (" ".join(s.split()) for s in action.split(";")):
            if not statement:
                continue
            m = re.fullmatch(r"(\w+)\[(.+)\] = (timestamp|0)", statement)
            if m:
                k = (m.group(1), self._thread_key(m.group(2), thread))
                if m.group(3) == "0":
                    self.vars.pop(k, None)
                else:
                    self.vars[k] = now
                continue
            m = re.fullmatch(r"@runq_ns\[zonename\] = llquantize\(timestamp - (\w+)\[(.+)\], "
                             r"10, 3, 9, 100\)", statement)
            assert m, f"the replay does not know the statement {statement!r}"
            stamp = self.vars.get((m.group(1), self._thread_key(m.group(2), thread)), 0)
            self.recorded.append((zone, now - stamp))

    def fire(self, probe, thread, now, zone="z1"):
        for probes, predicate, action in self.clauses:
            if f"sched:::{probe}" in probes and self._predicate(predicate, thread):
                self._run(action, thread, now, zone)


def replay(events):
    """The replay of ``events`` (probe, thread, timestamp[, zonename]); our
    timestamps start at 1000: D's never reads 0, which is "unset"."""
    r = RunQueueReplay(clauses_of("smartos/runqueue.d"))
    for event in events:
        r.fire(*event)
    return r


def test_runqueue_wakeup_to_on_cpu_through_disp_s_dequeue():
    # setbackdq() queues T; disp() dequeues it (dequeue fires first), resume()
    # puts it on the CPU (on-cpu)
    r = replay([("enqueue", "T", 1100), ("dequeue", "T", 1150), ("on-cpu", "T", 1160)])
    assert r.recorded == [("z1", 60)]
    assert not r.vars


def test_runqueue_a_migration_keeps_the_first_stamp():
    # thread_change_pri(): dispdeq() then setbackdq() on another CPU's queue,
    # later disp() there: the wait is the whole time runnable (like t_waitrq)
    r = replay([("enqueue", "T", 1000), ("dequeue", "T", 1030), ("enqueue", "T", 1030),
                ("dequeue", "T", 1070), ("on-cpu", "T", 1075)])
    assert r.recorded == [("z1", 75)]


def test_runqueue_a_steal_and_a_ratify_put_back():
    # disp_getbest(): dispdeq() on the victim's queue, then run on the thief
    assert replay([("enqueue", "T", 1000), ("dequeue", "T", 1040),
                   ("on-cpu", "T", 1041)]).recorded == [("z1", 41)]
    # disp_ratify(): chosen, put back by setfrontdq(), chosen again
    assert replay([("enqueue", "T", 1000), ("dequeue", "T", 1010), ("enqueue", "T", 1010),
                   ("dequeue", "T", 1020), ("on-cpu", "T", 1025)]).recorded == [("z1", 25)]


def test_runqueue_a_preempted_thread_chosen_again_dates_no_later_wait():
    # preempt(): setbackdq(curthread), disp() picks it again: remain-cpu, no
    # on-cpu; its next wait starts at its next enqueue
    r = replay([("enqueue", "T", 1000), ("dequeue", "T", 1001), ("remain-cpu", "T", 1001),
                ("enqueue", "T", 1500), ("dequeue", "T", 1520), ("on-cpu", "T", 1530)])
    assert r.recorded == [("z1", 30)]
    assert not r.vars


def test_runqueue_threads_and_zones_apart():
    r = replay([("enqueue", "A", 1000, "za"), ("enqueue", "B", 1005, "zb"),
                ("dequeue", "A", 1010, "za"), ("on-cpu", "A", 1012, "za"),
                ("dequeue", "B", 1020, "zb"), ("on-cpu", "B", 1022, "zb"),
                ("on-cpu", "C", 1030, "zc")])  # C was never queued: not timed
    assert r.recorded == [("za", 12), ("zb", 17)]


def test_runqueue_no_clause_before_on_cpu_clears_the_stamp():
    for probes, _, action in clauses_of("smartos/runqueue.d"):
        if {"sched:::dequeue", "sched:::enqueue"} & set(probes):
            assert not re.search(r"\w+\[.*?\]\s*=\s*0\s*;", action), probes


# -- tcp.d -----------------------------------------------------------------------

def resolve(expression, action):
    """``expression`` with the clause's ``this->`` variables substituted."""
    assigned = {m.group(1): " ".join(m.group(2).split())
                for m in re.finditer(r"this->(\w+)\s*=\s*([^;]+);", action)}
    expression = " ".join(expression.split())
    for _ in range(5):
        expression = re.sub(r"this->(\w+)", lambda m: assigned[m.group(1)], expression)
    return expression


def evaluate(expression, fields):
    """A D expression of field paths, ``==`` tests joined by ``||`` and one
    ``?:``, evaluated over ``fields`` (path -> value; a missing path fails)."""
    if "?" in expression:
        condition, _, rest = expression.partition("?")
        then, _, otherwise = rest.partition(":")
        assert "?" not in rest, "one ?: only"
        hit = False
        for term in condition.split("||"):
            left, op, right = (x.strip() for x in term.partition("=="))
            assert op, f"not an == test: {term!r}"
            literal = {"0": 0, "NULL": None, "-1": -1}[right]
            hit = hit or evaluate(left, fields) == literal
        return evaluate(then if hit else otherwise, fields)
    path = expression.strip()
    assert path in fields, f"the connection model has no {path}"
    return fields[path]


def connection(stackid, conn_zoneid, cred_zone, uid=1000):
    c = "args[0]->tcp_connp"
    return {f"{c}->conn_netstack->netstack_stackid": stackid,
            f"{c}->conn_zoneid": conn_zoneid, f"{c}->conn_cred": "cred",
            f"{c}->conn_cred->cr_zone": "zone", f"{c}->conn_cred->cr_uid": uid,
            f"{c}->conn_cred->cr_zone->zone_id": cred_zone}


def srtt_key():
    (clause,) = [c for c in clauses_of("smartos/tcp.d") if "fbt::tcp_set_rto:entry" in c[0]]
    m = re.search(r"@srtt_ns\[(.+?)\]\s*=", clause[2])
    return resolve(m.group(1), clause[2])


def test_tcp_rtt_of_an_exclusive_stack_zone_is_filed_under_that_zone():
    # a SmartOS zone's connection: exclusive stack 5, conn_zoneid 0
    # (tcp_create_common()), credential of zone 5
    key = srtt_key()
    assert evaluate(key, connection(stackid=5, conn_zoneid=0, cred_zone=5)) == 5
    assert key != "args[0]->tcp_connp->conn_zoneid"


def test_tcp_rtt_on_the_shared_stack_keeps_conn_zoneid():
    # the global zone (and shared-IP zones): netstack 0, conn_zoneid is right
    assert evaluate(srtt_key(), connection(stackid=0, conn_zoneid=0, cred_zone=0)) == 0
    assert evaluate(srtt_key(), connection(stackid=0, conn_zoneid=3, cred_zone=9)) == 3
    # the translator's exception: a credential of uid -1 falls back too
    assert evaluate(srtt_key(), connection(stackid=5, conn_zoneid=0, cred_zone=5,
                                           uid=-1)) == 0


def test_tcp_provider_aggregations_use_the_translated_zone():
    for probes, _, action in clauses_of("smartos/tcp.d"):
        if any(p.startswith("tcp:::") for p in probes):
            for key in re.findall(r"@\w+\[(.+?)\]\s*=", action):
                assert key == "args[1]->cs_zoneid", (probes, key)


# -- zfs_io.d --------------------------------------------------------------------

ZIO_TYPES = {"null": 0, "read": 1, "write": 2, "free": 3, "claim": 4}


def holds(predicate, args):
    """A predicate of ``argN == value`` tests joined by ``||`` and ``&&``."""
    def test(term):
        m = re.fullmatch(r"\s*(arg\d)\s*==\s*(\d+)\s*", term)
        assert m, f"the check does not know the term {term!r}"
        return args[m.group(1)] == int(m.group(2))
    return any(all(test(t) for t in alt.split("&&")) for alt in predicate.split("||"))


def test_zfs_latency_counts_reads_and_writes_by_zio_type():
    (clause,) = [c for c in clauses_of("smartos/zfs_io.d") if "sdt:::zfs-zone-latency" in c[0]]
    predicate = clause[1]
    assert predicate, "every zio type would count"
    counted = {name for name, zio_type in ZIO_TYPES.items()
               if holds(predicate, {"arg0": 7, "arg1": zio_type, "arg2": 150})}
    assert counted == {"read", "write"}
    assert re.search(r"@zio_ns\[arg0\]\s*=\s*llquantize\(arg2 \* 1000,", clause[2])


def test_zfs_header_states_the_throttle_s_real_ceiling():
    header = open(scripts.script_path("smartos/zfs_io.d")).read().partition("*/")[0]
    assert "200 us" in header and "ZFS_ZONE_IOP_LOGICAL_WRITE 2" in header
    assert "1 write" not in header  # zfs_zone_io_throttle() is passed 0 or 2 only
