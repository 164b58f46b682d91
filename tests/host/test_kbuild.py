"""dkms/Kbuild's header probe: with no asm/msr.h to read, grep must not be
asked at all (it would read make's stdin and hang the build)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DKMS = Path(__file__).resolve().parents[2] / "dkms"


def ccflags(srctree: Path) -> str:
    """Evaluate Kbuild's ccflags-y as kbuild would, with stdin a pipe that never ends."""
    rd, wr = os.pipe()  # the write end stays open: a grep on stdin would block
    try:
        probe = subprocess.Popen(
            ["make", "-s", "-f", str(DKMS / "Kbuild"), f"srctree={srctree}", f"src={DKMS}",
             "--eval", "show: ; @echo $(ccflags-y)", "show"],
            stdin=rd, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            out, _ = probe.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            probe.kill()
            raise AssertionError("Kbuild blocked reading stdin with no msr.h present") from None
    finally:
        os.close(rd)
        os.close(wr)
    return out


def test_no_msr_h_does_not_read_stdin(tmp_path: Path) -> None:
    out = ccflags(tmp_path)
    assert "MSRDRV_HAVE_RDMSRQ" not in out and "MSRDRV_VERSION" in out


def test_rdmsrq_detected_from_the_header(tmp_path: Path) -> None:
    hdr = tmp_path / "arch/x86/include/asm/msr.h"
    hdr.parent.mkdir(parents=True)
    hdr.write_text("static inline int rdmsrq_safe(unsigned int msr, unsigned long long *p);\n")
    assert "-DMSRDRV_HAVE_RDMSRQ" in ccflags(tmp_path)
    hdr.write_text("#define rdmsrl_safe(msr, p) 0\n")
    assert "MSRDRV_HAVE_RDMSRQ" not in ccflags(tmp_path)
