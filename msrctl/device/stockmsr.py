"""The kernel's own msr driver (/dev/cpu/N/msr) behind Device's interface: one pread/pwrite per op.

    with StockDevice() as dev:          # needs root: the nodes are 0600 and the driver wants CAP_SYS_RAWIO
        batch = Batch()
        batch.read("IA32_APIC_BASE", cpu=1)
        dev.submit(batch)

`submit` fills a Batch exactly as msrdrv's ioctl does (each processed op's
value and err, the header's ndone, nerrs and self_cpu; ops after a STOP are
not run).  It is not atomic: every op is its own system call, so other code
may run on a CPU between two of its ops, and a masked WRITE is a read
followed by a write that another writer can slip between.  RDTSC reads
IA32_TIME_STAMP_COUNTER through the CPU's node, and fails with EIO where
that reads 0 (not implemented, as under QEMU TCG).  There is no allowlist,
no snapshot mode and no INFO ioctl (those need msrdrv).
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any

from . import abi
from .msrdrv import Batch, DeviceError, OpResult, read_on
from .ops import MASK_ALL

STOCK_DIR = "/dev/cpu"
BACKEND = "msr"
_TSC = 0x10  # IA32_TIME_STAMP_COUNTER: RDTSC on another CPU, through its node
_CPU_SELF = abi.CPU_SELF
_READ, _WRITE, _RDTSC, _STOP = abi.OP_READ, abi.OP_WRITE, abi.OP_RDTSC, abi.OP_STOP

# What msrdrv would report for the same situation.  A node that is absent
# (CPU offline or not there: the driver removes the node with the CPU) is
# ENXIO as in msrdrv; a refused open is EACCES ("not permitted").
_ERRNO = {errno.ENOENT: errno.ENXIO, errno.ENODEV: errno.ENXIO, errno.EPERM: errno.EACCES}


def stock_errno(err: int, at_open: bool = False) -> int:
    """msrdrv's per-op errno for an errno from opening (at_open) or reading/writing a node.

    EIO (the MSR faulted), ENXIO (offline CPU), EPERM (a write under lockdown or
    msr.allow_writes=off) and EBADF (a node opened read-only) mean the same in both."""
    if at_open:
        return _ERRNO.get(err, err)
    return err


@functools.cache
def _getcpu() -> Callable[[], int]:
    import ctypes  # only for CPU_SELF; os has no sched_getcpu before Python 3.14

    fn: Callable[[], int] = ctypes.CDLL(None, use_errno=True).sched_getcpu
    return fn


def current_cpu() -> int:
    """The CPU this thread runs on now (the lowest it may run on if the C library cannot say)."""
    cpu = _getcpu()()
    return cpu if cpu >= 0 else min(os.sched_getaffinity(0))


class StockDevice:
    """The kernel's msr driver, one node per CPU (DIR/N/msr), opened lazily and kept open.

    write=None opens each node read-write and falls back to read-only where that
    is refused with EACCES; write=True only read-write; write=False read-only (a
    WRITE op then fails with EBADF, as on a read-only /dev/msrdrv).  Opening
    checks the first online CPU's node, so a missing driver (ENOENT) or a
    non-root user (EACCES/EPERM) fails here, as Device() does, with a
    DeviceError whose filename is the node.
    """

    backend = BACKEND  # which driver serves the ops: "msr" here, "msrdrv" for Device

    def __init__(self, path: str = STOCK_DIR, write: bool | None = None, probe_cpu: int | None = None) -> None:
        self.path = path
        self._write = write
        self.writable = write is not False
        self._fds: dict[int, int] = {}
        if probe_cpu is None:
            from .cpus import online_cpus

            probe_cpu = online_cpus()[0]
        err = self._open(probe_cpu)
        if err:
            e = DeviceError(f"cannot open {self.node(probe_cpu)}: {os.strerror(err)}", err)
            e.filename = self.node(probe_cpu)
            raise e

    def node(self, cpu: int) -> str:
        """The driver's node for cpu."""
        return f"{self.path}/{cpu}/msr"

    def _open(self, cpu: int) -> int:
        """Open cpu's node into the cache; 0 or the errno of the failed open."""
        modes = [os.O_RDWR] if self._write else [os.O_RDONLY] if self._write is False else [os.O_RDWR, os.O_RDONLY]
        for mode in modes:
            try:
                self._fds[cpu] = os.open(self.node(cpu), mode | os.O_CLOEXEC)
            except OSError as e:
                if e.errno == errno.EACCES and mode == os.O_RDWR and len(modes) > 1:
                    continue
                return e.errno or errno.EIO
            if mode == os.O_RDONLY:
                self.writable = False
            return 0
        return errno.EACCES  # not reached: the last mode returns

    def close(self) -> None:
        """Close every node (idempotent)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> StockDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> Any:
        """msrdrv's INFO ioctl has no counterpart here: always raises DeviceError (ENOTTY)."""
        raise DeviceError(
            "the INFO ioctl needs msrdrv: the kernel's msr driver (the backend in use) has none; "
            "load msrdrv: sudo msrctl load",
            errno.ENOTTY,
        )

    def _rdmsr(self, fd: int, msr: int) -> int:
        data = os.pread(fd, 8, msr)
        if len(data) != 8:  # the driver never reads short: treat it as the fault it stands for
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return int.from_bytes(data, "little")

    def _run(self, o: Any, cpu: int) -> int:
        """Run one op on cpu; 0 or msrdrv's errno for it."""
        fd = self._fds.get(cpu)
        if fd is None:
            err = self._open(cpu)
            if err:
                return stock_errno(err, at_open=True)
            fd = self._fds[cpu]
        try:
            if o.op == _READ:
                o.value = self._rdmsr(fd, o.msr)
            elif o.op == _RDTSC:
                tsc = self._rdmsr(fd, _TSC)
                if not tsc:  # a running TSC is never 0: the MSR is not implemented (QEMU TCG reads it as 0)
                    return errno.EIO
                o.value = tsc
            else:
                mask = o.mask if o.flags & abi.OPF_MASKED else MASK_ALL
                value = int(o.value)
                if mask != MASK_ALL:  # as msrdrv: all bits is a plain write, so write-only MSRs work
                    value = (self._rdmsr(fd, o.msr) & ~mask) | (value & mask)
                os.pwrite(fd, value.to_bytes(8, "little"), o.msr)
                if o.flags & abi.OPF_MASKED:
                    o.value = value  # the full value written, as msrdrv returns it
        except OSError as e:
            return stock_errno(e.errno or errno.EIO)
        return 0

    def submit(self, batch: Batch) -> int:
        """Run the batch op by op (one pread/pwrite each); returns how many ops failed.

        As msrdrv: a bad header or op raises DeviceError before anything runs; ops
        after the first STOP are not run; CPU_SELF ops run on the CPU this thread
        is on, which it stays pinned to for the batch (Batch.self_cpu says which)."""
        hdr = batch._hdr
        if hdr.abi_version != abi.ABI_VERSION:
            raise DeviceError("batch refused: unknown ABI version", errno.EPROTO)
        if hdr.flags & abi.BATCH_SNAPSHOT:
            raise DeviceError(
                "snapshot batches need msrdrv: the kernel's msr driver runs every op in its own system call",
                errno.EOPNOTSUPP,
            )
        if hdr.flags:
            raise DeviceError("batch refused: unknown batch flags", errno.EINVAL)
        ops = batch._ops
        end, has_self = self._scan(ops, int(hdr.nops))
        self_cpu = current_cpu()
        restore = None
        if has_self:  # keep "this CPU" one CPU for the whole batch
            try:
                restore = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {self_cpu})
            except OSError:
                restore = None
        nerrs = 0
        try:
            for i in range(end):
                o = ops[i]
                err = 0
                if o.op in (_READ, _WRITE, _RDTSC):
                    err = self._run(o, self_cpu if o.cpu == _CPU_SELF else o.cpu)
                o.err = -err
                nerrs += err != 0
        finally:
            if restore is not None:
                os.sched_setaffinity(0, restore)
        hdr.ndone = end
        hdr.nerrs = nerrs
        hdr.self_cpu = self_cpu
        return nerrs

    @staticmethod
    def _scan(ops: Any, n: int) -> tuple[int, bool]:
        """(ops up to and including the first STOP, whether any runs on CPU_SELF); EINVAL for a bad op."""
        has_self = False
        for i in range(n):
            o = ops[i]
            if o.op > abi.OP_RDTSC or o.flags & ~abi.OPF_MASKED or (o.flags and o.op != _WRITE):
                raise DeviceError(f"batch refused: op {i} has an unknown op code or flag", errno.EINVAL)
            if o.op == _STOP:
                return i + 1, has_self
            has_self = has_self or (o.cpu == _CPU_SELF and o.op != abi.OP_NOP)
        return n, has_self

    def read(self, msr: int, cpus: list[int]) -> list[OpResult]:
        """Read one MSR on several CPUs (one pread each)."""
        return read_on(self, msr, cpus)
