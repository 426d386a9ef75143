/*
 * runqueue.d -- run-queue latency per zone (cgroup v2), Linux, Oracle DTrace 2.x
 *
 * Probes:  rawtp:sched::sched_wakeup, sched_wakeup_new (arg0: woken task)
 *          rawtp:sched::sched_switch (arg0: preempt, arg1: prev, arg2: next,
 *                                     arg3: prev_state)
 * Measure: time from a task becoming runnable (wakeup, or preemption while
 *          still runnable) to its switch onto a CPU.
 * Units:   nanoseconds.
 * Key:     the cgroup-v2 id of the task switched in (the same number as
 *          bpftrace's `cgroup` and the st_ino of its unified-hierarchy dir).
 * Contract:
 *   @runq_ns[cgroup_id] = llquantize(ns, 10, 3, 9, 100)
 *     log-linear: 100 steps per decade from 1 us to 10 s, so any bucket
 *     is at most 10% wide relative to its low bound; below 1 us one bucket.
 * Caveats: sched:::on-cpu and enqueue need fbt, which this kind of kernel
 *          lacks, hence rawtp.  A task preempted while runnable reports
 *          prev_state 0 (or TASK_REPORT_MAX on 6.x); both count as runnable.
 *          Cost: about 1.1 us per sched_switch and 1.2 us per wakeup, 1.6 us
 *          per context switch in all (bench/results/dtrace_probe_cost.txt);
 *          nearly all of it is the dynamic variable.  The kernel's own
 *          sched_info.last_queued against rq->clock needs none (0.55 us per
 *          switch) but reads 0 where the switch reuses a stale rq clock
 *          (wakeups onto an idle CPU: 8-32 us waits read as 0), so it is
 *          not used.
 */

rawtp:sched::sched_wakeup,
rawtp:sched::sched_wakeup_new
{
	qtime[((struct task_struct *)arg0)->pid] = timestamp;
}

rawtp:sched::sched_switch
/(arg3 & 0xff) == 0/
{
	qtime[((struct task_struct *)arg1)->pid] = timestamp;
}

rawtp:sched::sched_switch
/qtime[((struct task_struct *)arg2)->pid]/
{
	@runq_ns[((struct task_struct *)arg2)->cgroups->dfl_cgrp->kn->id] =
	    llquantize(timestamp - qtime[((struct task_struct *)arg2)->pid], 10, 3, 9, 100);
	qtime[((struct task_struct *)arg2)->pid] = 0;
}
