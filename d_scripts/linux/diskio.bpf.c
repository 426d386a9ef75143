/*
 * diskio.bpf.c -- block I/O latency and bytes per zone (cgroup v2), Linux, libbpf CO-RE
 *
 * Probes:   tp_btf/block_io_start (runs in the submitter's context: the
 *           request is tagged with its cgroup there; kernel >= 6.5)
 *           tp_btf/block_rq_complete
 * Measure:  time from a request's start (accounting start: queueing plus
 *           device time) to its completion, matched by the request itself
 *           (tp_btf hands over the struct request pointer, so no (dev,
 *           sector) key has to be built).
 * Units:    nanoseconds; bytes.
 * Key:      the cgroup-v2 id of the task that submitted the request (as
 *           diskio.bt).
 * Contract:
 *   @io_ns[cgroup_id, bucket] = count()     log-linear (st_common.bpf.h), by (cgroup_id,)
 *   @io_bytes[cgroup_id] = sum(bytes)       bytes of the first completion
 * Caveats:  as diskio.bt: writeback I/O is submitted by kernel flusher
 *           threads and lands in their cgroup (the root, 1); a request
 *           completed in parts counts once, at its first completion;
 *           requests started before the program are not counted.  In-flight
 *           requests are at most the engine's max_pending (io_start), past
 *           which drops["pending_full"] counts them.
 */
// loglinear: @io_ns

#include "st_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct io_start_val {
	__u64 ns;
	__u64 cg;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* the struct request's address */
	__type(value, struct io_start_val);
} io_start SEC(".maps");

ST_ZONE_ARRAY(io_ns, struct st_hist);
ST_ZONE_ARRAY(io_bytes, __u64);

SEC("tp_btf/block_io_start")
int BPF_PROG(io_begin, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct io_start_val v = {
		.ns = bpf_ktime_get_ns(),
		.cg = bpf_get_current_cgroup_id(),
	};

	if (bpf_map_update_elem(&io_start, &key, &v, BPF_ANY))
		st_count(ST_PENDING_FULL);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_done, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct io_start_val *v = bpf_map_lookup_elem(&io_start, &key);
	__u64 ns, cg;
	__u32 slot;

	if (!v)
		return 0;
	ns = bpf_ktime_get_ns() - v->ns;
	cg = v->cg;
	bpf_map_delete_elem(&io_start, &key);
	slot = st_slot_of(cg); /* once for both aggregations */
	if (slot == ST_NO_SLOT)
		return 0;
	st_record_slot(&io_ns, slot, ns);
	st_add_slot(&io_bytes, slot, nr_bytes);
	return 0;
}
