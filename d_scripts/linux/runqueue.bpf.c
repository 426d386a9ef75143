/*
 * runqueue.bpf.c -- run-queue latency per zone (cgroup v2), Linux, libbpf CO-RE
 *
 * Probes:   tp_btf/sched_switch (always); tp_btf/sched_wakeup and
 *           tp_btf/sched_wakeup_new (the fallback design only)
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
 */
// loglinear: @runq_ns

#include "st_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* set by the engine before load (bpf_map__initial_value of .rodata) */
const volatile struct {
	__u64 start_ns;     /* CLOCK_MONOTONIC at load: tasks started later have run_delay 0 */
	__u32 stamps;       /* 1: design 2 even where design 1 is possible */
} st_config = {};

ST_ZONE_ARRAY(runq_ns, struct st_hist);

/* Per task.  seen: design 1, its run_delay at its last switch-out; design
   2, the wakeup or preemption stamp.  Design 1 also keeps the zone slot of
   the cgroup the task last ran in (valid while cg and gen are the current
   ones), which spares the st_slot lookup at nearly every switch. */
struct runq_task_val {
	__u64 seen;
	__u64 cg;
	__u64 gen;
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
	struct runq_task_val *t;
	__u64 wait, cg, gen;

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
	/* current is prev here: the cgroup it ran in after the wait */
	cg = bpf_get_current_cgroup_id();
	gen = st_generation();
	if (t->slot == ST_NO_SLOT || t->cg != cg || t->gen != gen) {
		t->slot = st_slot_of(cg);
		t->cg = cg;
		t->gen = gen;
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

SEC("tp_btf/sched_switch")
int BPF_PROG(runq_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	if (bpf_core_field_exists(prev->sched_info.run_delay) && !st_config.stamps)
		switch_sched_info(prev);
	else
		switch_stamps(preempt, prev, next, prev_state);
	return 0;
}

/* design 2 only: the engine loads these only when it runs design 2 */
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
