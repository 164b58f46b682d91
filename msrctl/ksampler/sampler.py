"""Sampler: msrdrv's kernel-timed sampling (MSRDRV_IOC_SAMPLER_START) as a context manager.

    with Sampler(["IA32_MPERF", "IA32_APERF"], cpus=[0, 1], period_ns=1_000_000) as s:
        for chunk in s:                       # wakes when a ring reaches the watermark
            for cpu, recs in chunk.items():   # numpy structured arrays, see layout.record_dtype
                print(cpu, recs["seq"][-1], recs["values"][-1])

Each sampled CPU runs the op set from its own timer in the kernel and fills
its own ring; the rings are mapped read-only, so reading costs no system
call per sample: one poll() per wake and one CONSUME ioctl to hand the
records back.  The arrays read() returns view the ring itself when the
records do not wrap around its end (a copy when they do) and stay valid
until the next read(), consume() or close(): copy what you keep.  numpy is
optional: read_records() returns the same records as tuples.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..device import abi
from ..device.abi import ffi
from ..device.msrdrv import Device, DeviceError, MsrError
from . import layout
from .layout import RingHeader, SamplerHeader

RDTSC = "rdtsc"  # in an op set: the TSC itself, not an MSR


@dataclass(frozen=True)
class Limits:
    """This open file's sampler bounds, from the INFO ioctl (lower without CAP_SYS_RAWIO)."""

    min_period_ns: int
    max_ops: int
    max_kib: int
    nr_cpu_ids: int


def limits(dev: Device) -> Limits:
    """The sampler bounds for dev, or MsrError if this msrdrv has no sampler."""
    info: Any = ffi.new("struct msrdrv_info *")
    err = abi.ioctl(dev.fd, abi.IOC_INFO, info)
    if err < 0:
        raise DeviceError(f"INFO ioctl on {dev.path} failed: {os.strerror(-err)}", -err)
    if not info.features & abi.FEAT_SAMPLER:
        raise MsrError(
            f"this msrdrv ({ffi.string(info.version).decode(errors='replace')}) has no kernel sampler: "
            "load a module built from msrdrv 0.3 or later on a 64-bit kernel",
            errno.EOPNOTSUPP,
        )
    return Limits(
        int(info.sampler_min_period_ns), int(info.sampler_max_ops), int(info.sampler_max_kib), int(info.nr_cpu_ids)
    )


def _op_code(op: int | str) -> tuple[int, int]:
    """(op code, MSR) for an op-set entry: an MSR number or name, or RDTSC."""
    if isinstance(op, str):
        if op.lower() == RDTSC:
            return abi.OP_RDTSC, 0
        from ..errors import UsageError
        from ..registers.table import lookup

        try:
            return abi.OP_READ, lookup(op).msr
        except UsageError as e:
            raise ValueError(str(e)) from None
    if not 0 <= op <= 0xFFFFFFFF:
        raise ValueError(f"MSR {op:#x} is not a 32-bit register number")
    return abi.OP_READ, op


def start_error(err: int, what: dict[str, Any], lim: Limits | None) -> str:
    """One line saying why the kernel refused SAMPLER_START (err is a positive errno)."""
    n, period, records, ncpus = what["nops"], what["period_ns"], what["records"], what["ncpus"]
    if err == errno.ERANGE:
        lo = f"{lim.min_period_ns} ns" if lim else "the module's minimum"
        return (
            f"sampling period {period} ns is outside {lo}..60 s for this opener "
            "(module parameters sampler_min_period_ns, sampler_min_period_ns_user without CAP_SYS_RAWIO)"
        )
    if err == errno.EDQUOT:
        return (
            f"one tick of these {n} ops takes more of each {period} ns period than this opener's samplers may "
            "take of a CPU (module parameters sampler_cpu_pct, sampler_cpu_pct_user without CAP_SYS_RAWIO): "
            "sample less often or fewer registers"
        )
    if err == errno.E2BIG:
        most = lim.max_ops if lim else "fewer"
        return f"{n} ops in the set: this opener may sample at most {most} (module parameter sampler_max_ops_user)"
    if err == errno.EFBIG:
        most = f"{lim.max_kib} KiB" if lim else "its limit"
        return (
            f"{ncpus} rings of {records} records need more memory than this opener's {most} "
            "(module parameters sampler_max_kib, sampler_max_kib_user: all of a user's samplers together "
            "without CAP_SYS_RAWIO): use fewer records or CPUs, or stop another sampler"
        )
    return {
        errno.ENXIO: "the CPU set names a CPU this machine cannot have",
        errno.EACCES: "the msrdrv allowlist does not let this user read every MSR of the set; "
        "ask an admin to list them (msrctl allowlist load)",
        errno.EPERM: "this task disabled the TSC (prctl PR_SET_TSC), and every record carries it",
        errno.ENOEXEC: "a 32-bit program cannot use the kernel sampler (it would read the rings' 64-bit "
        "head and tail torn): build it for 64 bits",
        errno.EBUSY: "too many samplers run already: this user's (module parameter sampler_max_user, "
        "without CAP_SYS_RAWIO) or everyone's (sampler_max)",
        errno.EOPNOTSUPP: "only READ and RDTSC ops can be sampled",
        errno.EINVAL: "the kernel refused a field of the request (records a power of two >= 2, "
        "watermark 1..records, a non-empty CPU set)",
        errno.EPROTO: "msrdrv speaks another ABI version than this msrctl: update one of them",
        errno.EBADF: "the device was not opened for reading",
        errno.ENOTTY: "this msrdrv has no kernel sampler: load a module from msrdrv 0.3 or later",
        errno.ENOMEM: "the kernel could not allocate the rings (or the memory cgroup's limit was reached)",
    }.get(err, os.strerror(err))


