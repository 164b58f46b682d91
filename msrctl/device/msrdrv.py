"""The msrctl library: open /dev/msrdrv once, fill a Batch, submit it in one ioctl.

    with Device() as dev:
        batch = Batch()
        tsc = batch.rdtsc(cpu=0)
        apic = [batch.read("IA32_APIC_BASE", cpu=c) for c in online_cpus()]
        dev.submit(batch)
        batch.check()
        print(batch.value(tsc), [hex(v) for v in batch.values()[1:]])

Ops run on CPU 0 unless given a cpu (as in the CLI and rdmsr); CPU_SELF
means whichever CPU issues the ioctl (Batch.self_cpu says which).

A Batch owns preallocated C buffers; `clear()` reuses them, so a measurement
loop allocates nothing per submission.  The kernel writes back only each op's
value and err (and the header's counts and self_cpu), so a submitted batch
can be submitted again unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ASK_FOR_LIST
from . import abi
from .abi import ffi

CPU_SELF = abi.CPU_SELF
_fcntl_ioctl = fcntl.ioctl  # module globals: the submit path looks up as little as it can
_IOC_BATCH = abi.IOC_BATCH
_INFO_REQ = ffi.cast("unsigned long", abi.IOC_INFO)
_ioctl = abi.libc.ioctl


class MsrError(Exception):
    """Base of every error the library raises; `errno` is set when one applies."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


class DeviceError(MsrError, OSError):
    """The device could not be opened or an ioctl failed as a whole.

    An OSError too, so `except OSError` around device code catches it;
    `errno` and `strerror` are those of the failed call."""

    def __init__(self, message: str, err: int = 0) -> None:
        MsrError.__init__(self, message, err)
        self.strerror = os.strerror(err) if err else None  # type: ignore[assignment]

    def __str__(self) -> str:
        return str(self.args[0])  # the whole message, not OSError's "[Errno N] strerror"


class OpError(MsrError):
    """One op of a submitted batch failed (see `index` and `errno`)."""

    def __init__(self, message: str, err: int, index: int) -> None:
        super().__init__(message, err)
        self.index = index


@dataclass(frozen=True)
class Info:
    """The INFO ioctl: the module's limits and features, and what this open file may do."""

    abi_version: int
    max_ops: int  # most ops in one batch on this open file (lower without CAP_SYS_RAWIO)
    features: int
    nr_cpu_ids: int
    access: int
    allowlist_entries: int
    version: str
    section_ops: int  # most ops a CPU runs with interrupts off in one section

    @property
    def rawio(self) -> bool:
        """The opener had CAP_SYS_RAWIO: the allowlist does not apply."""
        return bool(self.access & abi.ACCESS_RAWIO)

    @property
    def admin(self) -> bool:
        """The opener had CAP_SYS_ADMIN: may replace the allowlist (on a file opened for writing)."""
        return bool(self.access & abi.ACCESS_ADMIN)

    @property
    def fmode_write(self) -> bool:
        """The file was opened for writing: without it every WRITE op fails with EBADF."""
        return bool(self.access & abi.ACCESS_FMODE_WRITE)

    @property
    def writes_allowed(self) -> bool:
        """Writes may happen at all: allow_writes=Y and no kernel lockdown."""
        return bool(self.access & abi.ACCESS_WRITE) and not self.lockdown

    @property
    def lockdown(self) -> bool:
        """Kernel lockdown forbids MSR writes (every WRITE op fails with EPERM)."""
        return bool(self.access & abi.ACCESS_LOCKDOWN)


@dataclass(frozen=True)
class OpResult:
    index: int
    op: str
    cpu: int
    msr: int
    value: int
    err: int

    @property
    def ok(self) -> bool:
        """The op succeeded (err is 0)."""
        return self.err == 0


def op_error_text(err: int) -> str:
    """What a per-op errno means for an MSR op (msrdrv.h's list)."""
    return {
        errno.EIO: "the MSR faulted: not implemented on this CPU, or the value is invalid",
        errno.ENXIO: "no such CPU, or it is offline",
        errno.EBADF: "write refused: /dev/msrdrv was opened read-only (the node gives this user read access only)",
        errno.EPERM: "refused: a write under kernel lockdown or with allow_writes=N, "
        "or the TSC (RDTSC, or a read of the TSC, MPERF or FIXED_CTR2) for a task that disabled it (prctl PR_SET_TSC)",
        errno.EACCES: "not permitted by the msrdrv allowlist (none loaded, or it does not list this MSR "
        f"for this access); {ASK_FOR_LIST}",
    }.get(err, os.strerror(err))


