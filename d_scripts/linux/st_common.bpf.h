/*
 * st_common.bpf.h -- what the libbpf engine's programs share (*.bpf.c here).
 *
 * Zones are slots.  st_slot (a preallocated hash, cgroup-v2 id -> u32)
 * gives each zone a slot index the first time it has an event; every
 * per-zone aggregation is then a BPF_F_MMAPABLE array indexed by that slot
 * (a histogram: struct st_hist; a counter: one __u64), so user space reads
 * every zone of a map as one memory view, with no system call, and only
 * the slots st_touched marks as changed since its last read.  Slots come
 * from st_free, a queue user space fills with 0..max_zones-1 before the
 * programs attach and gives a reclaimed zone's slot back to (zeroed) only
 * a reclaim interval after its cgroup is gone, so that no program still
 * holding the old slot can write into a new zone's.  st_owner[slot] is the
 * cgroup id the slot was given to.  st_gen[ST_GEN_ZONES] is raised by user
 * space each time it takes a zone's slot away, st_gen[ST_GEN_MIGRATIONS]
 * by runqueue.bpf.c each time the kernel moves tasks to another cgroup: a
 * program that keeps a slot beside its own state (runqueue.bpf.c's task
 * storage) looks it up again when either has changed.
 *
 * Histograms are written with atomic adds, shared by the CPUs.  Not per-CPU:
 * a per-CPU value is allocated for every possible CPU, which on a 64-CPU
 * host would make each zone's histogram 64 times larger; a zone's events
 * rarely hit the same bucket on two CPUs at once.  No exact sum beside the
 * buckets: one counter every event of a zone writes would move between the
 * CPUs running the zone's threads at every event (the meters' .sum is
 * estimated from the buckets, as on the other engines).  Nothing in the
 * event path allocates: the hash is preallocated, the arrays are whole
 * from load, so the memory is what max_zones says from the start (README,
 * "The libbpf engine").
 *
 * A histogram's value starts with a bitmap of its non-zero buckets (the
 * event that brings a bucket from 0 to 1 sets its bit), so user space
 * finds a zone's buckets in 80 bytes instead of scanning 593 counts.
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
#define ST_NZ_WORDS 10 /* 640 bits >= ST_HIST_BUCKETS */

/* the engine sizes every zone-keyed map with bpf_map__set_max_entries
   (its max_zones option) before loading; this is only the default */
#define ST_MAX_ZONES 1000

/* st_stats slots: must match STAT_SLOTS in smartos_telemetry/engines/libbpf/engine.py */
#define ST_ZONES_FULL 0    /* an event of a zone the zone maps had no room for */
#define ST_PENDING_FULL 1  /* a start stamp (I/O, SYN) the in-flight map had no room for */
#define ST_NO_STORAGE 2    /* bpf_task_storage_get gave nothing (busy or out of memory) */
#define ST_STAT_SLOTS 4

struct st_hist {
	__u64 nonzero[ST_NZ_WORDS]; /* bit i: slots[i] is not 0 */
	__u64 slots[ST_HIST_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_STAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} st_stats SEC(".maps");

/* the engine sizes st_slot, st_free, st_owner, st_touched and every zone
   array with bpf_map__set_max_entries (max_zones) before loading */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ST_MAX_ZONES);
	__type(key, __u64);
	__type(value, __u32);
} st_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, ST_MAX_ZONES);
	__type(value, __u32);
} st_free SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ST_MAX_ZONES);
	__type(key, __u32);
	__type(value, __u64);
} st_owner SEC(".maps");

/* 1: the slot had an event since user space last read it (user space sets
   0 before it reads the slot, so an event during the read marks it again) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ST_MAX_ZONES);
	__type(key, __u32);
	__type(value, __u64);
} st_touched SEC(".maps");

#define ST_GEN_ZONES 0      /* written by user space only */
#define ST_GEN_MIGRATIONS 1 /* raised by the programs only */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} st_gen SEC(".maps");

