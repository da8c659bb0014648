"""The bpf(2) system call, for the few commands the kernel fast path needs.

Called through ctypes with attribute blocks packed by hand (layouts from include/uapi/linux/
bpf.h, `union bpf_attr`), so the kit needs neither libbpf nor bcc. Every file descriptor
returned is owned by the caller: closing a program's tcx link detaches it, which is why a
switch that dies leaves no program behind on its ports.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

# commands
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM = 0, 1, 2
PROG_LOAD, PROG_QUERY, LINK_CREATE = 5, 16, 28
# map and program types
MAP_HASH, MAP_ARRAY, MAP_PERCPU_ARRAY, MAP_LRU_HASH = 1, 2, 6, 9
PROG_SCHED_CLS = 3
ATTACH_TCX_INGRESS = 46  # enum bpf_attach_type, Linux 6.6

LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf(2) command failed; `log` holds the verifier's explanation for a program load."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"bpf {what}: {os.strerror(err)}" + (f"\n{log}" if log else ""))
        self.log = log


_NR_BPF = SYS_BPF.get(os.uname().machine)


def bpf(cmd: int, attr: bytes | bytearray | ctypes.Array[ctypes.c_char], what: str) -> int:
    """Run one bpf(2) command on the packed `attr`; its result, or BpfError."""
    if _NR_BPF is None:
        raise BpfError(errno.ENOSYS, f"bpf(2) system call number unknown on {os.uname().machine}")
    buf = attr if isinstance(attr, ctypes.Array) else ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = _libc.syscall(_NR_BPF, cmd, buf, len(buf))
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(ret)


def _name(name: str) -> bytes:
    return name.encode()[:15].ljust(16, b"\0")


def map_create(kind: int, key_size: int, value_size: int, max_entries: int, name: str) -> int:
    """A new map's file descriptor."""
    attr = struct.pack("<IIIIIII16s", kind, key_size, value_size, max_entries, 0, 0, 0, _name(name))
    return bpf(MAP_CREATE, attr, f"map create {name}")


class MapOps:
    """Element access on one map, reusing ctypes buffers (these run per learnt flow)."""

    def __init__(self, fd: int, key_size: int, value_size: int) -> None:
        self.fd = fd
        self.key = ctypes.create_string_buffer(max(key_size, 1))
        self.value = ctypes.create_string_buffer(max(value_size, 1))
        self._attr = ctypes.create_string_buffer(32)
        struct.pack_into("<IIQQQ", self._attr, 0, fd, 0, ctypes.addressof(self.key),
                         ctypes.addressof(self.value), 0)

    def _run(self, cmd: int, key: bytes, flags: int, what: str) -> int:
        ctypes.memmove(self.key, key, len(key))
        struct.pack_into("<Q", self._attr, 24, flags)
        return bpf(cmd, self._attr, what)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        ctypes.memmove(self.value, value, len(value))
        self._run(MAP_UPDATE_ELEM, key, flags, "map update")

    def lookup(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None when there is none."""
        try:
            self._run(MAP_LOOKUP_ELEM, key, 0, "map lookup")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return self.value.raw


def prog_load(kind: int, insns: bytes, name: str, license_: str = "Dual MIT/GPL") -> int:
    """Load a program; on refusal the BpfError carries the verifier log."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license_.encode())
    log = ctypes.create_string_buffer(LOG_SIZE)

    def attempt(level: int) -> int:
        attr = struct.pack("<IIQQIIQII16s", kind, len(insns) // 8, ctypes.addressof(code),
                           ctypes.addressof(lic), level, LOG_SIZE if level else 0,
                           ctypes.addressof(log) if level else 0, 0, 0, _name(name))
        return bpf(PROG_LOAD, attr, f"program load {name}")

    try:
        return attempt(0)
    except BpfError as exc:
        if exc.errno in (errno.EPERM, errno.ENOSYS):
            raise
        try:
            attempt(1)  # again, for the verifier's reasons
        except BpfError as again:
            raise BpfError(again.errno or errno.EINVAL, f"program load {name}",
                           log.value.decode(errors="replace")[-4000:]) from exc
        raise


def link_tcx_ingress(prog_fd: int, ifindex: int) -> int:
    """Attach a SCHED_CLS program at `ifindex`'s tcx ingress (after any others); the returned
    link fd keeps it attached until it is closed (by us, or by the kernel when we die)."""
    attr = struct.pack("<IIIIIIQ", prog_fd, ifindex, ATTACH_TCX_INGRESS, 0, 0, 0, 0)
    return bpf(LINK_CREATE, attr, f"tcx attach to ifindex {ifindex}")


def tcx_ingress_count(ifindex: int) -> int:
    """How many programs are attached at `ifindex`'s tcx ingress (in the caller's netns); for
    checks that nothing is left behind."""
    attr = bytearray(struct.pack("<IIIIQIIQQQQ", ifindex, ATTACH_TCX_INGRESS, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    bpf(PROG_QUERY, buf, f"query tcx ingress of ifindex {ifindex}")
    count: int = struct.unpack_from("<I", buf, 24)[0]
    return count


def possible_cpus() -> int:
    """How many per-CPU slots a per-CPU map value has (possible CPUs, not online ones)."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count
