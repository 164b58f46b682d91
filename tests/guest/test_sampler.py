"""The kernel sampler (MSRDRV_IOC_SAMPLER_START), against the real module in the guest:
records, timing, overflow, CPU hotplug, module lifetime, bounds and the
read-only mapping.  The policy side (allowlist, revocation) is in
test_policy_attacks.py.

Timing under QEMU TCG: every guest instruction is emulated on a loaded 2-core
host, so timer interrupts arrive late by up to milliseconds.  The tests use
periods of 2-10 ms and judge the period only on average (see
test_achieved_period_on_average for the tolerance and why).
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    MEMBER,
    REPO,
    SAMPLER_IRQ_NS,
    Device,
    Pages,
    abi,
    ffi,
    load_module,
    module_loaded,
    online_cpus,
    results_dir,
    run_as,
    set_cpu_online,
    unload_module,
    wait_for,
)

from msrctl.ksampler import RDTSC, Sampler, limits
from msrctl.ksampler.layout import RingHeader, SamplerHeader

APIC_BASE = 0x1B
APIC = {0: 0xFEE00900}  # CPU 0 is the bootstrap processor; the others read 0xfee00800
PAGE = mmap.PAGESIZE


def apic(cpu: int) -> int:
    return APIC.get(cpu, 0xFEE00800)


def raw_start(
    fd: int,
    op_list: list[tuple[int, int]] | None = None,
    cpu_list: list[int] | None = None,
    cpus_size: int | None = None,
    period_ns: int = 2_000_000,
    nrecords: int = 64,
    watermark: int = 1,
    arr: Any = None,
    **fields: int,
) -> tuple[int, Any]:
    """SAMPLER_START with a hand-made request; (fd or -errno, request).  ops are
    (op, msr) pairs run with cpu CPU_SELF (or arr, a ready struct msrdrv_op[]);
    fields override anything else."""
    ops = [(abi.OP_RDTSC, 0)] if op_list is None else op_list
    if arr is None:
        arr = ffi.new("struct msrdrv_op[]", max(1, len(ops)))
        for i, (op, msr) in enumerate(ops):
            arr[i].op, arr[i].msr, arr[i].cpu = op, msr, abi.CPU_SELF
    else:
        ops = [(0, 0)] * len(arr)
    cpus = [0] if cpu_list is None else cpu_list
    size = cpus_size if cpus_size is not None else max(1, (max(cpus, default=0) // 8) + 1)
    bitmap: Any = ffi.new("uint8_t[]", max(size, 1))
    for c in cpus:
        if c // 8 < size:
            bitmap[c // 8] |= 1 << c % 8
    req: Any = ffi.new("struct msrdrv_sampler_start *")
    req.abi_version, req.nops, req.nrecords, req.period_ns = abi.ABI_VERSION, len(ops), nrecords, period_ns
    req.watermark, req.ops, req.cpus, req.cpus_size = watermark, abi.address(arr), abi.address(bitmap), size
    for name, value in fields.items():
        if name.startswith("reserved"):
            req.reserved[int(name[len("reserved") :])] = value
        else:
            setattr(req, name, value)
    ret = abi.ioctl(fd, abi.IOC_SAMPLER_START, req)
    if ret >= 0:
        req_keep.append((arr, bitmap))
    return ret, req


req_keep: list[Any] = []


def errname(ret: int) -> str:
    if ret == -errno.EOPNOTSUPP:
        return "EOPNOTSUPP"  # Python names 95 ENOTSUP, its alias
    return "OK" if ret >= 0 else errno.errorcode[-ret]


def refcnt() -> int:
    return int(Path("/sys/module/msrdrv/refcnt").read_text())


@pytest.fixture
def cpu1_back() -> Iterator[None]:
    yield
    set_cpu_online(1, True)


def records_until(s: Sampler, n: int, timeout: float = 30.0) -> dict[int, Any]:
    """Copies of the records of every ring until each holds at least n (numpy)."""
    import numpy

    got: dict[int, list[Any]] = {c: [] for c in s.cpus}
    deadline = time.monotonic() + timeout
    while any(sum(len(a) for a in v) < n for v in got.values()):
        assert time.monotonic() < deadline, {c: sum(len(a) for a in v) for c, v in got.items()}
        for cpu, recs in s.read(timeout=0.5).items():
            got[cpu].append(recs.copy())
    return {c: numpy.concatenate(v) for c, v in got.items()}


# --- what INFO says ---------------------------------------------------------------


def test_info_reports_the_sampler_and_its_bounds(dev: Device) -> None:
    lim = limits(dev)
    assert (lim.min_period_ns, lim.max_ops, lim.max_kib) == (10_000, 64, 65536)
    out = run_as("msruser", "from msrctl.device.msrdrv import Device\nfrom msrctl.ksampler import limits\n"
                            "print(limits(Device()))")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "min_period_ns=100000, max_ops=16, max_kib=4096" in out.stdout


# --- records --------------------------------------------------------------------


def test_records_in_sequence_with_monotonic_tsc_per_cpu(dev: Device, cpus: list[int]) -> None:
    import numpy  # noqa: F401  (imported before the start: its first import takes seconds under TCG)

    with Sampler([RDTSC, APIC_BASE], cpus=cpus, period_ns=2_000_000, records=8192, watermark=32) as s:
        assert s.header.nrings == len(cpus) and s.header.nops == 2 and s.tsc_khz > 0
        got = records_until(s, 100)
        st = s.status()
    for cpu, recs in got.items():
        assert (recs["cpu"] == cpu).all()
        assert (recs["type"] == abi.REC_SAMPLE).all()
        seq, tsc = recs["seq"].astype(int), recs["tsc"].astype(int)
        assert seq.tolist() == list(range(len(recs))), "no gap: nothing dropped"
        assert (tsc[1:] > tsc[:-1]).all(), "TSC strictly increasing"
        # the ops ran on the sampled CPU itself, after the record's own TSC
        assert (recs["values"][:, 1] == apic(cpu)).all()
        assert (recs["values"][:, 0] > recs["tsc"]).all() and (recs["errs"] == 0).all()
    assert all(r.dropped == 0 and r.online for r in st)


def test_records_without_numpy_match(dev: Device) -> None:
    with Sampler([APIC_BASE, RDTSC], cpus=[0, 1], period_ns=5_000_000, records=64, watermark=4) as s:
        recs = s.read_records(timeout=10)
        assert recs and {r.cpu for r in recs} <= {0, 1}
        for r in recs:
            assert r.kind == "sample" and r.ok(0) and r.values[0] == apic(r.cpu) and r.values[1] > r.tsc
        by_cpu: dict[int, list[int]] = {}
        for r in recs:
            by_cpu.setdefault(r.cpu, []).append(r.seq)
        assert all(v == list(range(v[0], v[0] + len(v))) for v in by_cpu.values())


def test_achieved_period_on_average(dev: Device, cpus: list[int]) -> None:
    """The period achieved, from the records' TSCs, against the period asked.

    Tolerance, honest for TCG on a loaded 2-core host: the median interval
    within 5% of the period, and the grid kept: the time from the first to
    the last record within 10% of (records - 1 + missed) periods.  A timer
    interrupt is taken late by up to tens of ms when the host deschedules a
    vCPU thread (run 2 of this test saw 198 ms); hrtimers keep an absolute
    grid (epoch + k * period), so a late tick does not shift the later ones,
    and a tick later than a whole period skips it, counted in `missed`.  So
    the mean interval is not judged (it measures the host's load: 5.17 and
    6.23 ms for 5 ms in two runs); it is reported with the spread in
    results/sampler-period.txt, and measured in bench/sampler.py."""
    import numpy

    period = 10_000_000
    with Sampler([RDTSC], cpus=cpus, period_ns=period, records=4096, watermark=16) as s:
        t0 = time.monotonic()
        got = records_until(s, 200)
        wall = time.monotonic() - t0
        st = s.status()
        khz = s.tsc_khz
    lines = []
    for cpu, recs in got.items():
        tsc = recs["tsc"].astype(float)
        intervals_ns = (tsc[1:] - tsc[:-1]) * 1e6 / khz
        median, mean = float(numpy.median(intervals_ns)), float(intervals_ns.mean())
        missed = st[cpus.index(cpu)].missed
        span_ns = (tsc[-1] - tsc[0]) * 1e6 / khz
        grid = (len(recs) - 1 + missed) * period
        lines.append(f"cpu {cpu}: {len(recs)} records in {wall:.2f} s, asked {period / 1e6:g} ms: median interval "
                     f"{median / 1e6:.4f} ms, mean {mean / 1e6:.4f}, min {intervals_ns.min() / 1e6:.3f}, "
                     f"max {intervals_ns.max() / 1e6:.3f}, missed {missed}, span {span_ns / 1e6:.1f} ms "
                     f"against {grid / 1e6:.1f} ms of grid")  # fmt: skip
        assert abs(median - period) <= 0.05 * period, lines[-1]
        assert abs(span_ns - grid) <= 0.10 * span_ns, lines[-1]
    (results_dir() / "sampler-period.txt").write_text("\n".join(lines) + "\n")


def test_full_ring_drops_and_counts_exactly(dev: Device) -> None:
    """A reader that stops: the ring keeps its first 64 records, later ones are
    dropped and counted; after a hand-back the next record's seq is exactly
    64 + dropped, and nothing more is dropped while there is room."""
    import numpy  # noqa: F401

    with Sampler([RDTSC], cpus=[1], period_ns=5_000_000, records=64, watermark=8) as s:
        wait_for(lambda: s.status()[0].dropped >= 10, "the ring to overflow")
        assert s.wait(0), "a full ring is readable"
        st = s.status()[0]
        assert st.head == 64 and st.tail == 0
        assert s.read(timeout=0)[1]["seq"].tolist() == list(range(64))
        s.consume()
        dropped = s.status()[0].dropped  # no drop from here: 64 slots free, read at 8
        nxt = s.read(timeout=None)[1].copy()
        assert int(nxt["seq"][0]) == 64 + dropped
        assert s.status()[0].dropped == dropped
        assert nxt["seq"].tolist() == list(range(64 + dropped, 64 + dropped + len(nxt)))


def test_stop_ends_sampling_and_keeps_the_records(dev: Device) -> None:
    with Sampler([APIC_BASE], cpus=[0, 1], period_ns=2_000_000, records=1024, watermark=1000) as s:
        time.sleep(0.2)
        s.stop()
        heads = [r.head for r in s.status()]
        assert all(r.state == abi.RING_STOPPED for r in s.status()) and min(heads) > 0
        p = select.poll()
        p.register(s.fileno(), select.POLLIN)
        assert p.poll(0)[0][1] & select.POLLHUP, "a stopped sampler hangs up"
        time.sleep(0.1)
        assert [r.head for r in s.status()] == heads, "no record after STOP"
        chunks = [{c: len(a) for c, a in chunk.items()} for chunk in s]  # ends: stopped
        assert chunks == [{0: heads[0], 1: heads[1]}], "below the watermark, still delivered"
        assert abi.ioctl(s.fd, abi.IOC_SAMPLER_STOP, ffi.NULL) == 0, "STOP again: nothing to do"


def test_poll_and_epoll_wake_at_the_watermark(dev: Device) -> None:
    with Sampler([RDTSC], cpus=[0], period_ns=10_000_000, records=256, watermark=100) as s:
        ep = select.epoll()
        ep.register(s.fileno(), select.EPOLLIN)
        try:
            assert ep.poll(0.2) == [], "100 records at 10 ms take 1 s"
            assert s.status()[0].unread < 100
            assert ep.poll(30) == [(s.fileno(), select.EPOLLIN)]
            assert s.status()[0].unread >= 100
            assert len(s.read(timeout=0)[0]) >= 100
            assert s.wait(0), "read but not handed back yet: the next read() or consume() does that"
            s.consume()
            assert not s.wait(0), "handed back: below the watermark again"
        finally:
            ep.close()


# --- CPU hotplug --------------------------------------------------------------


def test_cpu_hotplug_stops_records_then_resumes(dev: Device, cpu1_back: None) -> None:
    import numpy

    with Sampler([APIC_BASE], cpus=[0, 1], period_ns=2_000_000, records=4096, watermark=1) as s:
        records_until(s, 20)
        set_cpu_online(1, False)
        off = s.status()[1]
        assert not off.online
        time.sleep(0.3)
        assert s.status()[1].head == off.head, "no record while offline"
        cpu0_before = s.status()[0].head
        set_cpu_online(1, True)
        time.sleep(0.5)
        got = records_until(s, 20)
        assert s.status()[0].head > cpu0_before, "CPU 0 went on sampling throughout"
    ring1 = got[1]
    types = ring1["type"].tolist()
    i_off = types.index(abi.REC_OFFLINE)
    i_on = types.index(abi.REC_ONLINE)
    assert i_off < i_on and all(t == abi.REC_SAMPLE for j, t in enumerate(types) if j not in (i_off, i_on))
    assert ring1["seq"].tolist() == list(range(int(ring1["seq"][0]), int(ring1["seq"][0]) + len(ring1)))
    assert numpy.all(ring1["tsc"][1:] > ring1["tsc"][:-1])
    assert (ring1["values"][i_on + 1 :, 0] == apic(1)).all() and len(ring1) > i_on + 1, "resumed"


def test_offline_cpu_at_start_starts_when_it_comes_online(dev: Device, cpu1_back: None) -> None:
    set_cpu_online(1, False)
    with Sampler([APIC_BASE], cpus=[0, 1], period_ns=2_000_000, records=1024, watermark=1) as s:
        time.sleep(0.2)
        ring1 = s.status()[1]
        assert ring1.cpu == 1 and not ring1.online and ring1.head == 0
        set_cpu_online(1, True)
        got = records_until(s, 10)
        assert (got[1]["type"] == abi.REC_SAMPLE).all() and int(got[1]["seq"][0]) == 0


# --- lifetime -------------------------------------------------------------------


def forget_failures() -> None:
    """Drop what an earlier failed test keeps alive (pytest keeps the last traceback
    for post-mortem): an array viewing a ring keeps its sampler and so the module."""
    import gc

    sys.last_type = sys.last_value = sys.last_traceback = None  # type: ignore[assignment]
    gc.collect()


def test_module_unload_refused_while_sampling_then_works(loaded: None) -> None:
    forget_failures()
    base = refcnt()
    d = Device()
    s = Sampler([RDTSC], cpus=online_cpus(), period_ns=2_000_000, records=64, device=d)
    d.close()  # the sampler's own file pins the module
    assert refcnt() == base + 1
    r = subprocess.run(["rmmod", "msrdrv"], capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "in use" in r.stderr and module_loaded()
    s.close()
    assert refcnt() == base
    unload_module()
    load_module()


def test_closing_stops_and_frees(loaded: None) -> None:
    """Sample, close, unload: nothing of the sampler is left (vmalloc'd rings freed,
    timers stopped: rmmod would wait or oops otherwise)."""

    def vmalloc_kib() -> int:
        return next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("VmallocUsed:"))  # fmt: skip

    forget_failures()
    before = vmalloc_kib()
    ncpus = len(online_cpus())
    s = Sampler([RDTSC], cpus=online_cpus(), period_ns=2_000_000, records=65536, watermark=1)
    s.read(timeout=5)
    during = vmalloc_kib()
    s.close()
    after = vmalloc_kib()
    assert during - before >= ncpus * 65536 * 40 // 1024 * 9 // 10, (before, during)
    assert after < during - 4000, (before, during, after)
    unload_module()
    load_module()


def test_ring_memory_is_charged_to_the_callers_cgroup(dev: Device, tmp_path: Path) -> None:
    """A process in a memory cgroup limited to 8 MiB cannot get 16 MiB of rings."""
    cg_root = Path("/sys/fs/cgroup")
    if not (cg_root / "cgroup.controllers").exists():
        subprocess.run(["mount", "-t", "cgroup2", "none", str(cg_root)], check=True)
    if "memory" not in (cg_root / "cgroup.controllers").read_text().split():
        pytest.skip("this kernel has no memory cgroup controller (CONFIG_MEMCG): nothing to charge")
    (cg_root / "cgroup.subtree_control").write_text("+memory")
    cg = cg_root / "msrdrv-sampler-test"
    cg.mkdir(exist_ok=True)
    try:
        (cg / "memory.max").write_text(str(8 << 20))
        code = (
            "import errno, os, sys\nfrom msrctl.device.msrdrv import DeviceError\nfrom msrctl.ksampler import Sampler\n"
            f"open('{cg}/cgroup.procs', 'w').write(str(os.getpid()))\n"
            "for records in (4096, 131072):\n"
            "    try:\n        Sampler(['rdtsc'], cpus=[0, 1], records=records).close(); print(records, 'OK')\n"
            "    except DeviceError as e:\n        print(records, errno.errorcode[e.errno])\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["4096", "OK", "131072", "ENOMEM"]
    finally:
        time.sleep(0.2)
        cg.rmdir()


# --- bounds and refusals --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        ({"abi_version": 2}, "EPROTO"),
        ({"flags": 1}, "EINVAL"),
        ({"reserved0": 1}, "EINVAL"),
        ({"reserved3": 1 << 63}, "EINVAL"),
        ({"nops": 0}, "EINVAL"),
        ({"nrecords": 0}, "EINVAL"),
        ({"nrecords": 1}, "EINVAL"),
        ({"nrecords": 96}, "EINVAL"),
        ({"watermark": 0}, "EINVAL"),
        ({"watermark": 65}, "EINVAL"),
        ({"cpus_size": 0}, "EINVAL"),
        ({"cpus_size": abi.SAMPLER_CPUS_SIZE_MAX + 1}, "EINVAL"),
        ({"period_ns": 9_999}, "ERANGE"),
        ({"period_ns": 0}, "ERANGE"),
        ({"period_ns": abi.SAMPLER_PERIOD_MAX_NS + 1}, "ERANGE"),
        ({"period_ns": 10_000}, "OK"),
        ({"ops": 0}, "EFAULT"),
        ({"cpus": 0}, "EFAULT"),
        ({"nrecords": 1 << 20}, "EFBIG"),  # 2 CPUs x 40 MiB > 64 MiB
        ({"nrecords": 1 << 31}, "EFBIG"),
        ({"nrecords": 1 << 19}, "OK"),  # 2 x 20 MiB
    ],
)
def test_bad_requests_get_precise_errnos(dev: Device, fields: dict[str, int], want: str) -> None:
    ret, _ = raw_start(dev.fd, cpu_list=[0, 1], **fields)
    if ret >= 0:
        os.close(ret)
    if fields.get("period_ns") == 10_000 and errname(ret) == "EDQUOT":
        return  # allowed by the period bound; a slow kernel's tick does not fit 25 % of 10 us
    assert errname(ret) == want


def test_op_sets_only_read_and_rdtsc(dev: Device) -> None:
    for op, want in ((abi.OP_WRITE, "EOPNOTSUPP"), (abi.OP_NOP, "EOPNOTSUPP"), (abi.OP_STOP, "EOPNOTSUPP"),
                     (5, "EINVAL"), (0xFFFF, "EINVAL")):  # fmt: skip
        assert errname(raw_start(dev.fd, op_list=[(abi.OP_RDTSC, 0), (op, 0x10)])[0]) == want, op
    # per-op fields a sampler has no use for must be zero (cpu: CPU_SELF)
    arr: Any = ffi.new("struct msrdrv_op[]", 1)
    for field, value in (("flags", abi.OPF_MASKED), ("mask", 1), ("cpu", 0)):
        arr[0].op, arr[0].msr, arr[0].cpu, arr[0].flags, arr[0].mask = abi.OP_READ, 0x10, abi.CPU_SELF, 0, 0
        setattr(arr[0], field, value)
        assert errname(raw_start(dev.fd, arr=arr)[0]) == "EINVAL", field
    assert errname(raw_start(dev.fd, op_list=[(abi.OP_READ, 0x10)] * 65)[0]) == "E2BIG"
    ret = raw_start(dev.fd, op_list=[(abi.OP_READ, 0x10)] * 64)[0]
    assert errname(ret) == "OK"
    os.close(ret)


def test_cpu_sets_naming_absent_cpus(dev: Device) -> None:
    n = os.cpu_count() or 2
    assert errname(raw_start(dev.fd, cpu_list=[0, n])[0]) == "ENXIO"
    assert errname(raw_start(dev.fd, cpu_list=[8191])[0]) == "ENXIO"
    assert errname(raw_start(dev.fd, cpu_list=[], cpus_size=4)[0]) == "EINVAL"
    ret, req = raw_start(dev.fd, cpu_list=[1], cpus_size=abi.SAMPLER_CPUS_SIZE_MAX)  # a large, sparse bitmap is fine
    assert ret >= 0 and req.nrings == 1
    os.close(ret)


def test_write_only_device_file_cannot_start(loaded: None) -> None:
    fd = os.open(str(abi.DEVICE), os.O_WRONLY)
    try:
        assert errname(raw_start(fd)[0]) == "EBADF"
    finally:
        os.close(fd)


def test_out_fields_and_new_fd(dev: Device) -> None:
    ret, req = raw_start(dev.fd, op_list=[(abi.OP_RDTSC, 0)] * 3, cpu_list=[0, 1], nrecords=128)
    try:
        assert ret > dev.fd and req.nrings == 2 and req.record_size == 32 + 3 * 8
        assert req.ring_stride == PAGE + -(-128 * 56 // PAGE) * PAGE
        assert req.mmap_size == PAGE + 2 * req.ring_stride
        assert os.get_inheritable(ret) is False, "close-on-exec"
        flags = int(Path(f"/proc/self/fdinfo/{ret}").read_text().split("flags:")[1].split()[0], 8)
        assert flags & os.O_ACCMODE == os.O_RDONLY
        assert os.readlink(f"/proc/self/fd/{ret}") == "anon_inode:[msrdrv-sampler]"
    finally:
        os.close(ret)


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def test_start_with_unwritable_out_fields_is_efault_and_leaves_nothing(dev: Device) -> None:
    """The request is read, the sampler made, then its out fields cannot be stored:
    EFAULT, and no fd, timer, ring or sampler count is left behind."""
    pages = Pages(1)
    try:
        _, req = raw_start(dev.fd, nrecords=64, period_ns=50_000_000, nops=0)  # a template: EINVAL
        ffi.memmove(ffi.cast("void *", pages.page(0)), req, ffi.sizeof("struct msrdrv_sampler_start"))
        arr = ffi.new("struct msrdrv_op[]", 1)
        arr[0].op, arr[0].cpu = abi.OP_RDTSC, abi.CPU_SELF
        bitmap = ffi.new("uint8_t[]", [1])
        ro = ffi.cast("struct msrdrv_sampler_start *", pages.page(0))
        ro.nops, ro.ops, ro.cpus, ro.cpus_size = 1, abi.address(arr), abi.address(bitmap), 1
        pages.read_only(0)
        fds, base = open_fds(), refcnt()
        for _ in range(20):  # more than the 16 samplers allowed: a leaked count would show as EBUSY
            assert errname(abi.ioctl(dev.fd, abi.IOC_SAMPLER_START, ro)) == "EFAULT"
        assert open_fds() == fds and refcnt() == base
        ret, _ = raw_start(dev.fd)
        assert ret >= 0, errname(ret)
        os.close(ret)
    finally:
        pages.close()


def test_start_without_a_free_fd_is_emfile_and_leaves_nothing(dev: Device) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds, base = open_fds(), refcnt()
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(fds) + 1, hard))
    held: list[int] = []
    try:
        while True:  # fill every slot below the limit
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        for _ in range(20):
            assert errname(raw_start(dev.fd)[0]) == "EMFILE"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert open_fds() == fds and refcnt() == base
    ret, _ = raw_start(dev.fd)
    assert ret >= 0, errname(ret)
    os.close(ret)


def test_too_many_samplers_is_ebusy(dev: Device) -> None:
    fds = []
    try:
        for _ in range(16):
            ret, _ = raw_start(dev.fd, period_ns=50_000_000)
            assert ret >= 0
            fds.append(ret)
        assert errname(raw_start(dev.fd)[0]) == "EBUSY"
    finally:
        for fd in fds:
            os.close(fd)
    ret, _ = raw_start(dev.fd)
    assert ret >= 0
    os.close(ret)


def test_tsc_disabled_task_cannot_start_map_or_consume(dev: Device, cprog: Any) -> None:
    """In C: after PR_SET_TSC the Python runtime itself faults on 7.2 (its vDSO reads the TSC).

    A child that inherited the sampler and disabled its TSC, and then the
    parent, are refused CONSUME, a new mapping and a new sampler; the mapping
    already held stays readable (documented as not enforceable)."""
    r = subprocess.run([str(cprog("notsc_sampler"))], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [tuple(line.split()) for line in r.stdout.splitlines()]
    assert steps == [
        ("start", "OK"),
        ("map", "OK"),
        ("consume", "OK"),
        ("child-consume", "EPERM"),
        ("child-map", "EPERM"),
        ("child-read", "OK"),
        ("consume", "EPERM"),
        ("start", "EPERM"),
    ], r.stdout
    # the library's explanation of that errno
    from msrctl.ksampler.sampler import start_error

    assert "PR_SET_TSC" in start_error(errno.EPERM, {"nops": 1, "period_ns": 1, "records": 2, "ncpus": 1}, None)


# --- the mapping is read-only ---------------------------------------------------


def test_mapping_is_read_only_and_whole(dev: Device) -> None:
    ret, req = raw_start(dev.fd, cpu_list=[0, 1])
    fd, size = ret, int(req.mmap_size)
    try:
        for flags, prot, want in (
            (mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, errno.EACCES),  # the file is read-only
            (mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE, errno.EPERM),  # refused, even copy-on-write
            (mmap.MAP_PRIVATE, mmap.PROT_READ, errno.EINVAL),
        ):
            with pytest.raises(OSError) as ei:
                mmap.mmap(fd, size, flags=flags, prot=prot)
            assert ei.value.errno == want, (flags, prot)
        for length, offset in ((size - PAGE, 0), (size + PAGE, 0), (size - PAGE, PAGE)):
            with pytest.raises(OSError) as ei:
                mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=offset)
            assert ei.value.errno == errno.EINVAL, (length, offset)

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        try:
            hdr = SamplerHeader.parse(ffi.buffer(ffi.cast("char *", addr), size))
            assert hdr.nrings == 2 and hdr.size() == size
            for prot in (mmap.PROT_READ | mmap.PROT_WRITE, mmap.PROT_WRITE):
                assert libc.mprotect(addr, PAGE, prot) == -1 and ctypes.get_errno() == errno.EACCES
            # mremap cannot grow it (VM_DONTEXPAND)
            libc.mremap.restype = ctypes.c_void_p
            libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
            assert libc.mremap(addr, size, size + PAGE, 1) == ctypes.c_void_p(-1).value  # MREMAP_MAYMOVE
            # writing through /proc/self/mem (FOLL_FORCE) must not reach the ring either
            with open("/proc/self/mem", "r+b", buffering=0) as mem:
                mem.seek(addr + 8)
                with pytest.raises(OSError):
                    mem.write(b"\xff" * 8)
            assert SamplerHeader.parse(ffi.buffer(ffi.cast("char *", addr), size)).nops == 1
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def test_a_32_bit_task_is_refused_the_sampler_not_batches(dev: Device, cprog: Any) -> None:
    """Through compat_ioctl: a batch runs, SAMPLER_START is ENOEXEC (torn u64 head/tail)."""
    r = subprocess.run([str(cprog("compat_sampler", m32=True))], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["batch", "OK", "start", "ENOEXEC"]
    from msrctl.ksampler.sampler import start_error

    assert "32-bit" in start_error(errno.ENOEXEC, {"nops": 1, "period_ns": 1, "records": 2, "ncpus": 1}, None)


def test_a_mapping_of_many_chunks_maps_every_page_in_place(dev: Device) -> None:
    """The pages are inserted 512 at a time: 2 rings of 65,536 records of 3 ops
    are 1,795 pages (3 whole chunks and a partial one); ring 1's header is in
    the second chunk, and the last page must be there (no fault handler: a
    missing page would be SIGBUS)."""
    ret, req = raw_start(dev.fd, op_list=[(abi.OP_RDTSC, 0)] * 3, cpu_list=[0, 1], nrecords=65536, period_ns=20_000_000)
    assert ret >= 0, errname(ret)
    try:
        size, stride = int(req.mmap_size), int(req.ring_stride)
        assert size // PAGE == 1 + 2 * (1 + 65536 * 56 // PAGE) == 1795
        with mmap.mmap(ret, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as m:
            assert m[size - PAGE :] == bytes(PAGE)  # the last page is mapped (and unwritten)
            ring1 = PAGE + stride
            assert 512 <= ring1 // PAGE < 1024
            assert int.from_bytes(m[ring1 : ring1 + 4], "little") == 1  # ring 1's header: CPU 1
            wait_for(lambda: int.from_bytes(m[ring1 + 8 : ring1 + 16], "little") >= 1, "a record in ring 1", 30)
            rec = ring1 + PAGE
            assert int.from_bytes(m[rec + 28 : rec + 32], "little") == 1  # the record's cpu
            assert int.from_bytes(m[rec + 8 : rec + 16], "little") > 0  # its tsc
    finally:
        os.close(ret)


def test_a_child_sees_the_mapping_and_the_sampler_ends_with_both(dev: Device) -> None:
    """fork copies the mapping; the sampler lives until the last fd and mapping go."""
    base = refcnt()
    s = Sampler([RDTSC], cpus=[0], period_ns=2_000_000, records=64, watermark=1)
    pid = os.fork()
    if pid == 0:  # child: read a header field through the inherited mapping
        os._exit(0 if s.status()[0].cpu == 0 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    s.close()
    assert refcnt() == base


# --- CONSUME ----------------------------------------------------------------------


def consume(fd: int, new_tails: list[int], nrings: int | None = None, **fields: int) -> int:
    arr: Any = ffi.new("uint64_t[]", new_tails or [0])
    req: Any = ffi.new("struct msrdrv_sampler_consume *")
    req.abi_version, req.nrings = abi.ABI_VERSION, len(new_tails) if nrings is None else nrings
    req.tails = abi.address(arr)
    for k, v in fields.items():
        setattr(req, k, v)
    return abi.ioctl(fd, abi.IOC_SAMPLER_CONSUME, req)


def test_consume_moves_only_within_tail_and_head(dev: Device) -> None:
    with Sampler([RDTSC], cpus=[0, 1], period_ns=2_000_000, records=64, watermark=8) as s:
        assert s.wait(20)
        time.sleep(0.1)
        h = [r.head for r in s.status()]
        assert errname(consume(s.fd, [h[0] + 100_000, 0])) == "EINVAL", "beyond head"
        assert errname(consume(s.fd, [1, 0], nrings=1)) == "EINVAL"
        assert errname(consume(s.fd, [1, 0], nrings=3)) == "EINVAL"
        assert errname(consume(s.fd, [1, 0], abi_version=0)) == "EPROTO"
        assert errname(consume(s.fd, [1, 0], tails=8)) == "EFAULT"
        assert [r.tail for r in s.status()] == [0, 0], "a refused CONSUME moves nothing"
        assert consume(s.fd, [2, 1]) == 0
        assert [r.tail for r in s.status()] == [2, 1]
        assert errname(consume(s.fd, [1, 1])) == "EINVAL", "a tail never moves back"
        assert consume(s.fd, [2, 1]) == 0
        assert errname(abi.ioctl(dev.fd, abi.IOC_SAMPLER_CONSUME, ffi.new("struct msrdrv_sampler_consume *"))) == \
            "ENOTTY"  # fmt: skip
        assert errname(abi.ioctl(s.fd, abi.IOC_BATCH, ffi.new("struct msrdrv_batch *"))) == "ENOTTY"


def test_ring_header_matches_the_library_view(dev: Device) -> None:
    with Sampler([RDTSC], cpus=[1], period_ns=2_000_000, records=64) as s:
        assert s._mm is not None
        r = RingHeader.parse(s._mm, s.header.ring(0))
        assert r.cpu == 1 and r.state == abi.RING_RUNNING and s.revoked == 0


# --- the interrupt budget (sampler_cpu_pct, sampler_cpu_pct_user) ------------------------

SPIN = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
n, end = 0, time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    n += 1
print(n)
"""


