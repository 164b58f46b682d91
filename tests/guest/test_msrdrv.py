"""The msrdrv module's ioctl ABI, exercised in the guest against the real module."""

from __future__ import annotations

import errno
import grp
import mmap
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import cffi
import pytest
from conftest import (
    NODE,
    REPO,
    Batch,
    Device,
    abi,
    ffi,
    load_module,
    module_loaded,
    module_path,
    raw_batch,
    read_on,
    run_as,
    set_cpu_online,
    unload_module,
)

from msrctl.admin import allowlist
from msrctl.device.msrdrv import CPU_SELF

APIC_BASE = 0x1B
TSC_AUX = 0xC0000103
PKRS = 0x6E1


def ops_array(*ops: tuple[int, int, int] | tuple[int, int, int, int]) -> Any:
    """(op, cpu, msr[, value]) tuples as a struct msrdrv_op[]."""
    arr = ffi.new("struct msrdrv_op[]", max(1, len(ops)))
    for i, o in enumerate(ops):
        arr[i].op, arr[i].cpu, arr[i].msr = o[0], o[1], o[2]
        arr[i].value = o[3] if len(o) > 3 else 0
        arr[i].err = 12345  # sentinel: shows whether the kernel wrote the op back
    return arr


# --- the device node -------------------------------------------------------


def test_node_made_by_devtmpfs_and_udev_rule() -> None:
    st = NODE.stat()
    assert stat.S_ISCHR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    assert st.st_gid == grp.getgrnam("msr").gr_gid
    # a misc device: dynamic minor under the misc major, no fixed major of our own
    assert os.major(st.st_rdev) == 10
    assert Path("/sys/class/misc/msrdrv/dev").read_text().strip() == f"10:{os.minor(st.st_rdev)}"


def test_version_in_sysfs_and_info(dev: Device) -> None:
    version = (REPO / "dkms" / "VERSION").read_text().strip()
    assert Path("/sys/module/msrdrv/version").read_text().strip() == version
    info = dev.info()
    assert info.version == version
    assert info.abi_version == abi.ABI_VERSION == 1
    assert info.max_ops == int(Path("/sys/module/msrdrv/parameters/max_ops").read_text()) == 4096
    assert info.nr_cpu_ids == os.cpu_count()
    assert info.features & abi.FEAT_MULTI_CPU and info.features & abi.FEAT_LEGACY_CMDS
    assert info.rawio and info.writes_allowed


# --- reads, rdtsc, per-CPU grouping -----------------------------------------


def test_apic_base_on_every_cpu_in_one_batch(dev: Device, cpus: list[int]) -> None:
    assert len(cpus) >= 2
    b = Batch(len(cpus))
    for c in cpus:
        b.read(APIC_BASE, c)
    assert dev.submit(b) == 0
    assert b.done == len(cpus)
    got = {b.cpu(i): b.value(i) for i in range(len(cpus))}
    assert got == {c: 0xFEE00900 if c == 0 else 0xFEE00800 for c in cpus}


def test_results_in_one_call_match_op_by_op(dev: Device, cpus: list[int]) -> None:
    """values(), errors() and array() against the per-op accessors, with a failed op and a STOP."""
    b = Batch(8)
    for c in cpus:
        b.read(APIC_BASE, c)
    bad = b.write(PKRS, 1 << 40, 0)  # a reserved bit: EIO, the rest still runs
    b.stop()
    b.read(APIC_BASE, 0)  # after the STOP: not processed
    assert dev.submit(b) == 1
    n = len(cpus) + 2
    assert b.values() == [b.value(i) for i in range(n)]
    assert b.errors() == [b.err(i) for i in range(n)] and b.errors()[bad] == errno.EIO
    assert b.values()[: len(cpus)] == [0xFEE00900 if c == 0 else 0xFEE00800 for c in cpus]
    assert b.array().tolist() == b.values()


def test_rdtsc_monotonic_within_a_batch(dev: Device, cpus: list[int]) -> None:
    for cpu in cpus:
        b = Batch(64)
        idx = []
        for _ in range(32):
            idx.append(b.rdtsc(cpu))
            b.read(APIC_BASE, cpu)
        assert dev.submit(b) == 0
        tsc = [b.value(i) for i in idx]
        assert all(x < y for x, y in zip(tsc, tsc[1:])), tsc


