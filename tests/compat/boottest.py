#!/usr/bin/env python3
"""tests/suite.py with the module build step skipped: boottest.sh has built
dkms/msrdrv.ko already, in the kernel's own release chroot (its kbuild tools
need that release's glibc and compiler).  Run from the tree copy that
boottest.sh prepares, with the same arguments as tests/suite.py.
COMPAT_BOOT_TIMEOUT (seconds, default 3600) bounds the guest."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import suite


def prebuilt(kernel: str, kdir: Path | None = None, gcov: bool = False) -> None:
    """suite.build_module's signature (kdir and gcov apply to a debug kernel, not here)."""
    ko = suite.REPO / "dkms" / "msrdrv.ko"
    if not ko.exists():
        sys.exit(f"boottest.py: {ko} missing; run tests/compat/boottest.sh")
    print(f"boottest.py: using {ko} built in the chroot for {kernel}")


suite.build_module = prebuilt
# The guest's time limit (vm.py's default is 1800 s): a loaded 2-core machine
# running other guests at the same time can need more.
suite.vm.boot = functools.partial(suite.vm.boot, timeout=int(os.environ.get("COMPAT_BOOT_TIMEOUT", "3600")))

if __name__ == "__main__":
    sys.exit(suite.main())