class Sampler:
    """A running kernel sampler: ops read on every CPU of `cpus` every `period_ns`.

    ops: MSR numbers or register names (read), or "rdtsc"; at most Limits.max_ops.
    cpus: default every online CPU; an offline CPU's ring starts when it comes online.
    records: slots per CPU ring, a power of two; a full ring drops (and counts) new records.
    watermark: unread records in a ring that wake the reader (default a quarter of the ring).
    The sampler starts on construction (or `with`); close() stops it and frees the rings.
    """

    def __init__(
        self,
        ops: Sequence[int | str],
        cpus: Iterable[int] | None = None,
        period_ns: int = 1_000_000,
        records: int = 4096,
        watermark: int | None = None,
        device: Device | None = None,
    ) -> None:
        if not ops:
            raise ValueError("a sampler needs at least one op")
        if records < 2 or records & (records - 1):
            raise ValueError(f"records per ring must be a power of two, at least 2 (got {records})")
        watermark = max(1, records // 4) if watermark is None else watermark
        if not 1 <= watermark <= records:
            raise ValueError(f"watermark must be 1..{records} (got {watermark})")
        if cpus is None:
            from ..device.cpus import online_cpus

            cpus = online_cpus()
        cpu_list = sorted(set(cpus))
        if not cpu_list or cpu_list[0] < 0:
            raise ValueError(f"the CPU set must name CPUs (got {cpu_list})")
        if cpu_list[-1] >= abi.SAMPLER_CPUS_SIZE_MAX * 8:
            raise ValueError(f"CPU {cpu_list[-1]} is beyond the sampler's CPU bitmap")
        self.ops = [_op_code(op) for op in ops]
        self.op_names = [str(op) for op in ops]
        self.cpus = cpu_list
        self.fd = -1
        self.stopped = False
        self._own_dev = device is None
        self._dev = Device(write=False) if device is None else device
        self._mm: mmap.mmap | None = None
        self._words: memoryview | None = None
        self._dtype: Any = None
        self._handed: list[int] = []  # per ring: where the last read ended
        try:
            self._start(period_ns, records, watermark)
        except BaseException:
            self.close()
            raise

    def _start(self, period_ns: int, records: int, watermark: int) -> None:
        n = len(self.ops)
        ops: Any = ffi.new("struct msrdrv_op[]", n)
        for i, (code, msr) in enumerate(self.ops):
            ops[i].op, ops[i].msr, ops[i].cpu = code, msr, abi.CPU_SELF
        nbytes = self.cpus[-1] // 8 + 1
        bitmap: Any = ffi.new("uint8_t[]", nbytes)
        for c in self.cpus:
            bitmap[c // 8] |= 1 << c % 8
        req: Any = ffi.new("struct msrdrv_sampler_start *")
        req.abi_version = abi.ABI_VERSION
        req.nops, req.nrecords, req.period_ns, req.watermark = n, records, period_ns, watermark
        req.ops, req.cpus, req.cpus_size = abi.address(ops), abi.address(bitmap), nbytes
        ret = abi.ioctl(self._dev.fd, abi.IOC_SAMPLER_START, req)
        if ret < 0:
            try:
                lim: Limits | None = limits(self._dev)
            except MsrError:
                lim = None
            what = {"nops": n, "period_ns": period_ns, "records": records, "ncpus": len(self.cpus)}
            raise DeviceError(f"cannot start the kernel sampler: {start_error(-ret, what, lim)}", -ret)
        self.fd = ret
        self._mm = mmap.mmap(self.fd, int(req.mmap_size), flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        self.header = SamplerHeader.parse(self._mm)
        self._words = memoryview(self._mm).cast("Q")
        self._handed = [self._word(i, layout.TAIL_WORD) for i in range(self.header.nrings)]
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    # --- state ------------------------------------------------------------

    def _word(self, ring: int, word: int) -> int:
        assert self._words is not None
        value: int = self._words[self.header.ring(ring) // 8 + word]
        return value

    def fileno(self) -> int:
        """The sampler's fd: readable (poll/select/epoll) when a ring reaches the watermark."""
        return self.fd

    @property
    def tsc_khz(self) -> int:
        """The kernel's TSC frequency, to turn record tsc values into time (0: unknown)."""
        return self.header.tsc_khz

    @property
    def revoked(self) -> int:
        """Ops revoked by allowlist changes since the start (bit i: op i), never sampled again."""
        return self._mm_header().revoked

    def _mm_header(self) -> SamplerHeader:
        assert self._mm is not None
        return SamplerHeader.parse(self._mm)

    def status(self) -> list[RingHeader]:
        """Every ring's counters now: state, head, tail, dropped, missed, revoked, throttled."""
        assert self._mm is not None
        return [RingHeader.parse(self._mm, self.header.ring(i)) for i in range(self.header.nrings)]

    @property
    def dtype(self) -> Any:
        """The numpy dtype of a record (needs numpy)."""
        if self._dtype is None:
            try:
                self._dtype = layout.record_dtype(self.header.nops)
            except ImportError:
                raise MsrError(
                    "Sampler.read() needs numpy (pip install numpy, or apt install python3-numpy); "
                    "Sampler.read_records() gives the same records as tuples"
                ) from None
        return self._dtype

    # --- reading ----------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a ring holds `watermark` unread records or an unread event (offline,
        online, revoked), or timeout seconds pass, or the sampler is stopped; returns
        whether records are ready."""
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        events = self._poll.poll(ms)
        mask = events[0][1] if events else 0
        if mask & select.POLLHUP:
            self.stopped = True
        return bool(mask & select.POLLIN)

    def stop(self) -> None:
        """Stop every ring now (MSRDRV_IOC_SAMPLER_STOP); the records stay readable."""
        if self.fd >= 0 and not self.stopped:
            err = abi.ioctl(self.fd, abi.IOC_SAMPLER_STOP, ffi.NULL)
            if err < 0:
                raise DeviceError(f"stopping the kernel sampler failed: {os.strerror(-err)}", -err)
            self.stopped = True

    def consume(self) -> None:
        """Hand back every record the last read returned (read() does this itself first)."""
        if self.fd < 0 or all(t == self._word(i, layout.TAIL_WORD) for i, t in enumerate(self._handed)):
            return
        n = self.header.nrings
        tails: Any = ffi.new("uint64_t[]", self._handed)
        req: Any = ffi.new("struct msrdrv_sampler_consume *")
        req.abi_version, req.nrings, req.tails = abi.ABI_VERSION, n, abi.address(tails)
        err = abi.ioctl(self.fd, abi.IOC_SAMPLER_CONSUME, req)
        if err < 0:
            why = "this task disabled the TSC (prctl PR_SET_TSC)" if -err == errno.EPERM else os.strerror(-err)
            raise DeviceError(f"handing records back to the kernel sampler failed: {why}", -err)

    def _take(self, timeout: float | None) -> list[tuple[int, int]]:
        """Consume the last read, wait, and mark every unread record as read: per ring (tail, head)."""
        self.consume()
        if timeout != 0:
            self.wait(timeout)
        spans = []
        for i in range(self.header.nrings):
            tail, head = self._word(i, layout.TAIL_WORD), self._word(i, layout.HEAD_WORD)
            spans.append((tail, head))
            self._handed[i] = head
        return spans

    def read(self, timeout: float | None = None) -> dict[int, Any]:
        """Every unread record, per CPU, as a numpy structured array (see layout.record_dtype),
        after waiting up to timeout seconds (None: forever, 0: not at all) for the watermark.

        Records of type abi.REC_SAMPLE carry values; the others mark an event.  The arrays
        are valid until the next read(), consume() or close()."""
        import numpy

        dtype = self.dtype
        out = {}
        for i, (tail, head) in enumerate(self._take(timeout)):
            if head == tail:
                continue
            assert self._mm is not None
            parts = layout.record_views(self._mm, self.header, i, tail, head, dtype)
            out[self.cpus[i]] = parts[0] if len(parts) == 1 else numpy.concatenate(parts)
        return out

    def read_records(self, timeout: float | None = None) -> list[layout.Record]:
        """As read(), without numpy: every unread record of every ring, ring by ring, as tuples."""
        out: list[layout.Record] = []
        for i, (tail, head) in enumerate(self._take(timeout)):
            assert self._mm is not None
            out += layout.parse_records(self._mm, self.header, i, tail, head)
        return out

    def __iter__(self) -> Iterator[dict[int, Any]]:
        """read() until the sampler is stopped or closed: one dict per wake (never empty)."""
        while self.fd >= 0:
            stopped = self.stopped  # before the read: records made up to the stop still come
            chunk = self.read()
            if chunk:
                yield chunk
            elif stopped:
                return

    # --- life -------------------------------------------------------------

    def close(self) -> None:
        """Stop sampling and free the rings (idempotent).  Sampling stops at once; the
        kernel frees the rings once no array from read() still views them."""
        if self.fd >= 0 and not self.stopped:
            abi.ioctl(self.fd, abi.IOC_SAMPLER_STOP, ffi.NULL)  # nothing to do about a failure here
            self.stopped = True
        if self._words is not None:
            self._words.release()
            self._words = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # arrays still view it: unmapped when the last one goes
            self._mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._own_dev:
            self._dev.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            self.close()
