/* Parts of the libbpf engine's run-queue and disk I/O programs, one program
   each, for bench/libbpf_cost_parts.py: what each part costs on its own,
   beside the empty tp_btf programs (bench/empty_tp_btf.bpf.c).  Not shipped. */
#include "st_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} sink SEC(".maps");

/* keeps a value the verifier and the compiler cannot drop */
static __always_inline void keep(__u32 k, __u64 v)
{
	__u64 *s = bpf_map_lookup_elem(&sink, &k);

	if (s)
		*s += v;
}

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} task_u64 SEC(".maps");

/* the design before the slot arrays: cgroup id -> histogram hash */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ST_MAX_ZONES);
	__type(key, __u64);
	__type(value, struct st_hist);
} hist_hash SEC(".maps");

static const struct st_hist zero_hist;

static __always_inline void hash_record(__u64 cg, __u64 v)
{
	struct st_hist *h = bpf_map_lookup_elem(&hist_hash, &cg);
	__u32 i = st_bucket(v);

	if (!h) {
		bpf_map_update_elem(&hist_hash, &cg, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hist_hash, &cg);
		if (!h)
			return;
	}
	barrier_var(i);
	if (i >= ST_HIST_BUCKETS)
		return;
	__sync_fetch_and_add(&h->slots[i], 1);
}

ST_ZONE_ARRAY(part_ns, struct st_hist);
ST_ZONE_ARRAY(part_bytes, __u64);

/* run queue: prev's fields only */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_fields, bool preempt, struct task_struct *prev)
{
	if (prev->pid)
		keep(0, prev->sched_info.run_delay);
	return 0;
}

/* + task storage (get, read, write) */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_storage, bool preempt, struct task_struct *prev)
{
	__u64 rd = prev->sched_info.run_delay, *seen;

	if (prev->pid == 0)
		return 0;
	seen = bpf_task_storage_get(&task_u64, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!seen)
		return 0;
	keep(0, rd - *seen);
	*seen = rd;
	return 0;
}

/* fields + the current task's cgroup id */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_cgroup_id, bool preempt, struct task_struct *prev)
{
	if (prev->pid)
		keep(0, prev->sched_info.run_delay + bpf_get_current_cgroup_id());
	return 0;
}

/* fields + cgroup id + the zone hash and its histogram (no task storage) */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_zone_hash, bool preempt, struct task_struct *prev)
{
	if (prev->pid)
		hash_record(bpf_get_current_cgroup_id(), prev->sched_info.run_delay & 0xffff);
	return 0;
}

/* fields + cgroup id + zone slot + array histogram (no task storage) */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_zone_slot, bool preempt, struct task_struct *prev)
{
	if (prev->pid)
		st_record(&part_ns, bpf_get_current_cgroup_id(), prev->sched_info.run_delay & 0xffff);
	return 0;
}

/* the shipped design 1 (runqueue.bpf.c) with its zone slot cached in task
   storage, its validity checked in three ways */
struct cached {
	__u64 seen;
	__u64 cg;
	__u64 gen;
	__u64 moves;
	__u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cached);
} task_cached SEC(".maps");

#define BY_CGROUP_ID 0 /* the current cgroup id and st_gen[0] */
#define BY_EPOCH 1     /* both words of st_gen */
#define BY_EPOCH_UNTOUCHED 2 /* both words, and no st_touched mark */

static __always_inline void cached_record(struct task_struct *prev, int how)
{
	__u32 zones = ST_GEN_ZONES, migrations = ST_GEN_MIGRATIONS;
	__u64 rd = prev->sched_info.run_delay, *gen, *moves, cg = 0, wait;
	struct cached *t;
	struct st_hist *h;
	__u32 i;

	if (prev->pid == 0)
		return;
	t = bpf_task_storage_get(&task_cached, prev, 0, 0);
	if (!t) {
		t = bpf_task_storage_get(&task_cached, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!t)
			return;
		t->slot = ST_NO_SLOT;
		t->seen = rd;
	}
	wait = rd - t->seen;
	t->seen = rd;
	gen = bpf_map_lookup_elem(&st_gen, &zones);
	moves = bpf_map_lookup_elem(&st_gen, &migrations);
	if (!gen || !moves)
		return;
	if (how == BY_CGROUP_ID) {
		cg = bpf_get_current_cgroup_id();
		if (t->slot == ST_NO_SLOT || t->cg != cg || t->gen != *gen) {
			t->cg = cg;
			t->gen = *gen;
			t->slot = st_slot_of(cg);
		}
	} else if (t->slot == ST_NO_SLOT || t->gen != *gen || t->moves != *moves) {
		t->gen = *gen;
		t->moves = __sync_fetch_and_add(moves, 0);
		t->slot = st_slot_of(bpf_get_current_cgroup_id());
	}
	if (t->slot == ST_NO_SLOT)
		return;
	if (how != BY_EPOCH_UNTOUCHED) {
		st_record_slot(&part_ns, t->slot, wait);
		return;
	}
	/* st_record_slot without st_touch */
	h = bpf_map_lookup_elem(&part_ns, &t->slot);
	i = st_bucket(wait);
	if (!h)
		return;
	barrier_var(i);
	if (i >= ST_HIST_BUCKETS)
		return;
	if (__sync_fetch_and_add(&h->slots[i], 1) == 0)
		__sync_fetch_and_or(&h->nonzero[i / 64], 1ULL << (i % 64));
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_cached_cgroup, bool preempt, struct task_struct *prev)
{
	cached_record(prev, BY_CGROUP_ID);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_cached_epoch, bool preempt, struct task_struct *prev)
{
	cached_record(prev, BY_EPOCH);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_cached_untouched, bool preempt, struct task_struct *prev)
{
	cached_record(prev, BY_EPOCH_UNTOUCHED);
	return 0;
}

