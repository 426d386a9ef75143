/*
 * diskio.d -- block I/O latency per zone (cgroup v2), Linux, Oracle DTrace 2.x
 *
 * Probes:  io:::start (rawtp block_bio_queue: runs in the submitting task)
 *          io:::done  (rawtp block_rq_complete)
 * Measure: time from a bio being queued to its request completing: queueing
 *          in the block layer plus device service time.
 * Units:   nanoseconds.
 * Key:     the cgroup-v2 id of the task that submitted the I/O, recorded at
 *          io:::start and matched at io:::done by (device, block).
 * Contract:
 *   @io_ns[cgroup_id] = llquantize(ns, 10, 3, 9, 100)
 *   @io_bytes[cgroup_id] = sum(bytes)
 * Caveats: writeback (page-cache flushes) is submitted by kernel threads
 *          and lands in the root cgroup (1), not in the tenant that dirtied
 *          the pages; direct and synchronous I/O is attributed exactly.
 *          Merged bios complete as one request: only the first is timed.
 */

io:::start
{
	io_start[args[0]->b_edev, args[0]->b_blkno] = timestamp;
	io_zone[args[0]->b_edev, args[0]->b_blkno] = curthread->cgroups->dfl_cgrp->kn->id;
	@io_bytes[curthread->cgroups->dfl_cgrp->kn->id] = sum(args[0]->b_bcount);
}

io:::done
/io_start[args[0]->b_edev, args[0]->b_blkno]/
{
	@io_ns[io_zone[args[0]->b_edev, args[0]->b_blkno]] =
	    llquantize(timestamp - io_start[args[0]->b_edev, args[0]->b_blkno], 10, 3, 9, 100);
	io_start[args[0]->b_edev, args[0]->b_blkno] = 0;
	io_zone[args[0]->b_edev, args[0]->b_blkno] = 0;
}
