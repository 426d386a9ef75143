/*
 * runqueue.bpf.c -- run-queue latency per zone (cgroup v2), Linux, libbpf CO-RE
 *
 * Probes:   design 1: tp_btf/sched_switch (runq_switch) and
 *           tp_btf/cgroup_attach_task (runq_migrate); the fallback, design 2:
 *           tp_btf/sched_switch (runq_switch_stamps), tp_btf/sched_wakeup and
 *           tp_btf/sched_wakeup_new
 * Measure:  the time a task waited runnable for a CPU, one event per
 *           switch-in.  Design 1 (kernels with CONFIG_SCHED_INFO, which
 *           delay accounting or schedstats set): the kernel's own wait,
 *           task->sched_info.run_delay, the running total that
 *           sched_info_arrive() (kernel/sched/stats.h) adds each wait to
 *           when the task gets a CPU, and sched_info_dequeue() adds the part
 *           of a wait ended by a migration to.  At a task's switch-OUT its
 *           run_delay holds every wait up to its last switch-in; the change
 *           since its previous switch-out (kept in task storage) is that
 *           wait, recorded for the task's cgroup (current is prev here).
 *           This is the kernel truth by construction: summed per zone it is
 *           what /proc/<pid>/schedstat's second field (run_delay) grew by,
 *           less the first wait of each task already running at attach
 *           (its baseline is unknown; a task started later has run_delay 0
 *           at fork).  Short waits are exact (rq clock, ns); a task switched
 *           back in at once records 0.  Design 2 (no sched_info.run_delay in
 *           this kernel's BTF, or the engine option runq_design=wakeup_stamp):
 *           a wakeup or preemption stamps the task (task storage) and its
 *           switch-in records now - stamp for the next task's cgroup; the
 *           stamps include the probes' own cost, so it reads a little high.
 * Units:    nanoseconds.
 * Key:      the cgroup-v2 id of the task that waited (design 1: the cgroup
 *           it ran in after the wait; design 2: its cgroup at switch-in).
 * Contract:
 *   @runq_ns[cgroup_id, bucket] = count()
 *     bucket: log-linear index (loglinear.py) below 2^40 ns, overflow above
 *     (st_common.bpf.h); the engine reports it as an llquantize histogram
 *     keyed by (cgroup_id,).
 * Caveats:  design 1 records a wait when the task leaves the CPU (a slice
 *           later than design 2 does); the idle task is never counted.
 *           Task storage holds 32 bytes per task seen, freed with the task.
 *
 * Design 1's zone cache.  A task's storage keeps the slot of the zone it
 * last ran in, so a switch-out reads neither the task's cgroup (three
 * dependent loads: cgroups, dfl_cgrp, kn) nor the zone hash.  The slot is
 * valid while both words of st_gen are what they were when it was looked up:
 * user space raises st_gen[ST_GEN_ZONES] when it takes a zone's slot away,
 * and runq_migrate raises st_gen[ST_GEN_MIGRATIONS] after any task moves to
 * another cgroup, so every task looks its cgroup up once more at its next
 * switch-out (a per-task mark would miss threads: the tracepoint names the
 * leader only when a whole thread group moves).  Where a task's cgroup-v2
 * cgroup changes (kernel/cgroup/):
 *   - cgroup.c cgroup_attach_task(): cgroup_migrate() ->
 *     cgroup_migrate_execute() moves each task (css_set_move_task(), under
 *     css_set_lock), then, after cgroup_migrate_finish(),
 *     TRACE_CGROUP_PATH(attach_task, ...) fires once.  It is the only path
 *     that gives a live task another cgroup-v2 cgroup: cgroup.procs and
 *     cgroup.threads writes (cgroup.c __cgroup_procs_write()), v1 writes
 *     (cgroup-v1.c __cgroup1_procs_write()) and cgroup-v1.c
 *     cgroup_attach_task_all() all call it.
 *   - cgroup.c cgroup_update_dfl_csses() (a subtree_control change) moves
 *     tasks to new css_sets of the same cgroup: dfl_cgrp, and the id, stay.
 *   - cgroup-v1.c cgroup_transfer_tasks() refuses a default-hierarchy
 *     destination (cgroup_on_dfl), so it never changes dfl_cgrp.
 *   - cgroup.c cgroup_post_fork() places a new task (CLONE_INTO_CGROUP
 *     too) before it first runs; it has no storage yet, so its first
 *     switch-out looks its cgroup up.  cgroup_exit() takes the task off
 *     its css_set's list (css_set_move_task() to NULL) but leaves
 *     task->cgroups.
 * The window: between css_set_move_task() and the tracepoint (the
 * controllers' attach callbacks -- kernel/sched/core.c cpu_cgroup_attach()
 * calling sched_move_task(), kernel/cgroup/cpuset.c cpuset_attach() --
 * and cgroup_migrate_finish()) a moved task's switch-outs still record
 * into the zone it is leaving.  Those waits (the ones whose switch-out
 * falls in that window, usually none) go to the old zone instead of the
 * new one; no wait is lost or counted twice.  A migration costs every task
 * one cgroup lookup, at its next switch-out.
 */