/* a flag set before load (frozen .rodata, as runqueue.bpf.c's st_config):
   the verifier knows its value and drops the branch not taken, but the
   load stays in the program */
const volatile __u32 part_flag = 0;

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_cached_rodata, bool preempt, struct task_struct *prev)
{
	if (!part_flag)
		cached_record(prev, BY_EPOCH);
	return 0;
}

/* no task storage at all: the next task's wait from the kernel's enqueue
   stamp (rq clock - sched_info.last_queued), its cgroup read with CO-RE */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_last_queued, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 queued = next->sched_info.last_queued;

	if (next->pid && queued)
		st_record(&part_ns, next->cgroups->dfl_cgrp->kn->id,
			  next->se.cfs_rq->rq->clock - queued);
	return 0;
}

/* the sums of both run-queue readings over every task (sink slots 0/1,
   events 2/3): what the last_queued reading misses of run_delay */
SEC("tp_btf/sched_switch")
int BPF_PROG(rq_compare, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 queued = next->sched_info.last_queued, rd = prev->sched_info.run_delay, *seen;

	if (next->pid && queued) {
		keep(0, next->se.cfs_rq->rq->clock - queued);
		keep(2, 1);
	}
	if (prev->pid == 0)
		return 0;
	seen = bpf_task_storage_get(&task_u64, prev, 0, 0);
	if (seen) {
		keep(1, rd - *seen);
		keep(3, 1);
		*seen = rd;
		return 0;
	}
	seen = bpf_task_storage_get(&task_u64, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (seen)
		*seen = rd;
	return 0;
}

struct io_start_val {
	__u64 ns;
	__u64 cg;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct io_start_val);
} io_stash SEC(".maps");

/* disk: the start's clock and cgroup id, no stash */
SEC("tp_btf/block_io_start")
int BPF_PROG(io_start_nostash, struct request *rq)
{
	keep(0, bpf_ktime_get_ns() + bpf_get_current_cgroup_id());
	return 0;
}

/* the start stashed by request (as diskio.bpf.c) */
SEC("tp_btf/block_io_start")
int BPF_PROG(io_start_stash, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct io_start_val v = { .ns = bpf_ktime_get_ns(), .cg = bpf_get_current_cgroup_id() };

	bpf_map_update_elem(&io_stash, &key, &v, BPF_ANY);
	return 0;
}

/* the completion's stash lookup and delete only */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_done_stash, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct io_start_val *v = bpf_map_lookup_elem(&io_stash, &key);

	if (!v)
		return 0;
	keep(0, v->ns);
	bpf_map_delete_elem(&io_stash, &key);
	return 0;
}

/* the same stash in a hash that allocates its elements at update
   (BPF_F_NO_PREALLOC: the kernel's per-CPU bpf_mem_alloc caches, instead of
   the preallocated hash's shared free list) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct io_start_val);
} io_stash_np SEC(".maps");

SEC("tp_btf/block_io_start")
int BPF_PROG(io_start_stash_np, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct io_start_val v = { .ns = bpf_ktime_get_ns(), .cg = bpf_get_current_cgroup_id() };

	bpf_map_update_elem(&io_stash_np, &key, &v, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_done_stash_np, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct io_start_val *v = bpf_map_lookup_elem(&io_stash_np, &key);

	if (!v)
		return 0;
	keep(0, v->ns);
	bpf_map_delete_elem(&io_stash_np, &key);
	return 0;
}

/* the completion's recording only (zone slot, histogram, bytes), no stash */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_done_record, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 cg = bpf_get_current_cgroup_id();

	st_record(&part_ns, cg, nr_bytes);
	st_add(&part_bytes, cg, nr_bytes);
	return 0;
}
