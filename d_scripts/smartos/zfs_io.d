/*
 * zfs_io.d -- ZFS I/O latency and I/O-throttle delay per zone, SmartOS
 *
 * Probes:  sdt:::zfs-zone-latency (arg0: zoneid, arg1: zio type,
 *                                  arg2: latency in microseconds)
 *          sdt:::zfs-zone-wait    (arg0: zoneid, arg1: op type (0 read,
 *                                  1 write, 2 logical write),
 *                                  arg2: delay in microseconds)
 * Measure: latency of the zone's zio as the ZFS zone scheduler sees it; the
 *          delay the I/O throttle injects into the zone's threads (fires
 *          just before drv_usecwait(), so it is the delay actually served).
 * Units:   nanoseconds (the probes' microseconds x 1000); counts.
 * Key:     zoneid (the probes fire in zio and throttle context, not always
 *          in the zone's own thread, so zonename would be wrong).  The zone
 *          layer maps zoneid to zonename at poll time; zoneids change when a
 *          zone reboots.
 * Contract:
 *   @zio_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @throttle_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @throttle_delay_ns[zoneid] = sum(ns)
 *   @throttle_count[zoneid] = count()
 * Caveats: unstable kernel-private SDT probes (zfs_zone.c); the throttle
 *          adds delay in 5 us steps up to 100 us, re-evaluated every 250 ms.
 *          zone_vfs's delay_cnt / delay_time (us) kstats count the same.
 */

sdt:::zfs-zone-latency
{
	@zio_ns[arg0] = llquantize(arg2 * 1000, 10, 3, 9, 100);
}

sdt:::zfs-zone-wait
{
	@throttle_ns[arg0] = llquantize(arg2 * 1000, 10, 3, 9, 100);
	@throttle_delay_ns[arg0] = sum(arg2 * 1000);
	@throttle_count[arg0] = count();
}