// loglinear: @runq_ns

#include "st_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* set by the engine before load (bpf_map__initial_value of .rodata) */
const volatile struct {
	__u64 start_ns;     /* CLOCK_MONOTONIC at load: tasks started later have run_delay 0 */
} st_config = {};

ST_ZONE_ARRAY(runq_ns, struct st_hist);

/* Per task.  seen: design 1, its run_delay at its last switch-out; design
   2, the wakeup or preemption stamp.  Design 1 also keeps the zone slot of
   the cgroup the task last ran in, valid while gen and moves are st_gen's
   two words (the header: "Design 1's zone cache"). */
struct runq_task_val {
	__u64 seen;
	__u64 gen;
	__u64 moves;
	__u32 slot;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct runq_task_val);
} runq_task SEC(".maps");

static __always_inline void switch_sched_info(struct task_struct *prev)
{
	__u64 run_delay = prev->sched_info.run_delay;
	__u32 zones = ST_GEN_ZONES, migrations = ST_GEN_MIGRATIONS;
	__u64 *gen, *moves, wait;
	struct runq_task_val *t;

	if (prev->pid == 0)
		return; /* the idle task */
	t = bpf_task_storage_get(&runq_task, prev, 0, 0);
	if (t) {
		wait = run_delay - t->seen;
	} else {
		t = bpf_task_storage_get(&runq_task, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!t) {
			st_count(ST_NO_STORAGE);
			return;
		}
		t->slot = ST_NO_SLOT;
		/* a task forked since attach began at run_delay 0: its first
		   wait counts; another's baseline is unknown */
		if (prev->start_time < st_config.start_ns) {
			t->seen = run_delay;
			return;
		}
		wait = run_delay;
	}
	t->seen = run_delay;
	gen = bpf_map_lookup_elem(&st_gen, &zones);
	moves = bpf_map_lookup_elem(&st_gen, &migrations);
	if (!gen || !moves)
		return;
	if (t->slot == ST_NO_SLOT || t->gen != *gen || t->moves != *moves) {
		t->gen = *gen;
		/* a fully ordered read: both words are read before the cgroup
		   (runq_migrate raises moves after the task's cgroup changed),
		   and gen before st_slot */
		t->moves = __sync_fetch_and_add(moves, 0);
		/* current is prev here: the cgroup it ran in after the wait */
		t->slot = st_slot_of(bpf_get_current_cgroup_id());
		if (t->slot == ST_NO_SLOT)
			return;
	}
	st_record_slot(&runq_ns, t->slot, wait);
}

static __always_inline void stamp(struct task_struct *p, __u64 now)
{
	struct runq_task_val *t;

	if (p->pid == 0)
		return;
	t = bpf_task_storage_get(&runq_task, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (t)
		t->seen = now;
	else
		st_count(ST_NO_STORAGE);
}

static __always_inline void switch_stamps(bool preempt, struct task_struct *prev,
					  struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	struct runq_task_val *t;

	/* preempted, or runnable again before it left: it stays queued */
	if (preempt || prev_state == 0)
		stamp(prev, now);
	if (next->pid == 0)
		return;
	t = bpf_task_storage_get(&runq_task, next, 0, 0);
	if (t && t->seen) {
		st_record(&runq_ns, next->cgroups->dfl_cgrp->kn->id, now - t->seen);
		t->seen = 0;
	}
}

/* One sched_switch program per design, the engine loading one of them (and
   each design's other programs): a switch reads no design flag, whose
   line would be one more to fetch at every switch. */
SEC("tp_btf/sched_switch")
int BPF_PROG(runq_switch, bool preempt, struct task_struct *prev)
{
	if (bpf_core_field_exists(prev->sched_info.run_delay))
		switch_sched_info(prev);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(runq_switch_stamps, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	switch_stamps(preempt, prev, next, prev_state);
	return 0;
}

/* design 1 only: after the kernel moved a task, or a whole thread group,
   to another cgroup (cgroup_attach_task(), kernel/cgroup/cgroup.c),
   every task's cached zone slot is looked up again.  The fetching add is
   fully ordered: the tasks' new cgroups are visible before the new value. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(runq_migrate)
{
	__u32 migrations = ST_GEN_MIGRATIONS;
	__u64 *moves = bpf_map_lookup_elem(&st_gen, &migrations);
	__u64 before;

	if (moves) {
		before = __sync_fetch_and_add(moves, 1);
		barrier_var(before); /* keeps the fetching form */
	}
	return 0;
}

/* design 2 only, as runq_switch_stamps */
SEC("tp_btf/sched_wakeup")
int BPF_PROG(runq_wakeup, struct task_struct *p)
{
	stamp(p, bpf_ktime_get_ns());
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(runq_wakeup_new, struct task_struct *p)
{
	stamp(p, bpf_ktime_get_ns());
	return 0;
}