def spin_pair(seconds: float = 0.5) -> tuple[int, int]:
    """Loop iterations of two spinners at once, pinned to CPUs 0 and 1, in `seconds` each."""
    procs = [
        subprocess.Popen([sys.executable, "-c", SPIN, str(cpu), str(seconds)], stdout=subprocess.PIPE, text=True)
        for cpu in (0, 1)
    ]
    n0, n1 = (int(p.communicate(timeout=60)[0]) for p in procs)
    return n0, n1


def budget_note(text: str) -> None:
    """One line for results/sampler-budget.txt, where the budget tests' figures go."""
    with (results_dir() / "sampler-budget.txt").open("a") as f:
        f.write(text + "\n")


def kept(loaded_round: Callable[[], tuple[int, int]], cpu: int, enough: float) -> tuple[list[float], int]:
    """The share of its idle throughput a spinner keeps on CPUs 0 and 1 while loaded_round runs.

    Idle and loaded readings alternate, a round of each, so a busy spell on the host (CI builds
    the Debian packages beside the guest) falls on both; one more idle reading closes them.  The
    share is the best loaded reading over the best idle one: a busy host only ever lowers a
    reading, so more rounds bring both closer to the truth and cannot flatter the quotient.
    Three rounds, and up to three more while CPU `cpu` keeps less than `enough`.  Returns the
    shares and the rounds run."""
    idle: list[tuple[int, int]] = []
    loaded: list[tuple[int, int]] = []

    def shares() -> list[float]:
        return [max(r[c] for r in loaded) / max(r[c] for r in idle) for c in (0, 1)]

    while len(loaded) < 3 or (shares()[cpu] < enough and len(loaded) < 6):
        idle.append(spin_pair())
        loaded.append(loaded_round())
    idle.append(spin_pair())
    budget_note(f"  spinner readings: idle {idle}, loaded {loaded}")
    return shares(), len(loaded)


