"""Access policy: CAP_SYS_RAWIO, the allowlist, and the permission matrix."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Batch, Device, abi, as_member, batch_as, ffi, read_on, results_dir

from msrctl.admin import allowlist
from msrctl.admin.allowlist import Entry

APIC_BASE = 0x1B
TSC = 0x10
PKRS = 0x6E1  # stored by QEMU, steers nothing here (no CR4.PKS): a list may grant its writes
LSTAR = 0xC0000082
LIST = [Entry(TSC, 0), Entry(PKRS, 0xFF00, read=False)]  # TSC read-only; PKRS write-only bits


@pytest.fixture
def clean_policy(dev: Device) -> Iterator[Device]:
    """No allowlist, PKRS as found -- before and after."""
    saved = read_on(dev, PKRS)
    allowlist.clear(dev.fd)
    yield dev
    allowlist.clear(dev.fd)
    b = Batch(1)
    b.write(PKRS, saved, 0)
    dev.submit(b)
    b.check()


def set_list(fd: int, rows: list[tuple[int, int, int]], nentries: int | None = None, **hdr_fields: int) -> int:
    """SET with raw (msr, flags, write_mask) rows; returns 0 or -errno."""
    arr: Any = ffi.new("struct msrdrv_allow_entry[]", max(1, len(rows)))
    for i, (msr, flags, mask) in enumerate(rows):
        arr[i].msr, arr[i].flags, arr[i].write_mask = msr, flags, mask
    hdr: Any = ffi.new("struct msrdrv_allowlist *")
    hdr.abi_version = hdr_fields.get("abi_version", abi.ABI_VERSION)
    hdr.nentries = len(rows) if nentries is None else nentries
    hdr.entries = hdr_fields.get("entries", abi.address(arr))
    return abi.ioctl(fd, abi.IOC_SET_ALLOWLIST, hdr)


# --- loading and reading back the list --------------------------------------


def test_load_show_clear_round_trip(clean_policy: Device) -> None:
    dev = clean_policy
    assert allowlist.current(dev.fd) == [] and dev.info().allowlist_entries == 0
    allowlist.load(dev.fd, list(reversed(LIST)))  # the library sorts
    assert allowlist.current(dev.fd) == LIST
    assert dev.info().allowlist_entries == 2
    assert dev.info().features & abi.FEAT_ALLOWLIST
    allowlist.clear(dev.fd)
    assert allowlist.current(dev.fd) == [] and dev.info().allowlist_entries == 0


def test_get_with_little_room_reports_the_total(clean_policy: Device) -> None:
    dev = clean_policy
    allowlist.load(dev.fd, [Entry(m, 0) for m in range(0x100, 0x110)])
    arr: Any = ffi.new("struct msrdrv_allow_entry[]", 4)
    hdr: Any = ffi.new("struct msrdrv_allowlist *")
    hdr.abi_version, hdr.nentries, hdr.entries = abi.ABI_VERSION, 3, abi.address(arr)
    assert abi.ioctl(dev.fd, abi.IOC_GET_ALLOWLIST, hdr) == 0
    assert hdr.nentries == 16
    assert [arr[i].msr for i in range(4)] == [0x100, 0x101, 0x102, 0]  # only room for 3 was used


@pytest.mark.parametrize(
    ("entries", "kwargs", "want"),
    [
        ([(0x20, 1, 0), (0x10, 1, 0)], {}, errno.EINVAL),  # not sorted
        ([(0x10, 1, 0), (0x10, 1, 0)], {}, errno.EINVAL),  # duplicate
        ([(0x10, 0x80, 0)], {}, errno.EINVAL),  # unknown flag
        ([(0x10, 1, 0)], {"nentries": 4097}, errno.E2BIG),
        ([(0x10, 1, 0)], {"entries": 0x10}, errno.EFAULT),
        ([(0x10, 1, 0)], {"abi_version": 9}, errno.EPROTO),
    ],
)
def test_malformed_lists_rejected_and_old_list_kept(
    clean_policy: Device, entries: list[tuple[int, int, int]], kwargs: dict[str, int], want: int
) -> None:
    dev = clean_policy
    allowlist.load(dev.fd, LIST)
    assert set_list(dev.fd, entries, **kwargs) == -want
    assert allowlist.current(dev.fd) == LIST  # a rejected load changes nothing


def test_loading_needs_cap_sys_admin(clean_policy: Device) -> None:
    code = (
        "import errno; from msrctl.device.msrdrv import Device; from msrctl.admin import allowlist\n"
        "from msrctl.errors import MsrctlError\n"
        "d = Device()\n"
        "try:\n    allowlist.clear(d.fd)\nexcept MsrctlError as e:\n    print(e.code, e.message)\n"
        "print(len(allowlist.current(d.fd)))\n"
    )
    allowlist.load(clean_policy.fd, LIST)
    r = as_member(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["3 loading the allowlist: it needs CAP_SYS_ADMIN; run it as root (sudo)", "2"]
    assert allowlist.current(clean_policy.fd) == LIST


# --- the permission matrix ----------------------------------------------------

# (list state, user, op, msr) -> expected err; writes use value 0xABCD.
# "list" is LIST: TSC readable, PKRS writable in 0xff00 but not readable.
MATRIX: list[tuple[str, str, str, int, str]] = [
    ("none", "root", "read", APIC_BASE, "OK"),
    ("none", "root", "write", PKRS, "OK"),
    ("none", "msruser", "read", APIC_BASE, "EACCES"),
    ("none", "msruser", "read", TSC, "EACCES"),
    ("none", "msruser", "write", PKRS, "EACCES"),
    ("none", "otheruser", "read", APIC_BASE, "open EACCES"),
    ("none", "otheruser", "write", PKRS, "open EACCES"),
    ("list", "root", "read", APIC_BASE, "OK"),
    ("list", "root", "write", PKRS, "OK"),
    ("list", "root", "read", LSTAR, "OK"),
    ("list", "msruser", "read", TSC, "OK"),
    ("list", "msruser", "read", APIC_BASE, "EACCES"),
    ("list", "msruser", "read", PKRS, "EACCES"),
    ("list", "msruser", "read", LSTAR, "EACCES"),
    ("list", "msruser", "write", PKRS, "OK"),
    ("list", "msruser", "write", TSC, "EACCES"),
    ("list", "msruser", "write", APIC_BASE, "EACCES"),
    ("list", "otheruser", "read", TSC, "open EACCES"),
    ("list", "otheruser", "write", PKRS, "open EACCES"),
]


def test_permission_matrix(clean_policy: Device) -> None:
    dev = clean_policy
    rows = []
    for state, user, op, msr, want in MATRIX:
        allowlist.clear(dev.fd)
        if state == "list":
            allowlist.load(dev.fd, LIST)
        before = read_on(dev, PKRS)
        out = batch_as(user, [(op, msr, 0xABCD, 0)])
        got = f"open {out['open']}" if "open" in out else out["errs"][0]
        after = read_on(dev, PKRS)
        rows.append(f"{state:7} {user:10} {op:5} {msr:#012x}  {got}")
        assert got == want, rows[-1]
        if got == "EACCES" and op == "read":
            assert out["values"][0] == 0  # nothing came back
        if op == "write" and msr == PKRS:
            if got != "OK":
                assert after == before  # refused means untouched
            elif user == "root":
                assert after == 0xABCD
            else:  # the entry's mask 0xff00: other bits keep their value
                assert after == (before & ~0xFF00) | 0xAB00
                assert out["values"][0] == 0xABCD  # no READ in the entry: the register does not come back
    (results_dir() / "permission-matrix.txt").write_text(
        "list    user       op    msr           result\n" + "\n".join(rows) + "\n"
    )


def test_group_member_masked_write_respects_both_masks(clean_policy: Device) -> None:
    dev = clean_policy
    b = Batch(1)
    b.write(PKRS, 0x1111, 0)
    dev.submit(b)
    allowlist.load(dev.fd, [Entry(TSC, 0), Entry(PKRS, 0xFF00)])  # readable: the result comes back
    code = (
        "from msrctl.device.msrdrv import Batch, Device\n"
        "d = Device(); b = Batch(1); b.write(0x6e1, 0x2222, 0, mask=0x0f0f); d.submit(b)\n"
        "print(b.err(0), hex(b.value(0)))\n"
    )
    r = as_member(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    # the op's own mask (0x0f0f) and the entry's (0xff00) meet in 0x0f00
    assert r.stdout.split() == ["0", "0x1211"]
    assert read_on(dev, PKRS) == 0x1211


FLIPS = 10  # list changes a member's batches must see in the swap test


def test_list_swaps_are_atomic_for_a_batch(clean_policy: Device) -> None:
    """A batch sees the old list or the new one, never a mix."""
    dev = clean_policy
    list_a = [Entry(0xE7, 0), Entry(TSC, 0)]
    list_b = [Entry(0xE8, 0), Entry(TSC, 0)]
    allowlist.load(dev.fd, list_a)
    # The member loops until its batches have seen the list change under them FLIPS times
    # (or 120 s pass): a fixed count of batches once finished inside one scheduler slice of
    # a loaded TCG guest, and on a slow CI host 1500 batches spanned only 9 swaps.
    code = (
        "import collections, json, sys, time\n"
        "from msrctl.device.msrdrv import Batch, Device\n"
        "d = Device(); b = Batch(2); b.read(0xe7, 0); b.read(0xe8, 0)\n"
        "seen = collections.Counter(); flips = n = 0; last = None; end = time.monotonic() + 120\n"
        "print('ready', flush=True)\n"
        f"while (n < 1500 or flips < {FLIPS} or min(seen.values()) < 20) and time.monotonic() < end:\n"
        "    d.submit(b); k = (b.err(0), b.err(1)); seen[k] += 1; n += 1\n"
        "    flips += last is not None and k != last; last = k\n"
        "print(json.dumps({'flips': flips, 'seen': [[k[0], k[1], n] for k, n in seen.items()]}))\n"
    )
    user = as_member(sys.executable, "-c", code, wait=False)
    assert user.stdout is not None
    assert user.stdout.readline().strip() == "ready"
    swaps = 0
    while user.poll() is None:
        allowlist.load(dev.fd, list_b if swaps % 2 == 0 else list_a)
        swaps += 1
    out = json.loads(user.stdout.read() or "{}")
    seen = {(a, b): n for a, b, n in out.get("seen", [])}
    assert set(seen) <= {(0, errno.EACCES), (errno.EACCES, 0)}, seen
    # the test's power: batches ran on both sides of many swaps
    assert out["flips"] >= FLIPS and len(seen) == 2, (swaps, out)