def test_ops_for_mixed_cpus_keep_array_order_per_cpu(dev: Device, cpus: list[int]) -> None:
    # interleave CPUs; each CPU's RDTSCs must still come out in array order
    b = Batch(64)
    order: dict[int, list[int]] = {c: [] for c in cpus}
    for k in range(32):
        c = cpus[k % len(cpus)]
        order[c].append(b.rdtsc(c))
    assert dev.submit(b) == 0
    for c, idx in order.items():
        vals = [b.value(i) for i in idx]
        assert vals == sorted(vals) and len(set(vals)) == len(vals)
        assert all(b.cpu(i) == c for i in idx)


def test_self_cpu_runs_on_calling_cpu(dev: Device, cpus: list[int]) -> None:
    before = os.sched_getaffinity(0)
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            b = Batch(2)
            b.read(APIC_BASE, CPU_SELF)
            b.rdtsc(CPU_SELF)
            assert dev.submit(b) == 0
            assert b.cpu(0) == cpu and b.cpu(1) == cpu  # the kernel reports where it ran
            assert b.value(0) == (0xFEE00900 if cpu == 0 else 0xFEE00800)
    finally:
        os.sched_setaffinity(0, before)


def test_nop_and_empty_batch(dev: Device) -> None:
    b = Batch(2)
    b.nop()
    b.nop(cpu=0)
    assert dev.submit(b) == 0 and b.done == 2 and b.err(0) == b.err(1) == 0
    b.clear()
    assert dev.submit(b) == 0 and b.done == 0


def test_stop_ends_the_batch(dev: Device) -> None:
    ops = ops_array((abi.OP_READ, 0, APIC_BASE), (abi.OP_STOP, 0, 0), (abi.OP_READ, 0, APIC_BASE))
    rc, hdr = raw_batch(dev.fd, ops, 3)
    assert rc == 0
    assert hdr.ndone == 2 and hdr.nerrs == 0
    assert ops[0].err == 0 and ops[0].value == 0xFEE00900
    assert ops[1].err == 0
    assert ops[2].err == 12345 and ops[2].value == 0  # never run, never written back


# --- writes ------------------------------------------------------------------


@pytest.fixture
def tsc_aux(dev: Device, cpus: list[int]) -> Any:
    """Save TSC_AUX on every CPU and put it back: Linux keeps the CPU number there for getcpu()."""
    saved = {c: read_on(dev, TSC_AUX, c) for c in cpus}
    yield saved
    b = Batch(len(cpus))
    for c, v in saved.items():
        b.write(TSC_AUX, v, c)
    dev.submit(b)
    b.check()
    assert {c: read_on(dev, TSC_AUX, c) for c in cpus} == saved


def test_write_and_read_back_per_cpu(dev: Device, cpus: list[int], tsc_aux: dict[int, int]) -> None:
    b = Batch(3 * len(cpus))
    reads = {}
    for c in cpus:
        b.write(TSC_AUX, 0x5A00 + c, c)
        reads[c] = b.read(TSC_AUX, c)
    assert dev.submit(b) == 0, b.results()
    assert {c: b.value(i) for c, i in reads.items()} == {c: 0x5A00 + c for c in cpus}
    # and it stays written after the batch
    assert {c: read_on(dev, TSC_AUX, c) for c in cpus} == {c: 0x5A00 + c for c in cpus}


def test_masked_write_changes_only_masked_bits(dev: Device, tsc_aux: dict[int, int]) -> None:
    b = Batch(3)
    b.write(TSC_AUX, 0x1234, 0)
    w = b.write(TSC_AUX, 0xFFAF, 0, mask=0x00F0)
    r = b.read(TSC_AUX, 0)
    assert dev.submit(b) == 0
    assert b.value(w) == 0x12A4  # the full value written is reported back
    assert b.value(r) == 0x12A4


def test_write_taints_the_kernel(dev: Device, tsc_aux: dict[int, int]) -> None:
    b = Batch(1)
    b.write(TSC_AUX, tsc_aux[0], 0)
    assert dev.submit(b) == 0
    assert int(Path("/proc/sys/kernel/tainted").read_text()) & (1 << 2)  # TAINT_CPU_OUT_OF_SPEC


def test_faulting_write_fails_only_that_op(dev: Device) -> None:
    b = Batch(3)
    b.read(APIC_BASE, 0)
    b.write(PKRS, 1 << 40, 0)  # reserved bit: #GP, caught by wrmsr_safe
    b.read(APIC_BASE, 0)
    assert dev.submit(b) == 1
    assert [b.err(i) for i in range(3)] == [0, errno.EIO, 0]
    assert b.value(0) == b.value(2) == 0xFEE00900


