"""The kernel sampler's mapped memory (dkms/msrdrv.h): its headers, the record
layout, and which records of a ring are unread.

Pure functions over a buffer (an mmap, or bytes made to the same layout in
the host tests); numpy is needed only for record_dtype() and record_views().
tests/host/ksampler/test_ksampler_layout.py checks every offset here against the cffi
declarations, which tests/host/device/test_abi.py checks against the C header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..device import abi

# struct msrdrv_sampler_header up to tsc_khz, struct msrdrv_ring_header up to
# throttled, struct msrdrv_record up to values[]: little-endian, no padding.
SAMPLER_HEADER = struct.Struct("<6I5QI")
RING_HEADER = struct.Struct("<2I6Q")
RECORD_HEAD = struct.Struct("<3Q2I")
# Where each ring header's u64 counters sit, in 8-byte words from its start.
HEAD_WORD, TAIL_WORD, DROPPED_WORD, MISSED_WORD, REVOKED_WORD = 1, 2, 3, 4, 5


class LayoutError(ValueError):
    """The mapped memory does not hold what the kernel promised (a bug, or not a sampler)."""


@dataclass(frozen=True)
class SamplerHeader:
    """struct msrdrv_sampler_header: the sampler's shape, at offset 0 of the mapping."""

    abi_version: int
    nrings: int
    nops: int
    record_size: int
    nrecords: int
    watermark: int
    period_ns: int
    ring_offset: int
    ring_stride: int
    data_offset: int
    revoked: int  # bit i: op i revoked by an allowlist change
    tsc_khz: int  # 0: the kernel does not know

    @classmethod
    def parse(cls, buf: Any) -> SamplerHeader:
        h = cls(*SAMPLER_HEADER.unpack_from(buf, 0))
        if h.abi_version != abi.ABI_VERSION:
            raise LayoutError(f"sampler header has ABI version {h.abi_version}, msrctl knows {abi.ABI_VERSION}")
        if h.record_size != RECORD_HEAD.size + 8 * h.nops or h.nrecords < 2 or h.nrecords & (h.nrecords - 1):
            raise LayoutError(f"sampler header is inconsistent: {h}")
        return h

    def ring(self, i: int) -> int:
        """Offset of ring i's header in the mapping (rings in ascending CPU order)."""
        if not 0 <= i < self.nrings:
            raise IndexError(f"ring {i} of {self.nrings}")
        return self.ring_offset + i * self.ring_stride

    def data(self, i: int) -> int:
        """Offset of ring i's first record slot."""
        return self.ring(i) + self.data_offset

    def size(self) -> int:
        """Bytes the mapping spans."""
        return self.ring_offset + self.nrings * self.ring_stride

    def tsc_to_ns(self, ticks: int) -> float:
        """TSC ticks as nanoseconds at the kernel's TSC frequency (raises if it is unknown)."""
        if not self.tsc_khz:
            raise LayoutError("the kernel reports no TSC frequency: TSC values cannot be turned into time")
        return ticks * 1e6 / self.tsc_khz


@dataclass(frozen=True)
class RingHeader:
    """struct msrdrv_ring_header: one sampled CPU's ring and its counters."""

    cpu: int
    state: int  # abi.RING_RUNNING or abi.RING_OFFLINE
    head: int  # records written since the start
    tail: int  # records handed back
    dropped: int  # records lost to a full ring
    missed: int  # periods the timer skipped
    revoked: int  # revoked ops this ring has reported (a REVOKED record)
    throttled: int  # periods skipped because the CPU's samplers were over their interrupt budget

    @classmethod
    def parse(cls, buf: Any, offset: int) -> RingHeader:
        return cls(*RING_HEADER.unpack_from(buf, offset))

    @property
    def online(self) -> bool:
        """The CPU is online and its timer runs."""
        return self.state == abi.RING_RUNNING

    @property
    def unread(self) -> int:
        """Records written and not yet handed back."""
        return self.head - self.tail


class Record(NamedTuple):
    """One record, decoded without numpy."""

    seq: int
    tsc: int
    errs: int
    type: int
    cpu: int
    values: tuple[int, ...]

    @property
    def kind(self) -> str:
        """sample, offline, online or revoked."""
        return abi.REC_NAMES.get(self.type, str(self.type))

    def ok(self, op: int) -> bool:
        """Op `op` of the set gave a value (neither faulted nor revoked)."""
        return not self.errs >> op & 1


def unread_slots(tail: int, head: int, nrecords: int) -> list[tuple[int, int]]:
    """The slots holding records tail..head-1: up to two (first slot, count) pieces,
    two when they wrap around the ring's end."""
    n = head - tail
    if n < 0 or n > nrecords:
        raise LayoutError(f"ring counters out of order: tail {tail}, head {head}, {nrecords} slots")
    if not n:
        return []
    first = tail % nrecords
    if first + n <= nrecords:
        return [(first, n)]
    return [(first, nrecords - first), (0, first + n - nrecords)]


def parse_records(buf: Any, h: SamplerHeader, ring: int, tail: int, head: int) -> list[Record]:
    """Records tail..head-1 of ring `ring`, decoded one by one (no numpy needed)."""
    base = h.data(ring)
    values = struct.Struct(f"<{h.nops}Q")
    out = []
    for first, count in unread_slots(tail, head, h.nrecords):
        for slot in range(first, first + count):
            off = base + slot * h.record_size
            out.append(Record(*RECORD_HEAD.unpack_from(buf, off), values.unpack_from(buf, off + RECORD_HEAD.size)))
    return out


def record_dtype(nops: int) -> Any:
    """The numpy dtype of one record: seq, tsc, errs (uint64), type, cpu (uint32), values (uint64[nops])."""
    import numpy

    return numpy.dtype(
        [("seq", "<u8"), ("tsc", "<u8"), ("errs", "<u8"), ("type", "<u4"), ("cpu", "<u4"), ("values", "<u8", (nops,))]
    )


def record_views(buf: Any, h: SamplerHeader, ring: int, tail: int, head: int, dtype: Any = None) -> list[Any]:
    """Records tail..head-1 of ring `ring` as numpy arrays viewing buf (no copy): one
    array, or two when they wrap around the ring's end."""
    import numpy

    dtype = record_dtype(h.nops) if dtype is None else dtype
    base = h.data(ring)
    return [
        numpy.frombuffer(buf, dtype=dtype, count=count, offset=base + first * h.record_size)
        for first, count in unread_slots(tail, head, h.nrecords)
    ]
