/*
 * tcp.d -- TCP connect latency, smoothed RTT and retransmits per zone,
 *          SmartOS / illumos
 *
 * Probes:  tcp:::connect-request     (args[1]: csinfo_t, args[3]: tcpsinfo_t)
 *          tcp:::connect-established (the SYN-ACK arrived)
 *          tcp:::connect-refused     (RST in reply to the SYN)
 *          tcp:::send                (args[3]->tcps_retransmit on a resend)
 *          fbt::tcp_set_rto:entry    (args[0]: tcp_t *; called once per RTT
 *                                     sample, before the smoothing update)
 * Measure: active-open connect latency; the connection's smoothed RTT each
 *          time a new RTT sample arrives; retransmitted segments.
 * Units:   nanoseconds; counts.
 * Key:     the connection's zone id, csinfo_t.cs_zoneid (conn_zoneid for
 *          the fbt probe): the socket's zone, whatever thread the probe runs
 *          in.  The zone layer maps zoneids to zonenames at poll time.
 * Contract:
 *   @connect_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @connect_failed[zoneid] = count()
 *   @srtt_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @retransmits[zoneid] = count()
 * Caveats: tcpsinfo_t has no RTT, hence fbt on tcp_set_rto (a static
 *          function: check `dtrace -l -n fbt::tcp_set_rto:entry` on each
 *          platform image).  tcp_rtt_sa holds 8 x SRTT in nanoseconds, so
 *          SRTT is tcp_rtt_sa >> 3; 0 before the first sample (skipped).
 */

tcp:::connect-request
{
	connect_start[args[1]->cs_cid] = timestamp;
}

tcp:::connect-established
/connect_start[args[1]->cs_cid]/
{
	@connect_ns[args[1]->cs_zoneid] =
	    llquantize(timestamp - connect_start[args[1]->cs_cid], 10, 3, 9, 100);
	connect_start[args[1]->cs_cid] = 0;
}

tcp:::connect-refused
/connect_start[args[1]->cs_cid]/
{
	@connect_failed[args[1]->cs_zoneid] = count();
	connect_start[args[1]->cs_cid] = 0;
}

tcp:::send
/args[3]->tcps_retransmit == 1/
{
	@retransmits[args[1]->cs_zoneid] = count();
}

fbt::tcp_set_rto:entry
/args[0]->tcp_rtt_sa != 0/
{
	@srtt_ns[args[0]->tcp_connp->conn_zoneid] =
	    llquantize(args[0]->tcp_rtt_sa >> 3, 10, 3, 9, 100);
}