def test_allow_writes_switch(dev: Device, tsc_aux: dict[int, int]) -> None:
    param = Path("/sys/module/msrdrv/parameters/allow_writes")
    param.write_text("N")
    try:
        assert not dev.info().writes_allowed
        b = Batch(2)
        b.write(TSC_AUX, 0x77, 0)
        b.read(TSC_AUX, 0)
        assert dev.submit(b) == 1
        assert b.err(0) == errno.EPERM
        assert b.value(1) == tsc_aux[0]
    finally:
        param.write_text("Y")
    assert dev.info().writes_allowed


# --- rejected batches lose nothing -------------------------------------------


def test_over_the_limit_is_e2big(dev: Device) -> None:
    limit = dev.info().max_ops
    ops = ffi.new("struct msrdrv_op[]", limit + 1)
    for i in range(limit + 1):
        ops[i].op, ops[i].cpu, ops[i].msr = abi.OP_READ, 0, APIC_BASE
    rc, _ = raw_batch(dev.fd, ops, limit + 1)
    assert rc == -errno.E2BIG
    rc, hdr = raw_batch(dev.fd, ops, limit)
    assert rc == 0 and hdr.ndone == limit and hdr.nerrs == 0
    assert ops[limit - 1].value == 0xFEE00900


def test_bad_pointers_are_efault(dev: Device) -> None:
    rc, _ = raw_batch(dev.fd, 0x10, 1)
    assert rc == -errno.EFAULT
    rc, _ = raw_batch(dev.fd, 0xFFFF_FFFF_FFFF_F000, 1)
    assert rc == -errno.EFAULT
    assert abi.ioctl(dev.fd, abi.IOC_BATCH, 0x8) == -errno.EFAULT
    assert abi.ioctl(dev.fd, abi.IOC_INFO, 0x8) == -errno.EFAULT


def test_array_running_into_an_unmapped_page_is_efault_and_runs_nothing(dev: Device, tsc_aux: dict[int, int]) -> None:
    pg = mmap.PAGESIZE
    m = mmap.mmap(-1, 2 * pg)
    base = abi.address(ffi.from_buffer(m))
    mm_ffi = cffi.FFI()
    mm_ffi.cdef("int mprotect(void *addr, size_t len, int prot);")
    assert mm_ffi.dlopen(None).mprotect(mm_ffi.cast("void *", base + pg), pg, 0) == 0
    sz = ffi.sizeof("struct msrdrv_op")
    first = base + pg - sz  # one op fits, the second is in the unmapped page
    ops = ffi.cast("struct msrdrv_op *", first)
    ops[0].op, ops[0].cpu, ops[0].msr, ops[0].value = abi.OP_WRITE, 0, TSC_AUX, 0x99
    rc, _ = raw_batch(dev.fd, first, 2)
    assert rc == -errno.EFAULT
    assert read_on(dev, TSC_AUX, 0) == tsc_aux[0]  # the write in the valid part did not run
    rc, hdr = raw_batch(dev.fd, first, 1)  # exactly up to the edge is fine
    assert rc == 0 and hdr.nerrs == 0
    assert read_on(dev, TSC_AUX, 0) == 0x99


def test_unknown_op_rejects_whole_batch(dev: Device, tsc_aux: dict[int, int]) -> None:
    ops = ops_array((abi.OP_WRITE, 0, TSC_AUX, 0x42), (99, 0, 0))
    rc, _ = raw_batch(dev.fd, ops, 2)
    assert rc == -errno.EINVAL
    assert ops[0].err == 12345  # nothing written back
    assert read_on(dev, TSC_AUX, 0) == tsc_aux[0]  # and the write did not happen


@pytest.mark.parametrize(
    ("field", "value", "want"),
    [
        ("abi_version", 0, errno.EPROTO),
        ("abi_version", 2, errno.EPROTO),
        ("flags", 2, errno.EINVAL),
        ("flags", 0x80000000, errno.EINVAL),
    ],
)
def test_bad_header_rejected(dev: Device, field: str, value: int, want: int) -> None:
    ops = ops_array((abi.OP_READ, 0, APIC_BASE))
    kwargs = {field: value}
    rc, _ = raw_batch(dev.fd, ops, 1, **kwargs)
    assert rc == -want
    assert ops[0].err == 12345


def test_self_cpu_is_output_only(dev: Device) -> None:
    ops = ops_array((abi.OP_READ, abi.CPU_SELF, APIC_BASE))
    rc, hdr = raw_batch(dev.fd, ops, 1, self_cpu=7)  # whatever the caller leaves there
    assert rc == 0 and hdr.self_cpu < 2 and ops[0].cpu == abi.CPU_SELF


