"""Which cgroup-v2 ids still exist: the test for reclaiming a dead zone's map entries.

A cgroup-v2 id is its kernfs node id, and kernfs hands out file handles
made of that id (``FILEID_KERNFS``, fs/kernfs/mount.c): ``open_by_handle_at``
on the unified mount opens a live cgroup and fails with ESTALE once it is
removed.  One system call per id, no walk of the hierarchy.  Ids are never
reused while the host runs (kernfs ids are 64-bit and only grow).
"""

import ctypes
import errno
import os
import struct

FILEID_KERNFS = 0xFE

_libc = ctypes.CDLL(None, use_errno=True)


class CgroupIds:
    """Liveness of cgroup ids under one cgroup-v2 mount."""

    def __init__(self, root=None):
        if root is None:
            from smartos_telemetry.zones.linux_cgroups import unified_root
            root = unified_root()
        self.root = root
        self._mount_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self._handle = ctypes.create_string_buffer(16)

    def alive(self, cgroup_id):
        """False only when the cgroup is known to be gone (ESTALE)."""
        struct.pack_into("<IiQ", self._handle, 0, 8, FILEID_KERNFS, cgroup_id)
        fd = _libc.open_by_handle_at(self._mount_fd, self._handle,
                                     os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if fd >= 0:
            os.close(fd)
            return True
        return ctypes.get_errno() != errno.ESTALE

    def close(self):
        if self._mount_fd is not None:
            os.close(self._mount_fd)
            self._mount_fd = None
