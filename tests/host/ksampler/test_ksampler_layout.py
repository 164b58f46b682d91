"""msrctl.ksampler's view of the sampler's mapped memory, on bytes laid out as
the kernel lays them out (offsets from the cffi declarations, which
test_abi.py checks against dkms/msrdrv.h)."""

from __future__ import annotations

import errno
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from msrctl.device import abi
from msrctl.device.abi import ffi
from msrctl.ksampler import layout
from msrctl.ksampler.layout import LayoutError, Record, RingHeader, SamplerHeader
from msrctl.ksampler.sampler import Limits, start_error

REPO = Path(__file__).resolve().parents[3]
PAGE = 4096


def test_struct_formats_match_the_abi() -> None:
    """Each struct format decodes exactly the C fields, in order, at their offsets."""
    cases = [
        (layout.SAMPLER_HEADER, "struct msrdrv_sampler_header", list(SamplerHeader.__dataclass_fields__)),
        (layout.RING_HEADER, "struct msrdrv_ring_header", list(RingHeader.__dataclass_fields__)),
        (layout.RECORD_HEAD, "struct msrdrv_record", [f for f in Record._fields if f != "values"]),
    ]
    for fmt, ctype, fields in cases:
        offsets = [ffi.offsetof(ctype, f) for f in fields]
        assert offsets == sorted(offsets), ctype
        # pack distinct values through the format, read them back through cffi
        values = [i + 1 for i in range(len(fields))]
        buf = bytearray(max(ffi.sizeof(ctype), fmt.size))
        fmt.pack_into(buf, 0, *values)
        c = ffi.cast(ctype + " *", ffi.from_buffer(buf))
        assert [getattr(c, f) for f in fields] == values, ctype
    record = "struct msrdrv_record"
    assert layout.RECORD_HEAD.size == ffi.sizeof(record) == ffi.offsetof(record, "values")
    words = {"head": layout.HEAD_WORD, "tail": layout.TAIL_WORD, "dropped": layout.DROPPED_WORD,
             "missed": layout.MISSED_WORD, "revoked": layout.REVOKED_WORD}  # fmt: skip
    for field, word in words.items():
        assert ffi.offsetof("struct msrdrv_ring_header", field) == 8 * word