class Batch:
    """Ops for one ioctl, in preallocated buffers; each add returns the op's index."""

    def __init__(self, capacity: int = 256, snapshot: bool = False) -> None:
        """snapshot: each CPU runs all its ops in one interrupts-off section (MSRDRV_BATCH_SNAPSHOT);
        the submit fails with E2BIG if one CPU has more than Info.section_ops of them."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ops: Any = ffi.new("struct msrdrv_op[]", capacity)
        self._hdr: Any = ffi.new("struct msrdrv_batch *")
        self._hdr.abi_version = abi.ABI_VERSION
        self._hdr.flags = abi.BATCH_SNAPSHOT if snapshot else 0
        self._hdr.ops = abi.address(self._ops)
        # The header as a writable buffer: fcntl.ioctl passes it with the
        # least work per call (half of a cffi ABI-mode call to libc's ioctl).
        self._hdr_buf = ffi.buffer(self._hdr)
        # The header as uint32s, for ndone [3] and nerrs [4] without a cffi attribute lookup.
        self._hdr_u32 = memoryview(self._hdr_buf).cast("I")
        # The ops as machine words, for results in one slice: each op is
        # 8 int32 (err is the 4th) or 4 uint64 (value is the 3rd).
        self._i32 = memoryview(ffi.buffer(self._ops)).cast("i")
        self._u64 = memoryview(ffi.buffer(self._ops)).cast("Q")
        self._np_values: Any = None
        self._n = 0

    def __len__(self) -> int:
        """The number of queued ops."""
        return self._n

    def clear(self) -> None:
        """Forget the ops (buffers are kept for reuse)."""
        self._n = 0
        self._hdr.nops = 0

    def _add(self, op: int, cpu: int, msr: int | str = 0, value: int = 0, mask: int = 0, flags: int = 0) -> int:
        i = self._n
        if isinstance(msr, str):
            msr = _msr_number(msr)
        if i >= self.capacity:
            raise ValueError(f"batch is full ({self.capacity} ops); create it with a larger capacity")
        if not 0 <= msr <= 0xFFFFFFFF:
            raise ValueError(f"MSR {msr:#x} is not a 32-bit register number")
        if not 0 <= value < 1 << 64 or not 0 <= mask < 1 << 64:
            raise ValueError(f"value {value:#x} does not fit in 64 bits")
        if not 0 <= cpu <= CPU_SELF:
            raise ValueError(f"CPU {cpu} is not a CPU number")
        o = self._ops[i]
        o.op = op
        o.flags = flags
        o.cpu = cpu
        o.msr = msr
        o.err = 0
        o.value = value
        o.mask = mask
        self._n = i + 1
        self._hdr.nops = self._n  # kept current here so submit() does nothing but the ioctl
        return i

    def read(self, msr: int | str, cpu: int = 0) -> int:
        """Queue a read of msr (a number, or a name from `msrctl registers`) on cpu; returns the op's index.

        cpu defaults to 0, as in the CLI and rdmsr; CPU_SELF means whichever CPU runs the ioctl."""
        return self._add(abi.OP_READ, cpu, msr)

    def write(self, msr: int | str, value: int, cpu: int = 0, mask: int | None = None) -> int:
        """Queue a write of value to msr on cpu (default 0); with mask, only the bits set in mask
        change (a read-modify-write in the kernel, with interrupts off).  Returns the op's index."""
        if mask is None:
            return self._add(abi.OP_WRITE, cpu, msr, value)
        return self._add(abi.OP_WRITE, cpu, msr, value, mask, abi.OPF_MASKED)

    def rdtsc(self, cpu: int = 0) -> int:
        """Queue a read of the time-stamp counter (RDTSC, ordered) on cpu (default 0)."""
        return self._add(abi.OP_RDTSC, cpu)

    def nop(self, cpu: int = 0) -> int:
        """Queue an op that does nothing (kept for the seed driver's command set)."""
        return self._add(abi.OP_NOP, cpu)

    def stop(self) -> int:
        """Queue a STOP: the batch ends here; later ops are neither run nor written back."""
        return self._add(abi.OP_STOP, CPU_SELF)

    def set_value(self, index: int, value: int) -> None:
        """Change a queued write's value, to resubmit the batch without rebuilding it."""
        self._ops[index].value = value

    @property
    def snapshot(self) -> bool:
        """Each CPU runs all its ops in one interrupts-off section (MSRDRV_BATCH_SNAPSHOT)."""
        return bool(self._hdr.flags & abi.BATCH_SNAPSHOT)

    @property
    def done(self) -> int:
        """Ops the last submission processed (a STOP included)."""
        return self._hdr_u32[3]

    def _processed(self) -> int:
        """Ops of this batch the last submission processed (0 before any)."""
        n: int = self._hdr_u32[3]
        return n if n < self._n else self._n

    @property
    def self_cpu(self) -> int:
        """The CPU that ran the CPU_SELF ops of the last submission."""
        return int(self._hdr.self_cpu)

    def value(self, index: int) -> int:
        """The value of op index after a submission: what a READ or RDTSC read, or a masked
        WRITE wrote (for the other ops, what was queued)."""
        return int(self._ops[index].value)

    def err(self, index: int) -> int:
        """0, or the positive errno of a failed op."""
        return -int(self._ops[index].err)

    def cpu(self, index: int) -> int:
        """The CPU the op ran on: self_cpu for a CPU_SELF op (the kernel leaves op.cpu as given)."""
        cpu = int(self._ops[index].cpu)
        return self.self_cpu if cpu == CPU_SELF else cpu

    def values(self) -> list[int]:
        """The value of every op the last submission processed, in op order, in one call."""
        return self._u64[2 : 4 * self._processed() : 4].tolist()

    def errors(self) -> list[int]:
        """Every processed op's error, in op order: 0 or a positive errno."""
        return [-e for e in self._i32[3 : 8 * self._processed() : 8].tolist()]

    def array(self) -> Any:
        """values() as a numpy uint64 array (a copy: the next submit does not change it).

        numpy is optional; without it this raises MsrError and values() still works."""
        view = self._np_values
        if view is None:
            try:
                import numpy
            except ImportError:
                raise MsrError(
                    "Batch.array() needs numpy (pip install numpy, or apt install python3-numpy); "
                    "Batch.values() gives the same values as a list"
                ) from None
            view = self._np_values = numpy.frombuffer(ffi.buffer(self._ops), dtype=numpy.uint64)[2::4]
        n = self._hdr_u32[3]  # _processed(), inlined: this is the hot path of a sampling loop
        return view[: n if n < self._n else self._n].copy()

    def result(self, index: int) -> OpResult:
        """Everything about op index after a submission, as one OpResult."""
        o = self._ops[index]
        op = abi.OP_NAMES.get(o.op, str(o.op))
        return OpResult(index, op, self.cpu(index), int(o.msr), int(o.value), -int(o.err))

    def results(self) -> list[OpResult]:
        """An OpResult for every op the last submission processed."""
        return [self.result(i) for i in range(self._processed())]

    def __iter__(self) -> Iterator[OpResult]:
        return iter(self.results())

    def check(self) -> None:
        """Raise OpError for the first failed op of the last submission."""
        for i in range(self._processed()):
            err = -int(self._ops[i].err)
            if err:
                r = self.result(i)
                raise OpError(f"op {i} ({r.op} MSR {r.msr:#x} on CPU {r.cpu}): {op_error_text(err)}", err, i)


