"""The access policy, tried as an attacker in group msr would: each test
here failed on the module before policy v2 (issue 11) and pins one rule.

Evidence comes from the kernel where a register's value cannot show it: the
msr:read_msr/write_msr tracepoints list every rdmsr/wrmsr the module issued.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    MEMBER,
    NODE,
    REPO,
    Batch,
    Device,
    MsrTrace,
    Pages,
    abi,
    as_member,
    batch_as,
    ffi,
    member_py,
    raw_batch,
    read_on,
)

from msrctl.admin import allowlist, protected
from msrctl.admin.allowlist import Entry

TSC = 0x10
APIC_BASE = 0x1B
PRED_CMD = 0x49  # write-only (reading it faults on real hardware); a barrier command, listable
LSTAR = 0xC0000082
FMASK = 0xC0000084  # kernel control: a member setting it makes syscalls enter with AC or TF set
TSC_AUX = 0xC0000103  # kernel control: the kernel reads it back as its CPU number
# Member writes use IA32_PKRS: the one register QEMU's TCG stores that steers
# nothing here (the kernel never sets CR4.PKS, so msrdrv lets a list grant it).
PKRS = 0x6E1


@pytest.fixture
def policy(dev: Device) -> Iterator[Device]:
    """No allowlist, and TSC_AUX and PKRS as found, before and after."""
    saved = {(m, c): read_on(dev, m, c) for m in (TSC_AUX, PKRS) for c in (0, 1)}
    allowlist.clear(dev.fd)
    yield dev
    allowlist.clear(dev.fd)
    NODE.chmod(0o660)
    b = Batch(len(saved))
    for (m, c), v in saved.items():
        b.write(m, v, c)
    dev.submit(b)
    b.check()


def set_list(fd: int, rows: list[tuple[int, int, int]]) -> int:
    """SET with raw (msr, flags, write_mask) rows, bypassing msrctl's checks; 0 or -errno."""
    arr: Any = ffi.new("struct msrdrv_allow_entry[]", max(1, len(rows)))
    for i, (msr, flags, mask) in enumerate(rows):
        arr[i].msr, arr[i].flags, arr[i].write_mask = msr, flags, mask
    hdr: Any = ffi.new("struct msrdrv_allowlist *")
    hdr.abi_version, hdr.nentries, hdr.entries = abi.ABI_VERSION, len(rows), abi.address(arr)
    return abi.ioctl(fd, abi.IOC_SET_ALLOWLIST, hdr)


MEMBER_OPS = """
import errno, json, os, sys
from msrctl.device.msrdrv import Batch, Device
ops = json.loads(sys.argv[1])
dev = Device()
b = Batch(len(ops))
for op, msr, value, cpu, mask in ops:
    if op == "read":
        b.read(msr, cpu)
    else:
        b.write(msr, value, cpu, mask)
dev.submit(b)
print(json.dumps([[errno.errorcode.get(b.err(i), "OK"), b.value(i)] for i in range(len(ops))]))
"""


def member_ops(ops: list[tuple[str, int, int, int, int | None]]) -> list[tuple[str, int]]:
    """(op, msr, value, cpu, mask) as msruser; [(errno name, value field after)]."""
    return [(e, v) for e, v in json.loads(member_py(MEMBER_OPS, json.dumps(ops)))]


# --- 1. deny by default; kernel addresses never reach a member -------------------


def test_member_gets_nothing_until_a_list_is_loaded(policy: Device) -> None:
    before = read_on(policy, PKRS, 0)
    with MsrTrace([APIC_BASE, TSC, PKRS]) as tr:
        out = batch_as("msruser", [("read", APIC_BASE, 0, 0), ("read", TSC, 0, 1), ("write", PKRS, 0x42, 0)])
        assert tr.events() == []  # the module touched none of them
    assert out["errs"] == ["EACCES", "EACCES", "EACCES"]
    assert out["values"] == [0, 0, 0x42]  # nothing came back
    assert read_on(policy, PKRS, 0) == before


def test_lstar_leaks_kaslr_to_root_only(policy: Device) -> None:
    """LSTAR is the address of entry_SYSCALL_64: the exact KASLR secret."""
    kallsyms = {line.split()[2]: int(line.split()[0], 16) for line in Path("/proc/kallsyms").read_text().splitlines()}
    assert read_on(policy, LSTAR, 0) == kallsyms["entry_SYSCALL_64"]  # root: as designed
    assert kallsyms["entry_SYSCALL_64"] >> 47 == 0x1FFFF  # a real kernel address, not a zero
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    out = batch_as("msruser", [("read", LSTAR, 0, 0), ("read", TSC, 0, 0)])
    assert out["errs"] == ["EACCES", "OK"] and out["values"][0] == 0


RANGES = [(r.first, r.last, r.description) for r in protected.RANGES]