def test_bad_op_flags_rejected(dev: Device) -> None:
    ops = ops_array((abi.OP_READ, 0, APIC_BASE))
    ops[0].flags = abi.OPF_MASKED  # masked only makes sense on a write
    assert raw_batch(dev.fd, ops, 1)[0] == -errno.EINVAL
    ops[0].op, ops[0].flags = abi.OP_WRITE, 0x80
    assert raw_batch(dev.fd, ops, 1)[0] == -errno.EINVAL


def test_unknown_ioctl_is_enotty(dev: Device) -> None:
    buf = ffi.new("char[64]")
    assert abi.ioctl(dev.fd, abi._ioc(3, abi.IOC_MAGIC, 0x7F, 32), buf) == -errno.ENOTTY


# --- CPUs ---------------------------------------------------------------------


def test_absent_cpu_is_enxio(dev: Device) -> None:
    b = Batch(3)
    b.read(APIC_BASE, 0)
    b.read(APIC_BASE, 4096)
    b.read(APIC_BASE, 0xFFFFFFFE)
    assert dev.submit(b) == 2
    assert [b.err(i) for i in range(3)] == [0, errno.ENXIO, errno.ENXIO]


def test_offline_cpu_is_enxio(dev: Device) -> None:
    set_cpu_online(1, False)
    try:
        b = Batch(2)
        b.read(APIC_BASE, 0)
        b.read(APIC_BASE, 1)
        assert dev.submit(b) == 1
        assert b.err(0) == 0 and b.value(0) == 0xFEE00900
        assert b.err(1) == errno.ENXIO
    finally:
        set_cpu_online(1, True)
    assert read_on(dev, APIC_BASE, 1) == 0xFEE00800


# --- permissions --------------------------------------------------------------

UNPRIVILEGED = """
import errno, sys
from msrctl.device.msrdrv import Batch, Device, DeviceError
try:
    dev = Device()
except DeviceError as e:
    print("open", errno.errorcode[e.errno]); sys.exit(0)
b = Batch(3)
b.read(0x1b, 0)
b.write(0xc0000103, 0x4242, 0)
b.read(0xc0000103, 0)
dev.submit(b)
print("ops", b.err(0), hex(b.value(0)), errno.errorcode.get(b.err(1), b.err(1)), hex(b.value(2)))
"""


def test_group_member_without_a_list_gets_nothing(dev: Device, tsc_aux: dict[int, int]) -> None:
    allowlist.clear(dev.fd)
    r = run_as("msruser", UNPRIVILEGED)
    assert r.returncode == 0, r.stderr
    # deny by default: each op refused, values untouched (0 as the caller left them)
    assert r.stdout.split() == ["ops", "13", "0x0", "EACCES", "0x0"]
    assert read_on(dev, TSC_AUX, 0) == tsc_aux[0]


def test_other_user_cannot_open() -> None:
    r = run_as("otheruser", UNPRIVILEGED)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["open", "EACCES"]


# --- the seed's IOCTL_MSR_CMDS, from C -----------------------------------------


@pytest.fixture(scope="module")
def legacy_prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("c") / "legacy_cmds"
    subprocess.run(
        [
            "cc",
            "-O2",
            "-Wall",
            "-Werror",
            "-I",
            str(REPO / "dkms"),
            "-o",
            str(exe),
            str(REPO / "tests/guest/c/legacy_cmds.c"),
        ],
        check=True,
    )
    return exe


