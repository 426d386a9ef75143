/*
 * tcp.d -- TCP connect latency, smoothed RTT and retransmits per zone,
 *          SmartOS / illumos
 *
 * Probes:
 *   tcp:::connect-request  usr/src/uts/common/inet/tcp/tcp.c tcp_do_connect():
 *            the first SYN of an active open is sent.  args[1]: csinfo_t
 *            from the conn's ip_xmit_attr_t (ip.d.in translator): cs_cid is
 *            ixa_conn_id, stable for the connection; cs_zoneid is the zone
 *            of the connection's credential (ixa_cred->cr_zone->zone_id) on
 *            an exclusive stack, ixa_zoneid on the shared one.
 *   tcp:::connect-established  usr/src/uts/common/inet/tcp/tcp_input.c
 *            tcp_input_data(): the SYN-ACK of an active open arrived.
 *            args[1]: csinfo_t as above.
 *   tcp:::connect-refused  usr/src/uts/common/inet/tcp/tcp_input.c
 *            tcp_input_data(): an RST answered the SYN.  args[1]: csinfo_t.
 *   tcp:::send  usr/src/uts/common/inet/tcp/tcp_output.c tcp_send_data():
 *            a segment goes to IP.  args[1]: csinfo_t; args[3]: tcpsinfo_t,
 *            whose tcps_retransmit is 1 for a retransmission (tcp.d.in).
 *   fbt::tcp_set_rto:entry  usr/src/uts/common/inet/tcp/tcp_input.c
 *            tcp_set_rto(): called once per RTT sample, before the smoothing
 *            update.  args[0]: the tcp_t; its tcp_rtt_sa (hrtime_t) holds 8 x
 *            the smoothed RTT in ns (inet/tcp.h); its tcp_connp the conn_t.
 * Measure: active-open connect latency; the connection's smoothed RTT each
 *          time a new RTT sample arrives; retransmitted segments.
 * Units:   nanoseconds; counts.
 * Key:     the connection's zone id, never the current thread's (these
 *          probes fire in interrupt and squeue context): cs_zoneid for the
 *          tcp provider; for the fbt probe the same rule as ip.d.in's
 *          cs_zoneid, from the conn_t (inet/ipclassifier.h): the zone of
 *          conn_cred (sys/cred_impl.h cr_zone) unless the conn is on the
 *          shared stack (conn_netstack->netstack_stackid == 0,
 *          GLOBAL_NETSTACKID) or its credential is missing, has no zone or
 *          has cr_uid -1 (the translator's exceptions), then conn_zoneid.
 *          conn_zoneid alone is wrong: tcp_create_common() (tcp.c) sets it to
 *          GLOBAL_ZONEID for every connection of an exclusive-IP stack, which
 *          every SmartOS zone has.  Eager (accepted) connections take the
 *          listener's credential (conn_inherit_parent(), inet/ip), a
 *          connect() the caller's (tcp_do_connect()).  The zone layer maps
 *          zoneids to zonenames at poll time.
 * Contract:
 *   @connect_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @connect_failed[zoneid] = count()
 *   @srtt_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @retransmits[zoneid] = count()
 * Caveats: tcpsinfo_t has no RTT, hence fbt on tcp_set_rto (a static
 *          function: check `dtrace -lv -n fbt::tcp_set_rto:entry` on each
 *          platform image; older illumos declared it tcp_set_rto(tcp_t *,
 *          time_t) with tcp_rtt_sa in milliseconds, which this script does
 *          not read right).  SRTT is tcp_rtt_sa >> 3; 0 before the first
 *          sample (skipped).  Connects begun before the program are not
 *          timed; connect-refused counts only RST answers to the SYN: a
 *          connect that times out fires no connect probe and leaves its
 *          stamp (keyed by a cs_cid never reused, so it is never misread).
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
	this->conn = args[0]->tcp_connp;
	this->zoneid =
	    this->conn->conn_netstack->netstack_stackid == 0 ||
	    this->conn->conn_cred == NULL ||
	    this->conn->conn_cred->cr_zone == NULL ||
	    this->conn->conn_cred->cr_uid == -1 ?
	    this->conn->conn_zoneid : this->conn->conn_cred->cr_zone->zone_id;
	@srtt_ns[this->zoneid] =
	    llquantize(args[0]->tcp_rtt_sa >> 3, 10, 3, 9, 100);
}
