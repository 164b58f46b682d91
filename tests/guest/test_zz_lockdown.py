"""Kernel lockdown refuses every MSR write.  Lockdown cannot be lifted once
set, so this file runs last (the name sorts last) in the guest's one boot."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

from conftest import Batch, Device, batch_as

from msrctl.admin import allowlist
from msrctl.admin.allowlist import Entry

LOCKDOWN = Path("/sys/kernel/security/lockdown")
PKRS = 0x6E1  # stored by QEMU, steers nothing here (no CR4.PKS): a list may grant its writes


def test_lockdown_refuses_writes_reads_still_work(dev: Device) -> None:
    if not LOCKDOWN.exists():
        subprocess.run(["mount", "-t", "securityfs", "securityfs", "/sys/kernel/security"], check=True)
    assert "[none]" in LOCKDOWN.read_text()
    assert not dev.info().lockdown and dev.info().writes_allowed
    allowlist.load(dev.fd, [Entry(PKRS, 0xFF00)])
    LOCKDOWN.write_text("integrity")
    assert "[integrity]" in LOCKDOWN.read_text()

    info = dev.info()
    assert info.lockdown and not info.writes_allowed
    b = Batch(3)
    b.read(PKRS, 0)
    b.write(PKRS, 0x4242, 0)
    b.read(0x1B, 0)
    assert dev.submit(b) == 1
    assert [b.err(i) for i in range(3)] == [0, errno.EPERM, 0]
    assert b.value(2) == 0xFEE00900
    # an allowlisted write by a group member is refused too
    out = batch_as("msruser", [("write", PKRS, 0x4200, 0), ("read", PKRS, 0, 0)])
    assert out["errs"] == ["EPERM", "OK"] and out["values"][1] == b.value(0)