#define ST_NO_SLOT 0xffffffffU

static __always_inline void st_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&st_stats, &slot);

	if (n)
		*n += 1; /* per-CPU: no other writer */
}

/* The log-linear bucket of v: loglinear.py's bucket_index for v < 2^40.
   (A binary search for the top bit: clang 14's BPF back end crashes on
   __builtin_clzll.) */
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


/* Zone cg's slot, given from st_free on its first event; ST_NO_SLOT,
   counted, when every slot is taken.  The owner is written before the
   slot is published, so user space never sees a slot without it.  If
   another CPU published cg first, the slot popped here goes back. */
static __always_inline __u32 st_slot_of(__u64 cg)
{
	__u32 *s = bpf_map_lookup_elem(&st_slot, &cg);
	__u32 slot;
	__u64 *owner;

	if (s)
		return *s;
	if (bpf_map_pop_elem(&st_free, &slot)) {
		st_count(ST_ZONES_FULL);
		return ST_NO_SLOT;
	}
	owner = bpf_map_lookup_elem(&st_owner, &slot);
	if (owner)
		*owner = cg;
	if (bpf_map_update_elem(&st_slot, &cg, &slot, BPF_NOEXIST) == 0)
		return slot;
	bpf_map_push_elem(&st_free, &slot, 0);
	s = bpf_map_lookup_elem(&st_slot, &cg);
	if (s)
		return *s;
	st_count(ST_ZONES_FULL);
	return ST_NO_SLOT;
}

static __always_inline void st_touch(__u32 slot)
{
	__u64 *t = bpf_map_lookup_elem(&st_touched, &slot);

	/* read first: the line stays shared until user space clears it */
	if (t && !*t)
		*t = 1;
}

/* One event of value v in slot's histogram of map (a zone array). */
static __always_inline void st_record_slot(void *map, __u32 slot, __u64 v)
{
	struct st_hist *h = bpf_map_lookup_elem(map, &slot);
	__u32 i = st_bucket(v);

	if (!h)
		return;
	/* the verifier needs the bound stated where the index is used */
	barrier_var(i);
	if (i >= ST_HIST_BUCKETS)
		return;
	if (__sync_fetch_and_add(&h->slots[i], 1) == 0)
		__sync_fetch_and_or(&h->nonzero[i / 64], 1ULL << (i % 64));
	st_touch(slot);
}

/* Add n to slot's counter in map (a zone array of __u64). */
static __always_inline void st_add_slot(void *map, __u32 slot, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(map, &slot);

	if (!c)
		return;
	__sync_fetch_and_add(c, n);
	st_touch(slot);
}

static __always_inline void st_record(void *map, __u64 cg, __u64 v)
{
	__u32 slot = st_slot_of(cg);

	if (slot != ST_NO_SLOT)
		st_record_slot(map, slot, v);
}

static __always_inline void st_add(void *map, __u64 cg, __u64 n)
{
	__u32 slot = st_slot_of(cg);

	if (slot != ST_NO_SLOT)
		st_add_slot(map, slot, n);
}

/* The cgroup-v2 id of a socket: the cgroup of the task that created it.
   tp_btf arguments are BTF pointers, so the chain is read with direct
   (fault-checked, CO-RE relocated) loads rather than probe-read helpers. */
static __always_inline __u64 st_sock_cgroup(const struct sock *sk)
{
	return sk->sk_cgrp_data.cgroup->kn->id;
}

/* A per-zone aggregation: value_type per slot, mapped by user space. */
#define ST_ZONE_ARRAY(name, value_type)               \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_ARRAY);     \
		__uint(map_flags, BPF_F_MMAPABLE);    \
		__uint(max_entries, ST_MAX_ZONES);    \
		__type(key, __u32);                   \
		__type(value, value_type);            \
	} name SEC(".maps")

#endif /* ST_COMMON_BPF_H */