@pytest.mark.parametrize(("first", "last", "what"), RANGES, ids=[f"{r[0]:#x}" for r in RANGES])
def test_a_list_naming_a_protected_msr_is_refused(policy: Device, first: int, last: int, what: str) -> None:
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    for msr in sorted({first, (first + last) // 2, last}):
        assert set_list(policy.fd, sorted([(TSC, 1, 0), (msr, 1, 0)])) == -errno.EACCES, hex(msr)
    # neighbours just outside the range are ordinary MSRs
    for msr in (first - 1, last + 1):
        if 0 <= msr <= 0xFFFFFFFF and not protected.is_protected(msr):
            assert set_list(policy.fd, [(msr, 1, 0)]) == 0, hex(msr)
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    assert allowlist.current(policy.fd) == [Entry(TSC, 0)]  # a refused list changes nothing


# --- 1b. kernel control: readable through a list, never writable by a member -------------

CONTROL = [(r.first, r.last, r.description) for r in protected.CONTROL if r.first != PKRS]


def _listable(msr: int) -> bool:
    return not protected.protected_range(msr) and not protected.control_range(msr)


@pytest.mark.parametrize(("first", "last", "what"), CONTROL, ids=[f"{r[0]:#x}" for r in CONTROL])
def test_a_write_mask_on_a_kernel_control_msr_is_refused(policy: Device, first: int, last: int, what: str) -> None:
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    for msr in sorted({first, (first + last) // 2, last}):
        if protected.protected_range(msr):
            continue  # a bank's address register: refused outright (above)
        assert set_list(policy.fd, [(msr, 1, 1)]) == -errno.EACCES, hex(msr)  # one writable bit is enough
        assert set_list(policy.fd, [(msr, 0, ~0 & (2**64 - 1))]) == -errno.EACCES, hex(msr)  # write-only, too
        assert set_list(policy.fd, [(msr, 1, 0)]) == 0, hex(msr)  # read-only: allowed
    for msr in (first - 1, last + 1):  # the neighbours outside are ordinary MSRs
        if _listable(msr):
            assert set_list(policy.fd, [(msr, 1, 0xFF)]) == 0, hex(msr)
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    assert allowlist.current(policy.fd) == [Entry(TSC, 0)]  # a refused list changes nothing


def test_member_reads_fmask_through_a_list_but_never_writes_it(policy: Device) -> None:
    """FMASK: the RFLAGS bits the kernel clears on syscall entry.  A member clearing AC or TF
    from it would make every syscall enter the kernel with them set."""
    fmask = read_on(policy, FMASK, 0)
    assert fmask & (1 << 18 | 1 << 8) == 1 << 18 | 1 << 8  # AC and TF: cleared on entry
    allowlist.load(policy.fd, [Entry(TSC, 0), Entry(FMASK, 0)])  # read-only: loads
    with MsrTrace([FMASK]) as tr:
        out = member_ops([("read", FMASK, 0, 0, None), ("write", FMASK, 0, 0, None), ("write", FMASK, 0, 1, 1 << 18)])
        writes = [e for e in tr.events() if e[0] == "write_msr"]
    assert [e for e, _ in out] == ["OK", "EACCES", "EACCES"] and out[0][1] == fmask
    assert writes == []  # refused before any wrmsr
    assert read_on(policy, FMASK, 0) == fmask and read_on(policy, FMASK, 1) == fmask


def test_msrctl_names_every_refused_line_and_can_drop_them(policy: Device, tmp_path: Path) -> None:
    """An msr-safe list (mask 0 everywhere but counters) with protected and kernel-control
    lines scattered through it: every one named at once, or dropped by --drop-protected."""
    src = tmp_path / "al_msrsafe.txt"
    src.write_text(
        "# MSR # Write Mask # Comment\n"
        "0x00000010 0x0000000000000000 # IA32_TIME_STAMP_COUNTER\n"
        "0x00000174 0x0000000000000000 # IA32_SYSENTER_CS\n"
        "0x000000E7 0x0000000000000000 # IA32_MPERF\n"
        "0x000001A0 0x0000004000000000 # IA32_MISC_ENABLE: turbo disable\n"
        "0x00000402 0x0000000000000000 # IA32_MC0_ADDR\n"
        "0x00000186 0x00000000FFCDFFFF # IA32_PERFEVTSEL0\n"
        "0xC0000084 0x0000000000040100 # SYSCALL_MASK: AC, TF\n"
    )
    load = [sys.executable, "-m", "msrctl", "allowlist", "load", str(src)]
    r = subprocess.run(load, capture_output=True, text=True, check=False)
    assert r.returncode == 64 and r.stderr.count("\n") == 1, r.stderr
    for line, msr in ((3, "0x174"), (5, "0x1a0"), (6, "0x402"), (8, "0xc0000084")):
        assert f"{src}:{line}: MSR {msr} " in r.stderr, (line, r.stderr)
    assert "4 lines msrdrv would refuse" in r.stderr and "--drop-protected" in r.stderr
    assert allowlist.current(policy.fd) == []
    r = subprocess.run([*load, "--drop-protected"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    dropped = r.stderr.splitlines()
    assert len(dropped) == 4 and all(d.startswith(f"msrctl: allowlist: dropped {src}:") for d in dropped)
    assert sum(d.endswith("(kept read-only)") for d in dropped) == 2  # MISC_ENABLE and FMASK
    assert allowlist.current(policy.fd) == [
        Entry(TSC, 0), Entry(0xE7, 0), Entry(0x186, 0xFFCDFFFF), Entry(0x1A0, 0), Entry(FMASK, 0),
    ]  # fmt: skip


def test_msrctl_warns_of_a_mask_that_puts_back_hardware_set_bits(policy: Device, tmp_path: Path) -> None:
    """THERM_STATUS with only its thermal log bit writable: the other 7 log bits (0xaaa8) are
    written back as read, so msrctl warns; the package register with all its log bits
    granted, and HWP_STATUS's plain write (mask ~0), do not.  The list still loads."""
    src = tmp_path / "sticky.txt"
    src.write_text("0x19c 0x2  # clear the thermal log only\n0x1b1 0x4000aaa\n0x777 0xffffffffffffffff\n")
    r = subprocess.run(
        [sys.executable, "-m", "msrctl", "allowlist", "load", str(src)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    warnings = r.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("msrctl: allowlist: warning: MSR 0x19c"), r.stderr
    assert "0xaaa8" in warnings[0]
    assert allowlist.current(policy.fd) == [Entry(0x19C, 0x2), Entry(0x1B1, 0x4000AAA), Entry(0x777, (1 << 64) - 1)]


def test_a_masked_write_of_no_bit_is_refused_even_for_root(policy: Device) -> None:
    """A write whose mask resolves to 0 would only put back what it read (write-1-to-clear
    bits included): it fails closed, with no rdmsr or wrmsr."""
    with MsrTrace([PKRS]) as tr:
        b = Batch(1)
        b.write(PKRS, 0x1234, 0, mask=0)
        assert policy.submit(b) == 1 and b.err(0) == errno.EACCES
        assert tr.events() == []


# --- 2. the open mode counts ------------------------------------------------------


def test_read_only_fd_cannot_write_or_set(policy: Device) -> None:
    fd = os.open(NODE, os.O_RDONLY)
    try:
        before = read_on(policy, PKRS, 0)
        with MsrTrace([PKRS]) as tr:
            ops = ffi.new("struct msrdrv_op[]", 2)
            ops[0].op, ops[0].cpu, ops[0].msr, ops[0].value = abi.OP_WRITE, 0, PKRS, before ^ 0x55
            ops[1].op, ops[1].cpu, ops[1].msr = abi.OP_READ, 0, PKRS
            rc, hdr = raw_batch(fd, ops, 2)
            assert rc == 0 and hdr.nerrs == 1
            assert -ops[0].err == errno.EBADF and ops[1].err == 0 and ops[1].value == before
            assert set_list(fd, [(TSC, 1, 0)]) == -errno.EBADF  # root, but a read-only fd
            assert [e for e in tr.events() if e[0] == "write_msr"] == []
        assert allowlist.current(policy.fd) == []
    finally:
        os.close(fd)


def test_write_only_fd_cannot_batch(policy: Device) -> None:
    fd = os.open(NODE, os.O_WRONLY)
    try:
        ops = ffi.new("struct msrdrv_op[]", 1)
        ops[0].op, ops[0].cpu, ops[0].msr = abi.OP_READ, 0, APIC_BASE
        assert raw_batch(fd, ops, 1)[0] == -errno.EBADF
        hdr: Any = ffi.new("struct msrdrv_allowlist *")
        hdr.abi_version = abi.ABI_VERSION
        assert abi.ioctl(fd, abi.IOC_GET_ALLOWLIST, hdr) == -errno.EBADF
        cmds = ffi.new("struct msrdrv_legacy_cmd[]", 2)
        cmds[0].op, cmds[0].ecx, cmds[1].op = abi.OP_READ, TSC, abi.OP_STOP
        assert abi.ioctl(fd, abi.IOCTL_MSR_CMDS, cmds) == -errno.EBADF
    finally:
        os.close(fd)


def test_node_mode_0640_makes_the_group_read_only(policy: Device) -> None:
    allowlist.load(policy.fd, [Entry(TSC, 0), Entry(PKRS, 0xFF00)])
    NODE.chmod(0o640)
    code = (
        "import errno, os, json\n"
        "from msrctl.device.msrdrv import Batch, Device\n"
        "try:\n    os.open('/dev/msrdrv', os.O_RDWR)\nexcept OSError as e:\n    rdwr = errno.errorcode[e.errno]\n"
        "d = Device()\n"
        "b = Batch(2); b.read(0x10, 0); b.write(0x6e1, 0x4200, 0, 0xff00); d.submit(b)\n"
        "name = lambda e: errno.errorcode.get(e, 'OK')\n"
        "print(json.dumps([rdwr, d.writable, name(b.err(0)), name(b.err(1))]))\n"
    )
    before = read_on(policy, PKRS, 0)
    out = member_py(code)
    assert json.loads(out) == ["EACCES", False, "OK", "EBADF"]
    assert read_on(policy, PKRS, 0) == before


# --- 3. nothing leaks through writes; write-only MSRs work -------------------------


def test_masked_write_without_read_returns_nothing(policy: Device) -> None:
    secret = 0x5EC2E7
    b = Batch(1)
    b.write(PKRS, secret, 0)
    policy.submit(b)
    b.check()
    allowlist.load(policy.fd, [Entry(PKRS, 0xFF00, read=False)])
    out = member_ops(
        [
            ("write", PKRS, 0, 0, 0),  # mask 0: would only read the register back
            ("write", PKRS, 0x0F, 0, 0x00FF),  # only bits the entry does not allow
            ("write", PKRS, 0xAB00, 0, 0xFF00),
            ("write", PKRS, 0xCD00, 0, None),  # unmasked: becomes a masked write
            ("read", PKRS, 0, 0, None),
        ]
    )
    assert out == [("EACCES", 0), ("EACCES", 0x0F), ("OK", 0xAB00), ("OK", 0xCD00), ("EACCES", 0)]
    assert read_on(policy, PKRS, 0) == (secret & ~0xFF00) | 0xCD00


def test_masked_write_with_read_returns_the_register(policy: Device) -> None:
    b = Batch(1)
    b.write(PKRS, 0x1234, 0)
    policy.submit(b)
    allowlist.load(policy.fd, [Entry(PKRS, 0xFF00, read=True)])
    assert member_ops([("write", PKRS, 0xAB00, 0, 0xFFFF)]) == [("OK", 0xAB34)]


def test_write_only_entry_writes_without_reading(policy: Device) -> None:
    allowlist.load(policy.fd, [Entry(PRED_CMD, 0xFFFF_FFFF_FFFF_FFFF, read=False), Entry(PKRS, 0xFF00)])
    with MsrTrace([PRED_CMD, PKRS]) as tr:
        out = member_ops([("write", PRED_CMD, 1, 0, None), ("write", PKRS, 0x4200, 0, None)])
        events = tr.events()
    assert out == [("OK", 1), ("OK", 0x4200)]
    assert ("write_msr", PRED_CMD, 1) in events
    assert [e for e in events if e[:2] == ("read_msr", PRED_CMD)] == []  # no forced read
    # the partial mask on PKRS needed its read: the trace does see reads
    assert [e[0] for e in events if e[1] == PKRS] == ["read_msr", "write_msr"]


# --- 4. revocation is synchronous ----------------------------------------------------

HAMMER = """
import sys
from msrctl.device.msrdrv import Batch, Device
d = Device()
n = d.info().max_ops
b = Batch(n)
for i in range(n - 2):
    b.write(0x6e1, 1 + i, 1)
t = b.rdtsc(1)  # taken on CPU 1 just before the batch's last write
last = b.write(0x6e1, 0, 1)
d.submit(b)
print("started", b.err(0), flush=True)
while True:
    d.submit(b)
    if b.err(last) == 0:
        print(b.value(t), flush=True)
"""


def tsc_now(dev: Device) -> int:
    b = Batch(1)
    b.rdtsc(1)
    dev.submit(b)
    return b.value(0)


def test_no_op_checked_against_a_revoked_list_runs_after_set_returns(policy: Device) -> None:
    """A member hammers CPU 1 with long allowlisted write batches, each timing
    its last write with an RDTSC op; no write may come later than the TSC
    root reads once the revocation has returned.  (Not the msr tracepoints:
    under this load, tracing write_msr killed sid's 7.2 guest.)"""
    late: list[list[int]] = []
    for trial in range(8):
        allowlist.load(policy.fd, [Entry(PKRS, 0xFFFF_FFFF)])
        user = as_member(sys.executable, "-c", HAMMER, wait=False)
        try:
            assert user.stdout is not None
            assert user.stdout.readline().split() == ["started", "0"]
            time.sleep(0.03 * trial)
            # revoke right after seeing a write land: mid-batch, most likely
            # 30 s: on a slow, loaded CI host 5 s once passed without the member writing
            seen = read_on(policy, PKRS, 1)
            reads, deadline = 1, time.monotonic() + 30
            while read_on(policy, PKRS, 1) == seen and time.monotonic() < deadline:
                reads += 1
            assert time.monotonic() < deadline, (
                f"trial {trial}: in 30 s and {reads} reads, CPU 1's register stayed {seen:#x}:"
                " the member was not writing"
            )
            allowlist.clear(policy.fd)  # revoke
            revoked = tsc_now(policy)
            time.sleep(0.3)
        finally:
            user.kill()
            out, _ = user.communicate()
        stamps = [int(x) for x in out.split()]
        assert stamps, f"trial {trial}: no batch of the member's got through"
        late += [[trial, t - revoked] for t in stamps if t > revoked]
    assert late == []


# --- 5. EFAULT means nothing ran ------------------------------------------------------


def write_ops(base: int, value: int) -> Any:
    ops = ffi.cast("struct msrdrv_op *", base)
    ops[0].op, ops[0].cpu, ops[0].msr, ops[0].value, ops[0].flags = abi.OP_WRITE, 0, PKRS, value, 0
    ops[1].op, ops[1].cpu, ops[1].msr, ops[1].flags = abi.OP_READ, 0, PKRS, 0
    return ops


@pytest.mark.parametrize("case", ["header read-only", "ops read-only", "second op on a read-only page"])
def test_unwritable_memory_is_efault_before_anything_runs(policy: Device, case: str) -> None:
    pages = Pages(3)
    try:
        sz = ffi.sizeof("struct msrdrv_op")
        hdr_addr = pages.page(0)
        ops_addr = pages.page(2) - sz if case.startswith("second") else pages.page(1)
        write_ops(ops_addr, 0x77)
        hdr = ffi.cast("struct msrdrv_batch *", hdr_addr)
        hdr.abi_version, hdr.nops, hdr.ops = abi.ABI_VERSION, 2, ops_addr
        pages.read_only(0 if case.startswith("header") else (1 if case.startswith("ops") else 2))
        before = read_on(policy, PKRS, 0)
        with MsrTrace([PKRS]) as tr:
            assert abi.ioctl(policy.fd, abi.IOC_BATCH, hdr) == -errno.EFAULT
            assert [e for e in tr.events() if e[0] == "write_msr"] == []
        assert read_on(policy, PKRS, 0) == before
    finally:
        pages.close()


@pytest.mark.parametrize("ro", ["header", "ops"])
def test_read_only_batch_in_read_only_memory_is_efault(policy: Device, ro: str) -> None:
    """A batch that only reads skips the proof of writability (reading changes
    nothing) but still fails as a whole when its results cannot be stored."""
    pages = Pages(2)
    try:
        ops = ffi.cast("struct msrdrv_op *", pages.page(1))
        ops[0].op, ops[0].cpu, ops[0].msr = abi.OP_READ, 0, APIC_BASE
        hdr = ffi.cast("struct msrdrv_batch *", pages.page(0))
        hdr.abi_version, hdr.nops, hdr.ops, hdr.ndone = abi.ABI_VERSION, 1, pages.page(1), 77
        pages.read_only(0 if ro == "header" else 1)
        assert abi.ioctl(policy.fd, abi.IOC_BATCH, hdr) == -errno.EFAULT
        if ro == "header":  # the ops were writable: the value may be there, the header is untouched
            assert hdr.ndone == 77
        else:
            assert ops[0].value == 0 and hdr.ndone == 77  # nothing stored anywhere
    finally:
        pages.close()


def test_legacy_cmds_in_read_only_memory_is_efault_before_anything_runs(policy: Device) -> None:
    pages = Pages(1)
    try:
        cmds = ffi.cast("struct msrdrv_legacy_cmd *", pages.page(0))
        cmds[0].op, cmds[0].ecx, cmds[0].value = abi.OP_WRITE, PKRS, 0x66
        cmds[1].op = abi.OP_STOP
        pages.read_only(0)
        os.sched_setaffinity(0, {0})
        with MsrTrace([PKRS]) as tr:
            assert abi.ioctl(policy.fd, abi.IOCTL_MSR_CMDS, cmds) == -errno.EFAULT
            assert [e for e in tr.events() if e[0] == "write_msr"] == []
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        pages.close()


def test_ops_after_stop_must_be_readable_and_are_left_alone(policy: Device) -> None:
    pages = Pages(2)
    try:
        sz = ffi.sizeof("struct msrdrv_op")
        base = pages.page(1) - 2 * sz
        ops = ffi.cast("struct msrdrv_op *", base)
        ops[0].op, ops[0].cpu, ops[0].msr = abi.OP_READ, 0, APIC_BASE
        ops[1].op = abi.OP_STOP
        pages.unmap(1)
        rc, _ = raw_batch(policy.fd, base, 3)  # the third op is not readable
        assert rc == -errno.EFAULT and ops[0].value == 0
        rc, hdr = raw_batch(policy.fd, base, 2)
        assert rc == 0 and hdr.ndone == 2 and ops[0].value == 0xFEE00900
        # readable garbage after a STOP is neither validated nor written back
        base2 = pages.page(0)
        g = ffi.cast("struct msrdrv_op *", base2)
        g[0].op, g[1].op, g[2].op, g[2].err = abi.OP_STOP, 99, 99, 7
        rc, hdr = raw_batch(policy.fd, base2, 3)
        assert rc == 0 and hdr.ndone == 1 and g[2].err == 7
    finally:
        pages.close()


WRITER = """
import os
from msrctl.device.msrdrv import Batch, Device
os.sched_setaffinity(0, {1})
dev = Device()
b = Batch(1024)
for i in range(1024):
    b.write(0x6E1, i, i % 2)
print("go", flush=True)
while True:
    dev.submit(b)
    if b.err(1023):
        print(b.err(1023), flush=True)
        break
"""
ALLOW_WRITES = Path("/sys/module/msrdrv/parameters/allow_writes")


def _realtime(on: bool) -> None:
    """This process on CPU 1 at real-time priority (on), or back as it was."""
    if on:
        os.sched_setaffinity(0, {1})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    else:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def test_allow_writes_n_waits_for_a_running_write_batch(policy: Device) -> None:
    """When writing N to allow_writes returns, a member's long multi-CPU write batch checked
    before it has finished: the kernel traces no wrmsr after that moment.

    The switch is made from the writer's CPU at real-time priority (taken only once the
    writer runs, so it does not inherit it): waking from its sleep, the test takes the CPU
    from the writer's ioctl between two of its rounds, mid-batch."""
    allowlist.load(policy.fd, [Entry(PKRS, 0xFFFF)])
    try:
        for attempt in range(3):
            p = subprocess.Popen([*MEMBER, sys.executable, "-c", WRITER], stdout=subprocess.PIPE, text=True)
            try:
                assert p.stdout is not None and p.stdout.readline() == "go\n"
                with MsrTrace([PKRS]) as tr:
                    _realtime(True)
                    time.sleep(0.2)  # batches back to back now
                    ALLOW_WRITES.write_text("N\n")
                    tr.mark("switched")
                    _realtime(False)
                    assert p.wait(timeout=60) == 0
                    events = tr.events()
                assert int(p.stdout.read()) == errno.EPERM  # the next batch is refused
                i = events.index(("MARK:switched", 0, 0))
                assert any(e[0] == "write_msr" for e in events[:i]), attempt  # it was writing
                assert [e for e in events[i:] if e[0] == "write_msr"] == [], attempt  # and stopped before
            finally:
                _realtime(False)
                p.kill()
                p.wait()
                ALLOW_WRITES.write_text("Y\n")
    finally:
        ALLOW_WRITES.write_text("Y\n")


# --- 6. bounded interrupts-off sections ---------------------------------------------


def test_member_batches_are_smaller(policy: Device) -> None:
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    code = (
        "import errno\nfrom msrctl.device.msrdrv import Batch, Device, DeviceError\n"
        "d = Device(); n = d.info().max_ops; print(n)\n"
        "b = Batch(n + 1)\nfor i in range(n + 1):\n    b.read(0x10, 0)\n"
        "try:\n    d.submit(b)\nexcept DeviceError as e:\n    print(errno.errorcode[e.errno])\n"
        "b.clear()\nfor i in range(n):\n    b.read(0x10, 0)\nprint(d.submit(b))\n"
    )
    out = member_py(code)
    assert out.split() == ["1024", "E2BIG", "0"]
    assert policy.info().max_ops == 4096


def test_snapshot_flag_is_limited_to_one_section(policy: Device) -> None:
    k = policy.info().section_ops
    assert k == 64 and policy.info().features & abi.FEAT_SNAPSHOT
    for per_cpu, cpus, ok in ((k, [1], True), (k + 1, [1], False), (k, [0, 1], True), (k + 1, [0, 1], False)):
        b = Batch(per_cpu * len(cpus), snapshot=True)
        for c in cpus:
            for _ in range(per_cpu):
                b.rdtsc(c)
        if ok:
            assert policy.submit(b) == 0
            for c in cpus:
                vals = [b.value(i) for i in range(len(b)) if b.cpu(i) == c]
                assert vals == sorted(vals) and len(set(vals)) == per_cpu
        else:
            with pytest.raises(Exception) as ei:
                policy.submit(b)
            assert getattr(ei.value, "errno", None) == errno.E2BIG


SPINNER = """
import os, sys
from msrctl.device.msrdrv import Batch, Device
os.sched_setaffinity(0, {1})
d = Device(); b = Batch(1); b.write(0x6e1, 0, 1)
print("ready", flush=True)
i = 0
while True:
    i += 1
    b.set_value(0, i & 0xffffffff)
    d.submit(b)
"""


def test_long_batch_lets_the_target_cpu_run_between_sections(policy: Device) -> None:
    """Another task on CPU 1 keeps writing PKRS there while one batch reads
    it 4,096 times: the value may change between sections, never inside one."""
    k = policy.info().section_ops
    n = 4096
    b = Batch(n)
    for _ in range(n):
        b.read(PKRS, 1)
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER], stdout=subprocess.PIPE, text=True)
    changes: list[int] = []
    try:
        assert spinner.stdout is not None and spinner.stdout.readline().strip() == "ready"
        for _ in range(5):
            policy.submit(b)
            b.check()
            vals = [b.value(i) for i in range(n)]
            changes = [i for i in range(1, n) if vals[i] != vals[i - 1]]
            assert all(i % k == 0 for i in changes), (k, changes[:10])  # only at section starts
            if changes:
                break
    finally:
        spinner.kill()
        spinner.wait()
    assert changes, "the other task never ran between two sections"


# --- 7. the smaller ones ----------------------------------------------------------------


def test_resubmitted_batch_keeps_its_inputs(policy: Device) -> None:
    """The kernel writes back only value and err: a Batch built once runs the same again."""
    allowlist.load(policy.fd, [Entry(APIC_BASE, 0), Entry(PKRS, 0xFF00)])
    code = (
        "import json, os\nfrom msrctl.device.msrdrv import Batch, Device, CPU_SELF\n"
        "d = Device(); b = Batch(2); b.read(0x1b, CPU_SELF); b.write(0x6e1, 0x4200, CPU_SELF, mask=0xffff)\n"
        "out = []\n"
        "for cpu in (0, 1):\n"
        "    os.sched_setaffinity(0, {cpu}); d.submit(b)\n"
        "    o = b._ops\n"
        "    selfs = [o[0].cpu == CPU_SELF, o[1].cpu == CPU_SELF]\n"
        "    out.append([b.self_cpu, hex(b.value(0)), *selfs, hex(o[1].mask), o[1].flags])\n"
        "print(json.dumps(out))\n"
    )
    out = member_py(code)
    assert json.loads(out) == [
        [0, "0xfee00900", True, True, "0xffff", abi.OPF_MASKED],
        [1, "0xfee00800", True, True, "0xffff", abi.OPF_MASKED],  # ran on CPU 1 the second time
    ]


KPROBE = """
set -e
T=/sys/kernel/tracing
echo 'p:msrdrv_cap security_capable cap=%dx:s32 opts=%cx:u32' >> $T/kprobe_events
echo stacktrace > $T/events/kprobes/msrdrv_cap/trigger
echo > $T/trace
echo 1 > $T/tracing_on
echo 1 > $T/events/kprobes/msrdrv_cap/enable
"$@"
echo 0 > $T/events/kprobes/msrdrv_cap/enable
cat $T/trace  # now: removing the probe below empties the buffer
echo '!stacktrace' > $T/events/kprobes/msrdrv_cap/trigger
echo '-:msrdrv_cap' >> $T/kprobe_events
"""


def capability_checks_in_open(trace: str) -> list[tuple[int, int]]:
    """(cap, opts) of each security_capable() call whose stack runs through msrdrv_open."""
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in trace.splitlines():
        if "msrdrv_cap:" in line:
            current = (int(line.split("cap=")[1].split()[0]), int(line.split("opts=")[1].split()[0]))
        elif "msrdrv_open" in line and current is not None:
            found.append(current)
            current = None
    return found


def test_member_open_asks_for_capabilities_without_audit(policy: Device) -> None:
    """capable() at open would log an LSM denial for every member's open."""
    MsrTrace([TSC])  # mounts tracefs
    opener = "import os; os.close(os.open('/dev/msrdrv', os.O_RDWR))"
    r = subprocess.run(
        ["sh", "-c", KPROBE, "kprobe", *MEMBER, sys.executable, "-c", opener], capture_output=True, text=True
    )
    log = Path("/sys/kernel/tracing/error_log").read_text()
    assert r.returncode == 0, r.stderr + log
    trace = r.stdout
    checks = capability_checks_in_open(trace)
    # CAP_SYS_RAWIO (17) and CAP_SYS_ADMIN (21), each with CAP_OPT_NOAUDIT (2)
    assert sorted(cap for cap, _ in checks) == [17, 21], trace[-3000:]
    assert all(opts & 2 for _, opts in checks), checks


def test_rdtsc_refused_to_a_task_that_disabled_the_tsc(policy: Device, cprog: Any) -> None:
    """RDTSC, then reads of APIC_BASE, TSC, MPERF, AMD MPERF, FIXED_CTR2: one batch before and after PR_SET_TSC."""
    r = subprocess.run([str(cprog("notsc"))], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()}
    # before: nothing refused (the VM lacks some counters: EIO, not EPERM)
    assert len(lines["before"]) == 6 and "EPERM" not in lines["before"], r.stdout
    assert lines["before"][:3] == ["OK", "OK", "OK"], r.stdout
    # after: every TSC-rate register refused, the unrelated read still runs
    assert lines["after"] == ["EPERM", "OK", "EPERM", "EPERM", "EPERM", "EPERM"], r.stdout
    assert lines["legacy"] == ["EPERM"]


def test_root_write_logs_msr_and_process(policy: Device) -> None:
    code = (
        "import ctypes\nctypes.CDLL(None).prctl(15, b'msrdrv-wlog', 0, 0, 0)\n"
        "from msrctl.device.msrdrv import Batch, Device\n"
        "d = Device(); b = Batch(1); b.write(0xc0000103, 0x4321, 0); d.submit(b); b.check()\n"
    )
    for _ in range(2):  # the log is rate-limited (5 s window): wait one out once
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        log = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
        if "msrdrv: msrdrv-wlog[" in log:
            break
        time.sleep(5.5)
    line = next(x for x in log.splitlines() if "msrdrv: msrdrv-wlog[" in x)
    assert "writes MSR 0xc0000103 on CPU 0 (1 write in the batch)" in line


def test_msrctl_refuses_a_list_with_a_protected_msr(policy: Device, tmp_path: Path) -> None:
    src = tmp_path / "bad.list"
    src.write_text("0x10 0x0\nIA32_LSTAR 0x0\n")
    r = subprocess.run(
        [sys.executable, "-m", "msrctl", "allowlist", "load", str(src)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 64 and r.stderr.count("\n") == 1, r.stderr
    assert f"{src}:2" in r.stderr and "kernel address" in r.stderr
    assert allowlist.current(policy.fd) == []


def test_member_is_told_what_to_ask_for(policy: Device) -> None:
    r = as_member(sys.executable, "-m", "msrctl", "read", "0x10")
    assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
    assert "msrctl allowlist load --profile telemetry" in r.stderr


FD_SENDER = """
import os, socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
fd = os.open('/dev/msrdrv', os.O_RDWR)
socket.send_fds(s, [b'fd'], [fd])
"""


def test_privilege_is_fixed_at_open_even_for_a_passed_fd(policy: Device) -> None:
    """A member's fd handed to root (SCM_RIGHTS) keeps the member's rights:
    no SET, no protected MSR; root's own privileges do not leak into it."""
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        argv = [*MEMBER, sys.executable, "-c", FD_SENDER, str(theirs.fileno())]
        r = subprocess.run(argv, pass_fds=[theirs.fileno()], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    fd = fds[0]
    try:
        assert set_list(fd, [(TSC, 1, 0)]) == -errno.EPERM  # opened without CAP_SYS_ADMIN
        assert allowlist.current(policy.fd) == []
        ops = ffi.new("struct msrdrv_op[]", 1)
        ops[0].op, ops[0].cpu, ops[0].msr = abi.OP_READ, 0, LSTAR
        rc, _ = raw_batch(fd, ops, 1)
        assert rc == 0 and -ops[0].err == errno.EACCES and ops[0].value == 0
    finally:
        os.close(fd)


# --- 8. the kernel sampler: same policy, at start and on every list change ----------

SAMPLE_AS = """
import errno, json, sys
from msrctl.device.msrdrv import DeviceError
from msrctl.ksampler import Sampler
out = []
for ops, kw in json.loads(sys.argv[1]):
    try:
        s = Sampler(ops, cpus=[0, 1], **kw)
        out.append("OK")
        s.close()
    except DeviceError as e:
        out.append(errno.errorcode[e.errno] if e.errno != errno.EOPNOTSUPP else "EOPNOTSUPP")
print(json.dumps(out))
"""


def sample_as_member(cases: list[tuple[list[Any], dict[str, int]]]) -> list[str]:
    """Start (and stop) a sampler per case as msruser; errno names, 'OK' for a start."""
    return list(json.loads(member_py(SAMPLE_AS, json.dumps(cases))))


def test_member_cannot_sample_what_the_list_does_not_grant(policy: Device) -> None:
    cases: list[tuple[list[Any], dict[str, int]]] = [([TSC], {}), (["rdtsc"], {})]
    with MsrTrace([TSC, APIC_BASE, PKRS, LSTAR]) as tr:
        assert sample_as_member(cases) == ["EACCES", "OK"]  # no list: the TSC itself only
        allowlist.load(policy.fd, [Entry(TSC, 0), Entry(PKRS, 0xFF00, read=False)])
        assert sample_as_member([
            ([TSC, APIC_BASE], {}),  # one op not listed
            ([PKRS], {}),  # listed write-only: never read
            ([LSTAR], {}),  # protected: never listed
            ([TSC, "rdtsc"], {}),
        ]) == ["EACCES", "EACCES", "EACCES", "OK"]  # fmt: skip
        # nothing refused was ever read
        assert [e for e in tr.events() if e[1] != TSC] == []


def test_member_sampler_bounds_are_stricter(policy: Device) -> None:
    allowlist.load(policy.fd, [Entry(TSC, 0)])
    got = sample_as_member([
        ([TSC], {"period_ns": 99_999}),
        ([TSC], {"period_ns": 100_000}),
        ([TSC] * 17, {}),
        ([TSC] * 16, {}),
        ([TSC], {"records": 65536}),  # 2 CPUs x 2.5 MiB > 4 MiB
        ([TSC], {"records": 32768}),
    ])  # fmt: skip
    # Past each bound's edge the request is allowed by that bound; the interrupt budget may
    # still refuse a short period's tick on a slow kernel (EDQUOT: the debug kernel under TCG).
    assert got[::2] == ["ERANGE", "E2BIG", "EFBIG"]
    assert all(g in ("OK", "EDQUOT") for g in got[1::2]) and got[5] == "OK", got
    code = (
        "import errno\nfrom msrctl.device.msrdrv import DeviceError\nfrom msrctl.ksampler import Sampler\n"
        "held = [Sampler([0x10], cpus=[0], period_ns=50_000_000) for _ in range(4)]\n"
        "try:\n    Sampler([0x10], cpus=[0]); print('OK')\n"
        "except DeviceError as e:\n    print(errno.errorcode[e.errno])\n"
    )
    assert member_py(code).split() == ["EBUSY"]


REVOKEE = """
import json, sys
from msrctl.ksampler import Sampler
s = Sampler([0x10, 0x1b], cpus=[0, 1], period_ns=2_000_000, records=8192, watermark=1)
print("started", flush=True)
sys.stdin.readline()
recs = s.read_records(timeout=0)
import time
time.sleep(0.5)
recs += s.read_records(timeout=0)
print(json.dumps({"revoked": s.revoked, "rings": [r.revoked for r in s.status()],
                  "records": [[r.cpu, r.seq, r.type, r.errs, list(r.values)] for r in recs]}))
"""


def test_revoking_a_sampled_msr_stops_its_sampling_when_set_returns(policy: Device) -> None:
    """A member samples TSC and APIC_BASE on both CPUs; root reloads the list
    without APIC_BASE.  Once SET returned, no CPU reads APIC_BASE again (the
    msr tracepoint), each ring carries a REVOKED record naming op 1, and every
    later record has op 1's error bit set and value 0; TSC (op 0) is still
    read (the tracepoint again: QEMU's TCG reads MSR 0x10 as 0, so its value
    proves nothing)."""
    allowlist.load(policy.fd, [Entry(TSC, 0), Entry(APIC_BASE, 0)])
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    member = subprocess.Popen([*MEMBER, sys.executable, "-c", REVOKEE], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert member.stdout is not None and member.stdin is not None
        assert member.stdout.readline().split() == ["started"]
        time.sleep(0.3)
        allowlist.load(policy.fd, [Entry(TSC, 0), Entry(APIC_BASE, 0)])  # the same grants: nothing revoked
        time.sleep(0.1)
        with MsrTrace([APIC_BASE, TSC]) as tr:
            allowlist.load(policy.fd, [Entry(TSC, 0)])
            tr.mark("set returned")
            time.sleep(0.5)
            events = tr.events()
        member.stdin.write("\n")
        member.stdin.flush()
        out, _ = member.communicate(timeout=120)
    finally:
        member.kill()
    mark = events.index(("MARK:set returned", 0, 0))
    assert [e for e in events[mark:] if e[0] == "read_msr" and e[1] == APIC_BASE] == []
    # TSC is still read: 250 periods per CPU in 0.5 s, fewer as the interrupt budget throttles a
    # member's ticks (under TCG each interrupt's entry is charged, and it is slow)
    assert len([e for e in events[mark:] if e[0] == "read_msr" and e[1] == TSC]) >= 2 * 25
    got = json.loads(out)
    assert got["revoked"] == 0b10 and got["rings"] == [0b10, 0b10]
    for cpu in (0, 1):
        recs = [r for r in got["records"] if r[0] == cpu]
        types = [r[2] for r in recs]
        assert types.count(abi.REC_REVOKED) == 1
        i = types.index(abi.REC_REVOKED)
        assert recs[i][3] == 0b10
        before, after = recs[:i], recs[i + 1 :]
        assert before and after, (len(before), len(after))
        apic = 0xFEE00900 if cpu == 0 else 0xFEE00800
        assert [r for r in before if r[3] != 0 or r[4][1] != apic] == []
        assert [r for r in after if r[3] != 0b10 or r[4][1] != 0] == []
        assert [r[1] for r in recs] == list(range(recs[0][1], recs[0][1] + len(recs)))


def test_root_sampler_ignores_the_allowlist(policy: Device) -> None:
    from msrctl.ksampler import Sampler

    with Sampler([APIC_BASE], cpus=[1], period_ns=2_000_000, records=1024, watermark=1) as s:
        allowlist.load(policy.fd, [Entry(TSC, 0)])
        allowlist.clear(policy.fd)
        time.sleep(0.1)
        recs = s.read_records(timeout=5)
        assert s.revoked == 0 and recs and all(r.errs == 0 and r.values == (0xFEE00800,) for r in recs)
