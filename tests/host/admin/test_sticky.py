"""The masked-write warning for registers with hardware-set, write-0-to-clear bits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from msrctl.admin import sticky
from msrctl.admin.allowlist import Entry

REPO = Path(__file__).resolve().parents[3]
ONES = (1 << 64) - 1


def test_the_page_lists_exactly_the_data_file() -> None:
    page = (REPO / "docs" / "access-policy.md").read_text()
    rows = re.findall(r"^  \| `(0x[0-9a-f]+)` \| (\w+) \| `(0x[0-9a-f]+)` \|", page, re.M)
    data = json.loads((REPO / "msrctl" / "data" / "sticky_bits.json").read_text())["registers"]
    assert rows == [(r["msr"], r["name"], r["bits"]) for r in data]


def test_log_bits_are_the_sdm_odd_bits() -> None:
    """Worked out from the SDM's layout, not the data file: the core register's log bits are
    bits 1, 3, ..., 15; the package's 1, 3, ..., 11 and 26 (HFI)."""
    regs = sticky.registers()
    assert regs[0x19C].bits == sum(1 << b for b in range(1, 16, 2))
    assert regs[0x1B1].bits == sum(1 << b for b in range(1, 12, 2)) | 1 << 26
    assert regs[0x64F].bits == sum(1 << b for b in range(16, 32))


@pytest.mark.parametrize(
    ("msr", "mask", "stale"),
    [
        (0x19C, 0x2, 0xAAA8),  # only the thermal log: the other seven put back
        (0x19C, 0x50, 0xAAAA),  # threshold status bits (read-only anyway): every log bit
        (0x1B1, 0xAAA, 0x4000000),  # all but the HFI bit
        (0x777, 0x1, 0x4),
        (0x64F, 0xFFFF, 0xFFFF0000),
    ],
)
def test_a_mask_leaving_out_sticky_bits_is_named(msr: int, mask: int, stale: int) -> None:
    warning = sticky.hazard(Entry(msr, mask))
    assert warning is not None and f"MSR {msr:#x} " in warning and f"bits {stale:#x} " in warning


@pytest.mark.parametrize(
    "entry",
    [
        Entry(0x19C, 0),  # no write
        Entry(0x19C, ONES),  # a plain write: nothing read back
        Entry(0x19C, 0xAAAA),  # every log bit granted
        Entry(0x19C, 0xAAAB),
        Entry(0x1B1, 0x4000AAA),
        Entry(0x186, 0xFFCDFFFF),  # not such a register
    ],
)
def test_no_warning_when_nothing_sticky_is_put_back(entry: Entry) -> None:
    assert sticky.hazard(entry) is None