def make_area(nops: int, nrecords: int, rings: list[dict[str, Any]]) -> tuple[bytearray, SamplerHeader]:
    """A mapping as the kernel would fill it; each ring dict gives cpu, head, tail and
    the records (seq -> (tsc, errs, type, values)) present in its slots."""
    record_size = 32 + 8 * nops
    stride = PAGE + -(-nrecords * record_size // PAGE) * PAGE
    buf = bytearray(PAGE + len(rings) * stride)
    layout.SAMPLER_HEADER.pack_into(buf, 0, abi.ABI_VERSION, len(rings), nops, record_size, nrecords, 1,
                                    1_000_000, PAGE, stride, PAGE, 0, 2_000_000)  # fmt: skip
    for i, r in enumerate(rings):
        base = PAGE + i * stride
        counts = (0, 0, 0, r.get("throttled", 0))  # dropped, missed, revoked, throttled
        layout.RING_HEADER.pack_into(buf, base, r["cpu"], abi.RING_RUNNING, r["head"], r["tail"], *counts)
        for seq, (tsc, errs, type_, values) in r.get("records", {}).items():
            off = base + PAGE + (seq % nrecords) * record_size
            layout.RECORD_HEAD.pack_into(buf, off, seq, tsc, errs, type_, r["cpu"])
            struct.pack_into(f"<{nops}Q", buf, off + 32, *values)
    return buf, SamplerHeader.parse(buf)


def test_unread_slots() -> None:
    assert layout.unread_slots(5, 5, 8) == []
    assert layout.unread_slots(0, 8, 8) == [(0, 8)]  # full
    assert layout.unread_slots(2, 6, 8) == [(2, 4)]
    assert layout.unread_slots(6, 11, 8) == [(6, 2), (0, 3)]  # wraps
    assert layout.unread_slots(16, 24, 8) == [(0, 8)]
    assert layout.unread_slots(17, 25, 8) == [(1, 7), (0, 1)]
    for tail, head in ((3, 2), (0, 9)):
        with pytest.raises(LayoutError):
            layout.unread_slots(tail, head, 8)


def wrapped_area() -> tuple[bytearray, SamplerHeader]:
    recs0 = {s: (1000 + s, 0, abi.REC_SAMPLE, [s, 10 * s]) for s in range(6, 11)}
    recs0[8] = (1008, 0b10, abi.REC_REVOKED, [0, 0])
    recs1 = {s: (2000 + s, 0b01, abi.REC_SAMPLE, [0, s]) for s in range(0, 3)}
    return make_area(2, 8, [{"cpu": 0, "head": 11, "tail": 6, "records": recs0},
                            {"cpu": 3, "head": 3, "tail": 0, "throttled": 7, "records": recs1}])  # fmt: skip


def test_header_and_rings_parse() -> None:
    buf, h = wrapped_area()
    assert (h.nrings, h.nops, h.nrecords, h.record_size, h.period_ns, h.tsc_khz) == (2, 2, 8, 48, 1_000_000, 2_000_000)
    assert h.ring(1) == PAGE + h.ring_stride and h.data(0) == 2 * PAGE and h.size() == len(buf)
    assert h.tsc_to_ns(2_000_000) == 1e6
    r = RingHeader.parse(buf, h.ring(1))
    assert (r.cpu, r.head, r.tail, r.unread, r.online, r.throttled) == (3, 3, 0, 3, True, 7)
    with pytest.raises(IndexError):
        h.ring(2)


def test_header_that_is_not_a_sampler_is_refused() -> None:
    buf, _ = wrapped_area()
    bad = bytearray(buf)
    struct.pack_into("<I", bad, 0, 99)
    with pytest.raises(LayoutError, match="ABI version 99"):
        SamplerHeader.parse(bad)
    bad = bytearray(buf)
    struct.pack_into("<I", bad, 12, 47)  # record_size not 32 + 8 * nops
    with pytest.raises(LayoutError, match="inconsistent"):
        SamplerHeader.parse(bad)


def test_records_decode_across_the_wrap_without_numpy() -> None:
    buf, h = wrapped_area()
    recs = layout.parse_records(buf, h, 0, 6, 11)
    assert [r.seq for r in recs] == [6, 7, 8, 9, 10]
    assert recs[0] == Record(6, 1006, 0, abi.REC_SAMPLE, 0, (6, 60))
    assert recs[2].kind == "revoked" and recs[2].errs == 0b10 and not recs[2].ok(1) and recs[2].ok(0)
    assert [r.kind for r in recs].count("sample") == 4
    assert layout.parse_records(buf, h, 1, 1, 3) == [Record(s, 2000 + s, 1, 0, 3, (0, s)) for s in (1, 2)]
    assert layout.parse_records(buf, h, 1, 3, 3) == []


def test_numpy_views_share_the_buffer_and_match_the_tuples() -> None:
    numpy = pytest.importorskip("numpy")
    buf, h = wrapped_area()
    dt = layout.record_dtype(h.nops)
    assert dt.itemsize == h.record_size
    parts = layout.record_views(buf, h, 0, 6, 11, dt)
    assert [len(p) for p in parts] == [2, 3]  # slots 6-7, then 0-2
    assert all(numpy.shares_memory(p, numpy.frombuffer(buf, dtype=numpy.uint8)) for p in parts)
    joined = numpy.concatenate(parts)
    tuples = layout.parse_records(buf, h, 0, 6, 11)
    assert joined["seq"].tolist() == [r.seq for r in tuples]
    assert joined["values"].tolist() == [list(r.values) for r in tuples]
    assert joined["type"].tolist() == [r.type for r in tuples] and (joined["cpu"] == 0).all()
    # a view sees what the kernel writes next into its slot
    layout.RECORD_HEAD.pack_into(buf, h.data(0) + 6 * h.record_size, 14, 0, 0, 0, 0)
    assert parts[0]["seq"][0] == 14


def test_importing_the_sampler_does_not_load_numpy() -> None:
    code = "import sys, msrctl.ksampler; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False"]


def test_start_errors_say_what_why_and_what_to_do() -> None:
    lim = Limits(min_period_ns=100_000, max_ops=16, max_kib=4096, nr_cpu_ids=4)
    what = {"nops": 17, "period_ns": 5_000, "records": 65536, "ncpus": 4}
    texts = {e: start_error(e, what, lim) for e in (errno.ERANGE, errno.E2BIG, errno.EFBIG, errno.EACCES,
                                                     errno.ENXIO, errno.EPERM, errno.EBUSY, errno.EOPNOTSUPP,
                                                     errno.EINVAL, errno.ENOTTY, errno.ENOMEM)}  # fmt: skip
    assert all("\n" not in t and t for t in texts.values())
    assert "5000 ns" in texts[errno.ERANGE] and "100000 ns" in texts[errno.ERANGE]
    assert "17 ops" in texts[errno.E2BIG] and "at most 16" in texts[errno.E2BIG]
    assert "4 rings of 65536 records" in texts[errno.EFBIG] and "4096 KiB" in texts[errno.EFBIG]
    assert "allowlist" in texts[errno.EACCES] and "PR_SET_TSC" in texts[errno.EPERM]
    assert "sampler_max" in texts[errno.EBUSY]
    assert start_error(errno.ERANGE, what, None).startswith("sampling period 5000 ns")
