/*
 * tcp.bpf.c -- TCP connect latency, smoothed RTT and retransmits per zone (cgroup v2),
 *              Linux, libbpf CO-RE
 *
 * Probes:   tp_btf/inet_sock_set_state (SYN_SENT -> ESTABLISHED, or not)
 *           tp_btf/tcp_probe (each ACK received on an established socket)
 *           tp_btf/tcp_retransmit_skb
 * Measure:  active-open connect latency; srtt as the kernel smooths it
 *           (tcp_sock.srtt_us >> 3, what the tcp_probe tracepoint reports);
 *           retransmitted segments.
 * Units:    nanoseconds (srtt: the kernel's microseconds x 1000); counts.
 * Key:      the cgroup-v2 id of the SOCKET (sk->sk_cgrp_data.cgroup, the
 *           cgroup of the task that created it) -- never the current task's:
 *           these tracepoints often run in softirq context, in whatever task
 *           was interrupted (as tcp.bt).
 * Contract:
 *   @connect_ns[cgroup_id, bucket] = count()   log-linear (st_common.bpf.h), by (cgroup_id,)
 *   @connect_failed[cgroup_id] = count()       SYN_SENT -> anything but ESTABLISHED
 *   @srtt_ns[cgroup_id, bucket] = count()      log-linear, one sample per tcp_probe
 *   @retransmits[cgroup_id] = count()          every tcp_retransmit_skb, as tcp.bt
 * Caveats:  IPv4 and IPv6; connects begun before the program are not timed;
 *           at most the engine's max_pending connects are timed at once
 *           (syn_start), past which drops["pending_full"] counts them.
 */
// loglinear: @connect_ns @srtt_ns

#include "st_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define ST_IPPROTO_TCP 6
#define ST_TCP_ESTABLISHED 1
#define ST_TCP_SYN_SENT 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* the socket's address */
	__type(value, __u64); /* when it entered SYN_SENT */
} syn_start SEC(".maps");

ST_ZONE_ARRAY(connect_ns, struct st_hist);
ST_ZONE_ARRAY(srtt_ns, struct st_hist);
ST_ZONE_ARRAY(connect_failed, __u64);
ST_ZONE_ARRAY(retransmits, __u64);

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	__u64 now, *t;

	if (sk->sk_protocol != ST_IPPROTO_TCP)
		return 0;
	if (newstate == ST_TCP_SYN_SENT) {
		now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&syn_start, &key, &now, BPF_ANY))
			st_count(ST_PENDING_FULL);
		return 0;
	}
	if (oldstate != ST_TCP_SYN_SENT)
		return 0;
	t = bpf_map_lookup_elem(&syn_start, &key);
	if (!t)
		return 0;
	now = bpf_ktime_get_ns() - *t;
	bpf_map_delete_elem(&syn_start, &key);
	if (newstate == ST_TCP_ESTABLISHED)
		st_record(&connect_ns, st_sock_cgroup(sk), now);
	else
		st_add(&connect_failed, st_sock_cgroup(sk), 1);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_ack, struct sock *sk, const struct sk_buff *skb)
{
	/* struct sock is the start of struct tcp_sock; the verifier knows sk
	   only as a struct sock, so the tcp_sock field is read with a helper */
	__u32 srtt_us = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;

	st_record(&srtt_ns, st_sock_cgroup(sk), (__u64)srtt_us * 1000);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit, const struct sock *sk)
{
	st_add(&retransmits, st_sock_cgroup(sk), 1);
	return 0;
}
