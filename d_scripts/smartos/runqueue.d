/*
 * runqueue.d -- run-queue latency per zone, SmartOS / illumos
 *
 * Probes:  sched:::enqueue (args[0]: lwpsinfo_t *, args[1]: psinfo_t *)
 *          sched:::dequeue (same arguments: the thread left the queue
 *                           without running, e.g. migrated)
 *          sched:::on-cpu  (the current thread starts running)
 * Measure: time from a thread being put on a dispatch queue to running.
 * Units:   nanoseconds.
 * Key:     zonename of the thread (its own zone: on-cpu runs in the thread).
 * Contract:
 *   @runq_ns[zonename] = llquantize(ns, 10, 3, 9, 100)
 * Caveats: the idle thread is excluded (t_pri == -1).  zone_misc's
 *          nsec_waitrq kstat is the cheap cumulative total of the same wait.
 */

sched:::enqueue
{
	qtime[args[0]->pr_lwpid, args[1]->pr_pid] = timestamp;
}

sched:::dequeue
/qtime[args[0]->pr_lwpid, args[1]->pr_pid]/
{
	qtime[args[0]->pr_lwpid, args[1]->pr_pid] = 0;
}

sched:::on-cpu
/curthread->t_pri != -1 && qtime[curlwpsinfo->pr_lwpid, pid]/
{
	@runq_ns[zonename] =
	    llquantize(timestamp - qtime[curlwpsinfo->pr_lwpid, pid], 10, 3, 9, 100);
	qtime[curlwpsinfo->pr_lwpid, pid] = 0;
}