MEMBER_SAMPLERS = """
import errno, json, sys, time
from msrctl.device.msrdrv import Device, MsrError
from msrctl.ksampler import Sampler
dev = Device(write=False)
got = []
for _ in range(4):  # sampler_max_user, each with sampler_max_ops_user reads at the member minimum
    try:
        got.append(Sampler([0x10] * 16, cpus=[1], period_ns=100_000, records=1024, device=dev))
    except MsrError as e:
        print(json.dumps(["refused", e.errno, str(e)]), flush=True)
print(json.dumps(["running", len(got)]), flush=True)
sys.stdin.readline()
print(json.dumps([h.throttled for s in got for h in s.status()]), flush=True)
"""


def irq_ns() -> int:
    """What the module measured at load for one timer interrupt (sampler_irq_ns)."""
    return int(SAMPLER_IRQ_NS.read_text())


HRTIMER_TOOK = re.compile(r"hrtimer: interrupt took (\d+) ns")
HRTIMER_MOST_NS = 200_000  # what one interrupt may take here; before the budget: 1,090,530 ns


def _loaded(kind: str, before: str) -> list[str]:
    """Kernel lines since before that say an interrupt ran too long or a CPU stalled.

    The kernel's hrtimer hang check prints `hrtimer: interrupt took N ns` after three passes
    over expired timers, however short: under TCG, with timers 40 us apart and the emulator's
    clock jumping, three passes happen in a few tens of microseconds.  So that line counts
    only when N shows a long interrupt (over HRTIMER_MOST_NS); its N goes to the results."""
    log = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout[len(before) :]
    bad = ("soft lockup", "rcu_preempt self-detected stall", "rcu: INFO", "hung_task")
    out = []
    for line in log.splitlines():
        took = HRTIMER_TOOK.search(line)
        if took:
            budget_note(f"{kind}: {line.strip()}")
        if any(b in line for b in bad) or (took and int(took.group(1)) > HRTIMER_MOST_NS):
            out.append(f"{kind}: {line}")
    return out


