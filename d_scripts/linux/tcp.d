/*
 * tcp.d -- TCP connect latency, smoothed RTT and retransmits per zone
 *          (cgroup v2), Linux, Oracle DTrace 2.x
 *
 * Probes:  rawtp:sock::inet_sock_set_state (arg0: sock, arg1: old state,
 *                                           arg2: new state)
 *          rawtp:tcp::tcp_probe (arg0: sock, arg1: skb)
 *          rawtp:tcp::tcp_retransmit_skb (arg0: sock, arg1: skb)
 * Measure: active-open connect latency (SYN_SENT -> ESTABLISHED); the
 *          kernel's smoothed RTT at each ACK; retransmitted segments.
 * Units:   nanoseconds (srtt: tcp_sock.srtt_us / 8 x 1000); counts.
 * Key:     the cgroup-v2 id of the SOCKET, sk_cgrp_data.cgroup->kn->id --
 *          never the current task's: these probes often fire in softirq
 *          context, in whatever task was interrupted.
 * Contract:
 *   @connect_ns[cgroup_id] = llquantize(ns, 10, 3, 9, 100)
 *   @connect_failed[cgroup_id] = count()
 *   @srtt_ns[cgroup_id] = llquantize(ns, 10, 3, 9, 100)
 *   @retransmits[cgroup_id] = count()
 * Caveats: connects begun before the program are not timed; IPv4 and IPv6.
 *          TCP states: 1 ESTABLISHED, 2 SYN_SENT.
 */

rawtp:sock::inet_sock_set_state
/arg2 == 2 && ((struct sock *)arg0)->sk_protocol == 6/
{
	syn_sent[arg0] = timestamp;
}

rawtp:sock::inet_sock_set_state
/arg1 == 2 && syn_sent[arg0] && arg2 == 1/
{
	@connect_ns[((struct sock *)arg0)->sk_cgrp_data.cgroup->kn->id] =
	    llquantize(timestamp - syn_sent[arg0], 10, 3, 9, 100);
	syn_sent[arg0] = 0;
}

rawtp:sock::inet_sock_set_state
/arg1 == 2 && syn_sent[arg0] && arg2 != 1/
{
	@connect_failed[((struct sock *)arg0)->sk_cgrp_data.cgroup->kn->id] = count();
	syn_sent[arg0] = 0;
}

rawtp:tcp::tcp_probe
{
	@srtt_ns[((struct sock *)arg0)->sk_cgrp_data.cgroup->kn->id] =
	    llquantize((((struct tcp_sock *)arg0)->srtt_us >> 3) * 1000, 10, 3, 9, 100);
}

rawtp:tcp::tcp_retransmit_skb
{
	@retransmits[((struct sock *)arg0)->sk_cgrp_data.cgroup->kn->id] = count();
}