def legacy(prog: Path, mode: str, cpu: int = 0) -> tuple[list[int], list[tuple[int, int, int]]]:
    out = subprocess.run(["taskset", "-c", str(cpu), str(prog), mode], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    head = lines[0].split()
    rows = [tuple(int(x, 0) for x in line.split()) for line in lines[1:]]
    return [int(head[1]), int(head[3])], rows  # type: ignore[misc]


def test_legacy_cmds_read_and_rdtsc(loaded: None, legacy_prog: Path, cpus: list[int]) -> None:
    for cpu in cpus:
        (ret, err), rows = legacy(legacy_prog, "read", cpu)
        assert (ret, err) == (0, 0)
        assert rows[0] == (abi.OP_READ, APIC_BASE, 0xFEE00900 if cpu == 0 else 0xFEE00800)
        assert 0 < rows[1][2] < rows[2][2]  # two RDTSCs, in order
        assert rows[3][0] == abi.OP_STOP


def test_legacy_cmds_fault_returns_eio_with_values(loaded: None, legacy_prog: Path) -> None:
    (ret, err), rows = legacy(legacy_prog, "fault")
    assert (ret, err) == (-1, errno.EIO)
    assert rows[0][2] == 0xFEE00900 and rows[2][2] == 0xFEE00900


def test_legacy_cmds_stops_at_the_limit(loaded: None, legacy_prog: Path) -> None:
    (ret, err), rows = legacy(legacy_prog, "full")
    assert (ret, err) == (0, 0)
    assert len(rows) == abi.MSR_VEC_LIMIT
    assert all(r[2] == 0xFEE00900 for r in rows[0::2])
    tscs = [r[2] for r in rows[1::2]]
    assert tscs == sorted(tscs)


def test_legacy_cmds_unknown_op_is_einval_and_runs_nothing(loaded: None, legacy_prog: Path) -> None:
    (ret, err), rows = legacy(legacy_prog, "badop")
    assert (ret, err) == (-1, errno.EINVAL)
    assert [r[2] for r in rows] == [0, 0, 0, 0]  # the READ before it did not run


def test_legacy_cmds_in_read_only_memory_is_efault(loaded: None, legacy_prog: Path) -> None:
    # results cannot be written back: refused before any op runs
    (ret, err), rows = legacy(legacy_prog, "readonly")
    assert (ret, err) == (-1, errno.EFAULT)
    assert [r[2] for r in rows] == [0, 0, 0, 0]


def test_legacy_cmds_without_stop_past_the_page_is_efault(loaded: None, legacy_prog: Path) -> None:
    (ret, err), _ = legacy(legacy_prog, "nostop")
    assert (ret, err) == (-1, errno.EFAULT)


# --- module lifetime -------------------------------------------------------------


def test_unload_refused_while_open_then_reload(loaded: None) -> None:
    with Device():
        r = subprocess.run(["rmmod", "msrdrv"], capture_output=True, text=True, check=False)
        assert r.returncode != 0 and "in use" in r.stderr
        assert module_loaded()
    unload_module()
    assert not NODE.exists() and not module_loaded()
    with pytest.raises(Exception) as exc:
        Device()
    assert getattr(exc.value, "errno", None) == errno.ENOENT
    load_module("max_ops=8")
    st = NODE.stat()
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam("msr").gr_gid
    with Device() as d:
        assert d.info().max_ops == 8
        ops = ops_array(*[(abi.OP_RDTSC, 0, 0)] * 9)
        assert raw_batch(d.fd, ops, 9)[0] == -errno.E2BIG
        assert raw_batch(d.fd, ops, 8)[0] == 0
    unload_module()
    r = subprocess.run(["insmod", str(module_path()), "max_ops=0"], capture_output=True, check=False)
    assert r.returncode != 0 and not module_loaded()
    load_module()


# An admin's typo in modprobe.d fails the load, naming the parameter, rather
# than loading a module that clamps it silently.
BAD_PARAMETERS = {
    "max_ops=0": "max_ops=0, max_ops_user=",
    "max_ops_user=65537": "max_ops_user=65537: each must be 1-65536",
    "section_ops=0": "section_ops=0 out of range 1-4096",
    "section_ops=4097": "section_ops=4097 out of range 1-4096",
    "sampler_max=1025": "sampler parameters out of range",
    "sampler_max_ops_user=65": "sampler parameters out of range",
    "sampler_min_period_ns=999": "sampler parameters out of range",
    "sampler_max_kib=15": "sampler parameters out of range",
}


def test_out_of_range_parameters_refuse_the_load(loaded: None) -> None:
    unload_module()
    try:
        for param, message in BAD_PARAMETERS.items():
            marker = f"msrdrv-tests: insmod {param}"
            Path("/dev/kmsg").write_text(marker + "\n")
            r = subprocess.run(["insmod", str(module_path()), param], capture_output=True, text=True)
            assert r.returncode != 0 and not module_loaded() and not NODE.exists(), param
            log = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
            assert message in log.rsplit(marker, 1)[1], (param, log.rsplit(marker, 1)[1][-400:])
    finally:
        load_module()
    with Device() as d:
        assert read_on(d, APIC_BASE, 0) == 0xFEE00900


def test_many_load_unload_cycles(loaded: None) -> None:
    for _ in range(5):
        unload_module()
        load_module()
        with Device() as d:
            assert read_on(d, APIC_BASE, 0) == 0xFEE00900
