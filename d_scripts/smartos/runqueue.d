/*
 * runqueue.d -- run-queue latency per zone, SmartOS / illumos
 *
 * Probes:  (firing order of one wait: enqueue ... [dequeue, enqueue]* ...
 *          dequeue, on-cpu; or, for a preempted thread chosen again,
 *          enqueue, dequeue, remain-cpu)
 *   sched:::enqueue  usr/src/uts/common/disp/disp.c setbackdq(), setfrontdq(),
 *            setkpdq(): the thread is put on a dispatch queue (woken,
 *            preempted, moved).  args[0]: lwpsinfo_t of that thread; its
 *            pr_addr is the kthread_t address (procfs.d.in translator).
 *   sched:::dequeue  usr/src/uts/common/disp/disp.c disp(), dispdeq(): fires in
 *            disp() on the thread chosen to run next, BEFORE on-cpu, and in
 *            dispdeq() when a thread is taken off a queue (stolen by
 *            disp_getbest(), then run; or moved by thread_change_pri(),
 *            disp_cpu_inactive(), then enqueued again).  Not used: every
 *            dequeue is followed by on-cpu, remain-cpu or a new enqueue of
 *            the same thread, so clearing the stamp there loses the wait.
 *   sched:::on-cpu  usr/src/uts/intel/ml/swtch.S resume(): fires in the thread
 *            now on the CPU (also resume_from_intr(), resume_from_zombie());
 *            no arguments: curthread is the thread, zonename its zone.
 *   sched:::remain-cpu  usr/src/uts/common/disp/disp.c swtch(): disp() chose
 *            the thread that was already running (put on a queue by
 *            preempt(), never left the CPU); no arguments.  Its stamp is
 *            dropped: it did not wait, and it must not date a later wait.
 * Measure: time from a thread becoming runnable (its first enqueue) to its
 *          running on a CPU, the interval the kernel charges to
 *          LMS_WAIT_CPU (t_waitrq, set in setbackdq()/setfrontdq() only when
 *          0, taken by restore_mstate() in usr/src/uts/common/os/msacct.c
 *          when the thread is switched in): zone_misc nsec_waitrq sums the
 *          same waits for the zone's LWPs (restore_mstate() skips kernel
 *          threads, which this script times too).
 * Migration: a thread moved between queues (dispdeq() then an enqueue
 *          elsewhere) keeps its first stamp, so its wait is the whole time
 *          it was runnable, over every queue it sat on -- not the time on
 *          the last queue.  A steal (disp_getbest()) runs the thread at once:
 *          on-cpu ends its wait on the stealing CPU.
 * Units:   nanoseconds.
 * Key:     zonename of the thread (on-cpu runs in the thread itself).
 * Contract:
 *   @runq_ns[zonename] = llquantize(ns, 10, 3, 9, 100)
 * Caveats: threads are keyed by kthread_t address: (pid, lwpid) is not
 *          unique for kernel threads, whose t_tid is set only by
 *          lwp_create() (usr/src/uts/common/os/lwp.c).  The idle thread
 *          (t_pri == -1) is never enqueued.  Time a capped zone's thread
 *          spends on the CPU-cap wait queue (cpucaps-sleep .. wakeup) is
 *          not run-queue wait and is not counted.  A thread already
 *          runnable when the program starts is not timed.
 */

sched:::enqueue
/!qtime[args[0]->pr_addr]/
{
	qtime[args[0]->pr_addr] = timestamp;
}

sched:::on-cpu
/qtime[(uintptr_t)curthread]/
{
	@runq_ns[zonename] =
	    llquantize(timestamp - qtime[(uintptr_t)curthread], 10, 3, 9, 100);
	qtime[(uintptr_t)curthread] = 0;
}

sched:::remain-cpu
/qtime[(uintptr_t)curthread]/
{
	qtime[(uintptr_t)curthread] = 0;
}
