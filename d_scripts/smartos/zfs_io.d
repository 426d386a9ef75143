/*
 * zfs_io.d -- ZFS I/O latency and I/O-throttle delay per zone, SmartOS
 *
 * Probes:
 *   sdt:::zfs-zone-latency  usr/src/uts/common/fs/zfs/zfs_zone.c
 *            zfs_zone_zio_done(): a leaf-vdev I/O completed (called from
 *            vdev_disk_io_done(); ioctls are skipped).  arg0: io_zoneid,
 *            the zone whose thread created the zio (zfs_zone_zio_init(),
 *            from curzone); arg1: the zio type (ZIO_TYPE_READ 1,
 *            ZIO_TYPE_WRITE 2; others, such as frees, are not counted
 *            here); arg2: microseconds from dispatch (zfs_zone_zio_start())
 *            to completion, each end truncated to us, queue wait not
 *            included.
 *   sdt:::zfs-zone-wait  usr/src/uts/common/fs/zfs/zfs_zone.c
 *            zfs_zone_io_throttle(): fired in the delayed zone's own thread
 *            just before drv_usecwait(), so it is the delay actually
 *            served.  arg0: the zone's id; arg1: the caller's operation
 *            (ZFS_ZONE_IOP_READ 0 or ZFS_ZONE_IOP_LOGICAL_WRITE 2; not used);
 *            arg2: the delay in microseconds.
 * Measure: latency of the zone's reads and writes at the disk, one sample
 *          per leaf-vdev I/O (a write to a two-way mirror counts twice);
 *          the delay the I/O throttle injects into the zone's threads.
 *          Asynchronous (TXG) writes are issued by zone 0's sync thread, so
 *          a zone's write samples are mostly its synchronous writes.
 * Units:   nanoseconds (the probes' microseconds x 1000); counts.
 * Key:     zoneid (the latency probe fires in I/O completion context, not in
 *          the zone's own thread, so zonename would be wrong).  The zone
 *          layer maps zoneid to zonename at poll time; zoneids change when a
 *          zone reboots.
 * Contract:
 *   @zio_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @throttle_ns[zoneid] = llquantize(ns, 10, 3, 9, 100)
 *   @throttle_delay_ns[zoneid] = sum(ns)
 *   @throttle_count[zoneid] = count()
 * Caveats: unstable kernel-private SDT probes (zfs_zone.c); the throttle
 *          adds delay in 5 us steps up to zfs_zone_delay_ceiling (100 us),
 *          re-evaluated every 250 ms, and a logical write during heavy TXG
 *          syncing is delayed zfs_zone_txg_throttle_scale (2) times that,
 *          up to 200 us.  zone_vfs's delay_cnt / delay_time (us) kstats
 *          count the same delays.
 */

sdt:::zfs-zone-latency
/arg1 == 1 || arg1 == 2/
{
	@zio_ns[arg0] = llquantize(arg2 * 1000, 10, 3, 9, 100);
}

sdt:::zfs-zone-wait
{
	@throttle_ns[arg0] = llquantize(arg2 * 1000, 10, 3, 9, 100);
	@throttle_delay_ns[arg0] = sum(arg2 * 1000);
	@throttle_count[arg0] = count();
}