def test_a_members_worst_samplers_leave_a_spinner_its_cpu(dev: Device, tmp_path: Path) -> None:
    """4 member samplers of 16 reads at 100 us on CPU 1 (the budget is per CPU: on every CPU
    each gets the same): by default at most 5 % of it (some may be refused at START when one
    tick alone cannot fit), so a spinner on CPU 1 keeps most of its throughput.  CPU 0 runs a
    spinner at the same moments: under TCG each interrupt also costs the emulator's own threads,
    which slows every vCPU, and the figures go to results/sampler-budget.txt beside it."""
    from msrctl.admin import allowlist
    from msrctl.admin.allowlist import Entry

    lines: list[str] = []
    refused: list[str] = []
    throttled: list[int] = []

    def member_round() -> tuple[int, int]:
        """The member's samplers started, a spinner pair's reading, the samplers closed."""
        p = subprocess.Popen(
            [*MEMBER, sys.executable, "-c", MEMBER_SAMPLERS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
        assert p.stdin is not None and p.stdout is not None
        lines.clear()
        while not (lines and lines[-1].startswith('["running"')):
            line = p.stdout.readline()
            assert line, "the member's samplers did not start"
            lines.append(line.strip())
        reading = spin_pair()
        p.stdin.write("\n")
        p.stdin.flush()
        throttled.extend(json.loads(p.stdout.readline()))
        assert p.wait(timeout=60) == 0
        refused[:] = [line for line in lines if line.startswith('["refused"')]
        assert all(f", {errno.EDQUOT}, " in line for line in refused), refused  # only the budget refuses
        return reading

    allowlist.load(dev.fd, [Entry(0x10, 0)])
    before = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    try:
        share, rounds = kept(member_round, 1, 0.70)
    finally:
        allowlist.clear(dev.fd)
    budget_note(
        f"member worst case (TCG, sampler_irq_ns {irq_ns()}): {lines[-1]} samplers on CPU 1, "
        f"{len(refused)} refused (EDQUOT); over {rounds} rounds a spinner on CPU 1 kept {100 * share[1]:.1f}% "
        f"of its idle throughput, one on CPU 0 (not sampled) {100 * share[0]:.1f}%; "
        f"throttled periods per sampler {throttled}"
    )
    assert sum(throttled) > 0  # the budget was reached and held
    # "most of its throughput": 68-100 % on CPU 1 in the TCG guest, 64-92 % without the budget
    assert share[1] >= 0.70, (share, rounds, lines, throttled)
    assert _loaded("member", before) == []


SLOW_SAMPLER = """
import json, sys, time
from msrctl.device.msrdrv import Device
from msrctl.ksampler import Sampler
period_ns, seconds = int(sys.argv[1]), float(sys.argv[2])
with Sampler([0x10] * 2, cpus=[1], period_ns=period_ns, records=4096, device=Device(write=False)) as s:
    time.sleep(seconds)
    h = s.status()[0]
    print(json.dumps([h.head, h.missed, h.throttled]))
"""


def slow_member_sampler(period_ns: int = 2_000_000, seconds: float = 1.5) -> tuple[int, int, int]:
    """A member's sampler of 2 reads every period_ns on CPU 1: records, missed and throttled periods."""
    r = subprocess.run(
        [*MEMBER, sys.executable, "-c", SLOW_SAMPLER, str(period_ns), str(seconds)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    head, missed, throttled = json.loads(r.stdout)
    return head, missed, throttled


def quiet_period() -> int:
    """A member's period whose interrupts the budget charges at most 2.5 % of a CPU: 2 ms
    (sampler_irq_ns 13-53 us under TCG), longer when the load measured more (a busy host
    makes the emulator's interrupts dearer: 110-140 us with a spinner beside the guest)."""
    return max(2_000_000, 40 * irq_ns())


def test_a_slow_sampler_is_not_throttled_for_time_that_was_not_its(dev: Device) -> None:
    """A tick is charged its own time and one interrupt's measured cost, not its lateness: a
    vCPU the host descheduled, or another handler, delays a tick without the sampler costing
    more.  Charged its lateness, this sampler lost about half its ticks under TCG (406 of 751)."""
    from msrctl.admin import allowlist
    from msrctl.admin.allowlist import Entry

    period = quiet_period()
    allowlist.load(dev.fd, [Entry(0x10, 0)])
    try:
        head, missed, throttled = slow_member_sampler(period)
    finally:
        allowlist.clear(dev.fd)
    periods = head + missed + throttled
    budget_note(
        f"member 2 reads at {period / 1e6:g} ms (TCG, sampler_irq_ns {irq_ns()}): "
        f"{head} records, {missed} missed, {throttled} throttled"
    )
    assert periods >= 1_000_000_000 // period, (head, missed, throttled)  # 1.5 s of them: the guest ran the timer
    assert throttled <= periods // 50, (head, missed, throttled)  # 5 ticks of 10 ms: 6 % of 5 %


def test_root_sets_the_interrupt_cost_and_the_budget_follows(dev: Device) -> None:
    """sampler_irq_ns is measured at load (an empty hrtimer interrupt's stall, under TCG
    tens of microseconds) and root may set it: at its ceiling of 1 ms, the same slow sampler
    is throttled to about half its ticks (5 % of 10 ms is 500 us), then not again once the
    measured value is back."""
    from msrctl.admin import allowlist
    from msrctl.admin.allowlist import Entry

    measured = irq_ns()
    assert 0 < measured <= 1_000_000, measured
    mode = SAMPLER_IRQ_NS.stat().st_mode & 0o777
    assert mode == 0o644, oct(mode)  # root's to set, members' to read
    allowlist.load(dev.fd, [Entry(0x10, 0)])
    try:
        SAMPLER_IRQ_NS.write_text("50000000")  # above the ceiling: charged as 1 ms
        try:
            head, missed, throttled = slow_member_sampler()
        finally:
            SAMPLER_IRQ_NS.write_text(str(measured))
        after = slow_member_sampler(quiet_period())
    finally:
        allowlist.clear(dev.fd)
    budget_note(
        f"sampler_irq_ns measured {measured}; member 2 reads at 2 ms charged 1 ms per interrupt: "
        f"{head} records, {throttled} throttled; back at {measured}: {after[0]} records, {after[2]} throttled"
    )
    assert throttled >= 2 * head, (head, missed, throttled)  # one of a window's 5 ticks runs
    assert after[2] <= (after[0] + after[1] + after[2]) // 50, after


def test_an_interrupt_cost_given_at_load_is_kept(loaded: None) -> None:
    """modprobe.d's sampler_irq_ns=N skips the measurement; without it the load measures."""
    unload_module()
    load_module("sampler_irq_ns=12345")
    try:
        given = irq_ns()
    finally:
        unload_module()
        load_module()
    assert given == 12345
    assert 0 < irq_ns() <= 1_000_000


def test_roots_worst_samplers_leave_the_guest_responsive(dev: Device) -> None:
    """16 samplers on every CPU of 64 reads each, at the shortest period START takes from root's
    10 us minimum up (doubling; a tick that cannot fit 25 % is refused with EDQUOT): the budget
    throttles them, the guest answers, and no interrupt runs long enough for the kernel to
    complain."""
    ops, period = 64, 10_000
    while True:
        ret, _ = raw_start(dev.fd, [(abi.OP_READ, 0x10)] * ops, period_ns=period, nrecords=1024)
        if ret >= 0 or period > 100_000_000:
            break
        assert errname(ret) == "EDQUOT", errname(ret)
        period *= 2
    assert ret >= 0, "64 reads do not fit 25 % of even a 100 ms period"
    period *= 2  # a margin: START times the ops again, and emulation's timing varies
    answered: list[float] = []
    throttled: list[int] = []

    def root_round() -> tuple[int, int]:
        """16 such samplers started, a shell timed, a spinner pair's reading, the samplers closed."""
        fds = []
        try:
            for _ in range(16):
                ret, req = raw_start(dev.fd, [(abi.OP_READ, 0x10)] * ops, period_ns=period, nrecords=1024)
                assert ret >= 0, errname(ret)
                fds.append(ret)
            t0 = time.monotonic()
            subprocess.run(["sh", "-c", "true"], check=True, timeout=10)
            answered.append(time.monotonic() - t0)
            reading = spin_pair()
            mm = mmap.mmap(fds[0], int(req.mmap_size), prot=mmap.PROT_READ)
            hdr = SamplerHeader.parse(mm)
            throttled.append(RingHeader.parse(mm, hdr.ring(0)).throttled)
            mm.close()
        finally:
            for fd in fds:
                os.close(fd)
        return reading

    os.close(ret)
    before = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    share, rounds = kept(root_round, 1, 0.5)
    budget_note(
        f"root worst case (TCG, sampler_irq_ns {irq_ns()}): "
        f"16 samplers x {ops} reads at {period / 1000:g} us (the shortest START took); "
        f"a shell answered in {min(answered):.2f}-{max(answered):.2f} s; over {rounds} rounds a spinner "
        f"on CPU 1 kept {100 * share[1]:.1f}% of its idle throughput (CPU 0 {100 * share[0]:.1f}%); "
        f"ring 0 of sampler 0 throttled {throttled}"
    )
    assert sum(throttled) > 0  # the budget was reached and held
    assert share[1] >= 0.5, (share, rounds)
    assert _loaded("root", before) == []


# --- quotas per user --------------------------------------------------------------------

HOLDER = """
import json, sys
from msrctl.device.msrdrv import Device, MsrError
from msrctl.ksampler import Sampler
dev = Device(write=False)
held, out = [], []
for records in json.loads(sys.argv[1]):  # records per ring of each sampler asked for, on CPU 0
    try:
        held.append(Sampler([0x10], cpus=[0], period_ns=1_000_000_000, records=records, device=dev))
        out.append("OK")
    except MsrError as e:
        out.append(e.errno)
print(json.dumps(out), flush=True)
sys.stdin.readline()
"""


def holder(user: str, records: list[int]) -> tuple[subprocess.Popen[str], list[Any]]:
    """A daemon-like process of user's that starts samplers and holds them until told."""
    from conftest import privdrop

    p = subprocess.Popen(
        [*privdrop(user), sys.executable, "-c", HOLDER, json.dumps(records)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert p.stdout is not None
    return p, json.loads(p.stdout.readline())


def test_member_quotas_are_per_user(dev: Device) -> None:
    """One member holding sampler_max_user samplers (or its ring memory) no longer shuts the
    other members out: counts and memory are per user, under the global sampler_max."""
    from msrctl.admin import allowlist
    from msrctl.admin.allowlist import Entry

    allowlist.load(dev.fd, [Entry(0x10, 0)])
    procs = []
    try:
        a, got = holder("msruser", [2] * 5)  # 5 small samplers: the 5th is over the user's 4
        procs.append(a)
        assert got == ["OK"] * 4 + [errno.EBUSY]
        b, got = holder("msruser2", [2])  # another member still gets one
        procs.append(b)
        assert got == ["OK"]
        # memory: a 4 MiB ring fits a user's sampler_max_kib_user only alone (record 40 bytes)
        big = 1 << 16  # 65536 records x 40 B = 2.5 MiB, plus headers
        c, got = holder("msruser2", [big, big])  # msruser2 holds one small one already
        procs.append(c)
        assert got == ["OK", errno.EFBIG]  # the second would pass msruser2's 4 MiB
        ret, _ = raw_start(dev.fd, period_ns=1_000_000_000)  # root: only the global ceiling
        assert ret >= 0
        os.close(ret)
        for p in procs:
            p.communicate("\n", timeout=60)
        a, got = holder("msruser", [2] * 4)  # all released: the count went back to 0
        a.communicate("\n", timeout=60)
        assert got == ["OK"] * 4
    finally:
        for p in procs:
            if p.poll() is None:
                p.communicate("\n", timeout=60)
        allowlist.clear(dev.fd)
