/*
 * st_common.bpf.h -- what the libbpf engine's programs share (*.bpf.c here).
 *
 * Per-zone histograms: one BPF_MAP_TYPE_HASH per distribution, cgroup-v2 id
 * -> struct st_hist (the bucket counts), written with atomic adds.  Not a
 * per-CPU map: a per-CPU value is allocated for every possible CPU, which
 * on a 64-CPU host would make each zone's histogram 64 times larger; a
 * shared value has one size whatever the CPU count, and a zone's events
 * rarely hit the same bucket on two CPUs at once.  No exact sum beside the
 * buckets: one counter every event of a zone writes would move between the
 * CPUs running the zone's threads at every event (the meters' .sum is
 * estimated from the buckets, as on the other engines).  Hash maps are
 * preallocated, so an insert in the scheduler path never allocates, and
 * the memory is what max_zones says from the start (README, "The libbpf
 * engine").
 *
 * Buckets: the log-linear index of smartos_telemetry/engines/bpftrace/loglinear.py
 * (16 linear sub-buckets per power of two, at most 6.25% wide) for values
 * below 2^40 ns (18.3 minutes): indexes 0..591, the same buckets as the
 * bpftrace scripts.  Index 592 holds every value >= 2^40 (an open-ended
 * overflow bucket), which keeps a histogram at 593 slots instead of 976.
 *
 * Health: st_stats, a per-CPU array the engine sums into its drops and
 * errors (a zone past max_zones, a start stamp that found no room, a task
 * storage that could not be had) -- never silent.
 */
#ifndef ST_COMMON_BPF_H
#define ST_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define ST_HIST_BUCKETS 593
#define ST_OVERFLOW_INDEX 592
#define ST_OVERFLOW_SHIFT 40

/* the engine sizes every zone-keyed map with bpf_map__set_max_entries
   (its max_zones option) before loading; this is only the default */
#define ST_MAX_ZONES 1000

/* st_stats slots: must match STAT_SLOTS in smartos_telemetry/engines/libbpf/engine.py */
#define ST_ZONES_FULL 0    /* an event of a zone the zone maps had no room for */
#define ST_PENDING_FULL 1  /* a start stamp (I/O, SYN) the in-flight map had no room for */
#define ST_NO_STORAGE 2    /* bpf_task_storage_get gave nothing (busy or out of memory) */
#define ST_STAT_SLOTS 4

struct st_hist {
	__u64 slots[ST_HIST_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_STAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} st_stats SEC(".maps");

/* the value a new zone's histogram starts from (bpf_map_update_elem copies
   it; 4,744 bytes do not fit on the 512-byte BPF stack) */
static const struct st_hist st_zero_hist;

static __always_inline void st_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&st_stats, &slot);

	if (n)
		*n += 1; /* per-CPU: no other writer */
}

/* The log-linear bucket of v: loglinear.py's bucket_index for v < 2^40. */
static __always_inline __u32 st_bucket(__u64 v)
{
	__u64 x = v;
	__u32 e = 0;

	if (v < 16)
		return v;
	if (v >> ST_OVERFLOW_SHIFT)
		return ST_OVERFLOW_INDEX;
	if (x >> 32) { x >>= 32; e += 32; }
	if (x >> 16) { x >>= 16; e += 16; }
	if (x >> 8) { x >>= 8; e += 8; }
	if (x >> 4) { x >>= 4; e += 4; }
	if (x >> 2) { x >>= 2; e += 2; }
	if (x >> 1) { e += 1; }
	/* 4 <= e <= 39 here, so the index is 16..591 */
	return (e - 3) * 16 + ((v >> (e - 4)) & 15);
}

/* The value of zone cg in map (a cgroup id -> value hash), made from zero
   on first use; NULL, counted, when the map is full.  The update's result
   is not needed: EEXIST means another CPU made it first, E2BIG that the
   map is full, and the second lookup tells the two apart. */
static __always_inline void *st_zone_value(void *map, __u64 cg, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, &cg);

	if (v)
		return v;
	bpf_map_update_elem(map, &cg, zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, &cg);
	if (!v)
		st_count(ST_ZONES_FULL);
	return v;
}

static __always_inline void st_record(void *map, __u64 cg, __u64 v)
{
	struct st_hist *h = st_zone_value(map, cg, &st_zero_hist);
	__u32 i = st_bucket(v);

	if (!h)
		return;
	/* the verifier needs the bound stated where the index is used */
	barrier_var(i);
	if (i >= ST_HIST_BUCKETS)
		return;
	__sync_fetch_and_add(&h->slots[i], 1);
}

/* Add n to zone cg's counter in a cgroup id -> __u64 hash. */
static __always_inline void st_add(void *map, __u64 cg, __u64 n)
{
	static const __u64 zero;
	__u64 *c = st_zone_value(map, cg, &zero);

	if (c)
		__sync_fetch_and_add(c, n);
}

/* The cgroup-v2 id of a socket: the cgroup of the task that created it.
   tp_btf arguments are BTF pointers, so the chain is read with direct
   (fault-checked, CO-RE relocated) loads rather than probe-read helpers. */
static __always_inline __u64 st_sock_cgroup(const struct sock *sk)
{
	return sk->sk_cgrp_data.cgroup->kn->id;
}

#define ST_ZONE_HASH(name, value_type)                \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_HASH);      \
		__uint(max_entries, ST_MAX_ZONES);    \
		__type(key, __u64);                   \
		__type(value, value_type);            \
	} name SEC(".maps")

#endif /* ST_COMMON_BPF_H */