def _msr_number(name: str) -> int:
    """An MSR name from the register table (any case, IA32_/MSR_ prefix optional)."""
    from ..errors import UsageError
    from ..registers.table import lookup

    try:
        return lookup(name).msr
    except UsageError as e:
        raise ValueError(str(e)) from None


def _open(path: str, write: bool) -> int:
    try:
        return os.open(path, (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC)
    except OSError as e:
        raise DeviceError(f"cannot open {path}: {e.strerror}", e.errno or 0) from None


class Device:
    """An open /dev/msrdrv; use as a context manager or call close().

    write=None opens read-write and, if the node refuses that (EACCES: a 0640
    node makes group msr read-only), read-only; write=True only read-write,
    write=False only read-only.  `writable` says which it got: on a read-only
    file every WRITE op fails with EBADF, and so does loading an allowlist.
    """

    backend = "msrdrv"  # which driver serves the ops (msrctl.device.stockmsr.StockDevice says "msr")

    def __init__(self, path: str = abi.DEVICE, write: bool | None = None) -> None:
        self.path = path
        self.writable = write is not False
        try:
            self.fd = _open(path, self.writable)
        except DeviceError as e:
            if write is not None or e.errno != errno.EACCES:
                raise
            self.writable = False
            self.fd = _open(path, False)

    def close(self) -> None:
        """Close the device (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The open file descriptor, for select/poll or os calls."""
        return self.fd

    def info(self) -> Info:
        """The module's limits and features, and what this open file may do (INFO ioctl)."""
        info: Any = ffi.new("struct msrdrv_info *")
        if _ioctl(self.fd, _INFO_REQ, ffi.cast("void *", info)) < 0:
            err = ffi.errno
            raise DeviceError(f"INFO ioctl on {self.path} failed: {os.strerror(err)}", err)
        return Info(
            int(info.abi_version),
            int(info.max_ops),
            int(info.features),
            int(info.nr_cpu_ids),
            int(info.access),
            int(info.allowlist_entries),
            ffi.string(info.version).decode(errors="replace"),
            int(info.section_ops),
        )

    def submit(self, batch: Batch) -> int:
        """Run the batch in one ioctl; returns how many ops failed (see Batch.check)."""
        try:
            _fcntl_ioctl(self.fd, _IOC_BATCH, batch._hdr_buf)
        except OSError as e:
            raise DeviceError(f"batch ioctl failed: {e.strerror}", e.errno or 0) from None
        nerrs: int = batch._hdr_u32[4]
        return nerrs

    def read(self, msr: int, cpus: list[int]) -> list[OpResult]:
        """Read one MSR on several CPUs in one ioctl."""
        return read_on(self, msr, cpus)


def read_on(dev: Any, msr: int, cpus: list[int]) -> list[OpResult]:
    """One MSR on several CPUs through anything with submit(Batch): one batch."""
    batch = Batch(max(1, len(cpus)))
    for cpu in cpus:
        batch.read(msr, cpu)
    dev.submit(batch)
    return batch.results()
