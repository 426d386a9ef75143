"""Delete a running bpftrace's map rows from outside it, with the bpf(2) syscall.

bpftrace 0.17 has no way to delete a map key from user space (``clear()``
and ``delete()`` run inside the script), so rows of cgroups that are gone
would stay until the child exits.  The kernel lets any process holding
CAP_SYS_ADMIN open a map by its id (``BPF_MAP_GET_FD_BY_ID``,
kernel/bpf/syscall.c ``bpf_map_get_fd_by_id``) and delete keys from it
(``BPF_MAP_DELETE_ELEM``), so the engine prunes the maps of the child it
runs directly:

* the child's maps are found in ``/proc/PID/fdinfo`` (``map_id:`` lines,
  kernel/bpf/syscall.c ``bpf_map_show_fdinfo``) -- only maps this child
  holds, never another program's;
* a map is picked by the name bpftrace gave it (``BPF_OBJ_GET_INFO_BY_FD``;
  bpftrace 0.17 names ``@x`` ``AT_x``, cut to the kernel's 15 characters);
* keys are walked with ``BPF_MAP_GET_NEXT_KEY`` and a key is deleted when
  its first 8 bytes (bpftrace stores every integer key as a native 64-bit
  word) hold one of the ids to forget.

Pruning deletes keys, the opposite of what the maps are for (cumulative
values), so the engine calls it only between print rounds (bpftrace's own
printing walks keys with get-next-key, and a key deleted under that walk
restarts it) and only for ids whose last values it has already read.

The other ways were weighed: restarting the child with its cumulative
values carried over loses every event of the restart gap and recompiles
the script; ``sched_process_exit`` + ``delete()`` in the script is used for
per-thread state (runqueue.bt) but cannot know when a cgroup goes away.
"""

import ctypes
import os
import platform
import struct

from smartos_telemetry.errors import EngineError

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "ppc64": 361, "s390x": 351,
                "riscv64": 280}
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_OBJ_NAME_LEN = 16
ENOENT = 2

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _ElemAttr(ctypes.Structure):  # union bpf_attr, the map-element commands
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value_or_next", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


class _IdAttr(ctypes.Structure):  # union bpf_attr, the *_GET_FD_BY_ID commands
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):  # union bpf_attr, BPF_OBJ_GET_INFO_BY_FD
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):  # struct bpf_map_info, the fields read here
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", ctypes.c_uint32),
                ("pad", ctypes.c_uint8 * 64)]


def _bpf(cmd, attr):
    number = _BPF_SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(0, f"bpf(2) syscall number unknown on {platform.machine()}")
    rc = _syscall(number, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def map_ids(pid):
    """The ids of the BPF maps process ``pid`` holds open."""
    ids = set()
    base = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(base)
    except OSError:
        return ids
    for fd in fds:
        try:
            with open(os.path.join(base, fd), encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return ids


def bpftrace_map_name(name):
    """The kernel name bpftrace 0.17 gives map ``@name``."""
    return ("AT_" + name)[:BPF_OBJ_NAME_LEN - 1]


class Map:
    """One BPF map opened by id; close() it (or use ``with``)."""

    def __init__(self, map_id):
        self.fd = _bpf(BPF_MAP_GET_FD_BY_ID, _IdAttr(map_id, 0, 0))
        info = _MapInfo()
        _bpf(BPF_OBJ_GET_INFO_BY_FD,
             _InfoAttr(self.fd, ctypes.sizeof(info), ctypes.addressof(info)))
        self.id = info.id
        self.name = info.name.decode("ascii", "replace")
        self.key_size = info.key_size
        self.max_entries = info.max_entries

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def keys(self):
        """Every key (bytes), read once: a snapshot of the key set."""
        out = []
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            cur = ctypes.create_string_buffer(prev, self.key_size) if prev is not None else None
            attr = _ElemAttr(self.fd, 0, ctypes.addressof(cur) if cur is not None else 0,
                             ctypes.addressof(nxt), 0)
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError as exc:
                if exc.errno == ENOENT:
                    return out
                raise
            prev = nxt.raw
            out.append(prev)
            if len(out) > self.max_entries:
                # keys deleted under the walk send it back to the start
                raise EngineError("bpftrace", f"map {self.name}: key walk did not end")

    def delete(self, key):
        """Delete ``key``; False if it was not there."""
        buf = ctypes.create_string_buffer(key, self.key_size)
        try:
            _bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(self.fd, 0, ctypes.addressof(buf), 0, 0))
        except OSError as exc:
            if exc.errno == ENOENT:
                return False
            raise
        return True


def delete_rows(pid, names, first_keys):
    """Delete every key of ``pid``'s maps ``@name`` (for each of ``names``)
    whose first 64-bit word is in ``first_keys``.

    Returns ``(keys deleted, keys left)`` over those maps.  Raises OSError when
    the maps cannot be opened (no CAP_SYS_ADMIN, the child is gone).
    """
    wanted = {bpftrace_map_name(n) for n in names}
    deleted = left = 0
    word = struct.Struct("=Q")
    for map_id in sorted(map_ids(pid)):
        try:
            m = Map(map_id)
        except OSError as exc:
            if exc.errno == ENOENT:
                continue  # freed since fdinfo was read
            raise
        with m:
            if m.name not in wanted or m.key_size < 8:
                continue
            for key in m.keys():
                if word.unpack_from(key)[0] in first_keys:
                    deleted += m.delete(key)
                else:
                    left += 1
    return deleted, left
