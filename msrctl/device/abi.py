"""The msrdrv user-space ABI (dkms/msrdrv.h) for Python, through cffi.

The C declarations live once, in abi_build.py; they are compiled ahead of
time into _abi_cffi.py (cffi's out-of-line ABI mode) so that importing this
module does not load cffi's C parser, which dominates start-up time.
tests/host/device/test_abi.py compiles the real header and checks every size,
offset and ioctl number below against it, so the two cannot drift.
"""

from __future__ import annotations

from ._abi_cffi import ffi

libc = ffi.dlopen(None)

DEVICE = "/dev/msrdrv"
ABI_VERSION = 1

OP_NOP = 0
OP_READ = 1
OP_WRITE = 2
OP_STOP = 3
OP_RDTSC = 4
OP_NAMES = {OP_NOP: "nop", OP_READ: "read", OP_WRITE: "write", OP_STOP: "stop", OP_RDTSC: "rdtsc"}

OPF_MASKED = 1 << 0
BATCH_SNAPSHOT = 1 << 0
CPU_SELF = 0xFFFFFFFF

FEAT_MASKED_WRITE = 1 << 0
FEAT_MULTI_CPU = 1 << 1
FEAT_LEGACY_CMDS = 1 << 2
FEAT_ALLOWLIST = 1 << 3
FEAT_SNAPSHOT = 1 << 4
FEAT_PROTECTED = 1 << 5
FEAT_SAMPLER = 1 << 6
FEAT_KERNEL_CONTROL = 1 << 7

ACCESS_RAWIO = 1 << 0
ACCESS_WRITE = 1 << 1
ACCESS_LOCKDOWN = 1 << 2
ACCESS_ADMIN = 1 << 3
ACCESS_FMODE_WRITE = 1 << 4

ALLOW_READ = 1 << 0
ALLOWLIST_MAX = 4096

MSR_VEC_LIMIT = 32

SAMPLER_MAX_OPS = 64
SAMPLER_CPUS_SIZE_MAX = 1024
SAMPLER_PERIOD_MAX_NS = 60_000_000_000
RING_OFFLINE = 0
RING_RUNNING = 1
RING_STOPPED = 2
REC_SAMPLE = 0
REC_OFFLINE = 1
REC_ONLINE = 2
REC_REVOKED = 3
REC_NAMES = {REC_SAMPLE: "sample", REC_OFFLINE: "offline", REC_ONLINE: "online", REC_REVOKED: "revoked"}
IOC_MAGIC = 0xC6  # 0xB7 collides with nsfs

# asm-generic/ioctl.h encoding, which x86 uses.
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


IOC_INFO = _ioc(_IOC_READ, IOC_MAGIC, 0x00, ffi.sizeof("struct msrdrv_info"))
IOC_BATCH = _ioc(_IOC_READ | _IOC_WRITE, IOC_MAGIC, 0x01, ffi.sizeof("struct msrdrv_batch"))
IOC_SET_ALLOWLIST = _ioc(_IOC_WRITE, IOC_MAGIC, 0x02, ffi.sizeof("struct msrdrv_allowlist"))
IOC_GET_ALLOWLIST = _ioc(_IOC_READ | _IOC_WRITE, IOC_MAGIC, 0x03, ffi.sizeof("struct msrdrv_allowlist"))
IOC_SAMPLER_START = _ioc(_IOC_READ | _IOC_WRITE, IOC_MAGIC, 0x04, ffi.sizeof("struct msrdrv_sampler_start"))
IOC_SAMPLER_CONSUME = _ioc(_IOC_WRITE, IOC_MAGIC, 0x05, ffi.sizeof("struct msrdrv_sampler_consume"))
IOC_SAMPLER_STOP = _ioc(_IOC_NONE, IOC_MAGIC, 0x06, 0)
IOCTL_MSR_CMDS = _ioc(_IOC_NONE, 223, 1, 0)


def ioctl(fd: int, request: int, arg: object) -> int:
    """Call ioctl(2) with a cdata pointer; returns 0 or -errno."""
    ret: int = libc.ioctl(fd, ffi.cast("unsigned long", request), ffi.cast("void *", arg))
    return -ffi.errno if ret < 0 else ret


def address(cdata: object) -> int:
    """A buffer's address as the kernel takes it (__u64)."""
    return int(ffi.cast("uintptr_t", cdata))
