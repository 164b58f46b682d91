"""vm.dmesg_problems: the normal patterns, and the debug kernel's (make test-debug)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vm

# Report lines in the forms the 6.1 sanitizers and lock checkers print them.
DEBUG_REPORTS = [
    "[  12.3] BUG: KASAN: slab-out-of-bounds in msrdrv_ioctl_batch+0x1a/0x2b [msrdrv]",
    "[  12.3] UBSAN: shift-out-of-bounds in /work/dkms/msrdrv_main.c:120:9",
    "[  12.3] BUG: KFENCE: use-after-free read in msrdrv_release+0x10/0x20 [msrdrv]",
    "[  12.3] WARNING: possible circular locking dependency detected",
    "[  12.3] WARNING: suspicious RCU usage",
    "[  12.3] BUG: sleeping function called from invalid context at mm/slab.h:742",
    "[  12.3] ODEBUG: free active (active state 0) object type: timer_list hint: f+0x0/0x10",
    "[  12.3] WARNING: inconsistent lock state",
]
QUIET = [
    "[   0.0] kasan: KernelAddressSanitizer initialized",
    "[   0.0] kfence: initialized - using 2097152 bytes for 255 objects",
    "[   0.0] rcu: 	RCU lockdep checking is enabled.",
    "[  86.1] msrdrv: module verification failed: signature and/or required key missing - tainting kernel",
]


def test_debug_patterns_flag_every_report_and_not_the_boot_notices(tmp_path: Path) -> None:
    log = tmp_path / "dmesg.txt"
    log.write_text("\n".join(QUIET + DEBUG_REPORTS) + "\n")
    assert vm.dmesg_problems(log, vm.DMESG_DEBUG_BAD) == DEBUG_REPORTS


def test_normal_patterns_unchanged(tmp_path: Path) -> None:
    log = tmp_path / "dmesg.txt"
    log.write_text("\n".join([*QUIET, "[ 1.0] UBSAN: shift-out-of-bounds in x.c:1:1", "[ 2.0] BUG: KASAN: x"]) + "\n")
    assert vm.dmesg_problems(log) == ["[ 2.0] BUG: KASAN: x"]
