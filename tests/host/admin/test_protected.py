"""msrctl/admin/protected.py is the kernel's msrdrv_protected[] table, range for range, word for word."""

from __future__ import annotations

import re
from pathlib import Path

from msrctl.admin import protected

ROOT = Path(__file__).resolve().parents[3]
ROW = re.compile(r"^\s*\{\s*(0x[0-9a-fA-F]+),\s*(0x[0-9a-fA-F]+)\s*\},\s*/\*\s*(.*?)\s*\*/\s*$")


def kernel_table(name: str = "msrdrv_protected") -> list[tuple[int, int, str]]:
    source = (ROOT / "dkms" / "msrdrv_policy.c").read_text()
    body = re.search(name + r"\[\]\s*=\s*\{\n(.*?)\n\};", source, re.S)
    assert body, f"{name}[] not found in dkms/msrdrv_policy.c"
    rows = []
    for line in body.group(1).splitlines():
        m = ROW.match(line)
        assert m, f"unexpected line in msrdrv_protected[]: {line!r}"
        rows.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    return rows


def test_the_table_is_the_kernels() -> None:
    rows = kernel_table()
    assert len(rows) > 20
    assert [(r.first, r.last, r.description) for r in protected.RANGES] == rows


def test_ranges_are_sorted_and_disjoint() -> None:
    """The kernel's linear search stops at the first range above the MSR: it needs this order."""
    for r in protected.RANGES:
        assert r.first <= r.last
        assert r.why in (protected.KERNEL, protected.BRANCHES, protected.SAMPLES, protected.PHYSICAL, protected.GUEST)
    for a, b in zip(protected.RANGES, protected.RANGES[1:]):
        assert a.last < b.first, (a, b)


def test_lookup_at_the_edges() -> None:
    for r in protected.RANGES:
        assert protected.is_protected(r.first) == r.description
        assert protected.is_protected(r.last) == r.description
        assert protected.is_protected(r.first - 1) in (None, *(x.description for x in protected.RANGES))
    for msr in (0x1, 0x10, 0x1B, 0xE7, 0x38F, 0x401, 0x403, 0x606, 0x611, 0xC0000080, 0xC0000103, 0xFFFFFFFF):
        assert protected.is_protected(msr) is None, hex(msr)
    assert protected.is_protected(0xC0000082) == "STAR, LSTAR, CSTAR"
    assert protected.explain(0xC0000082, "IA32_LSTAR") == (
        "MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR)"
    )
    assert protected.explain(0x10) is None


def doc_row(r: protected.Range) -> str:
    span = f"`{r.first:#x}`" if r.first == r.last else f"`{r.first:#x}`\u2013`{r.last:#x}`"  # an en dash, as in prose
    return f"| {span} | {r.description} | {r.why} |"


def control_doc_row(r: protected.ControlRange) -> str:
    span = f"`{r.first:#x}`" if r.first == r.last else f"`{r.first:#x}`\u2013`{r.last:#x}`"
    return f"| {span} | {r.description} | {r.kind} | {r.effect} | {r.source} |"


def test_the_policy_page_lists_every_range() -> None:
    """docs/access-policy.md's two tables are these (regenerate their rows with doc_row and control_doc_row)."""
    page = (ROOT / "docs" / "access-policy.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `0x")]
    assert rows == [*(doc_row(r) for r in protected.RANGES), *(control_doc_row(r) for r in protected.CONTROL)]


def test_the_kernel_control_table_is_the_kernels() -> None:
    rows = kernel_table("msrdrv_kernel_control")
    assert len(rows) > 80
    assert [(r.first, r.last, r.description) for r in protected.CONTROL] == rows
    for a, b in zip(protected.CONTROL, protected.CONTROL[1:]):
        assert a.first <= a.last < b.first, (a, b)
    assert all(r.kind in protected.KINDS and r.effect and r.source for r in protected.CONTROL)


def test_kernel_control_lookup_at_the_edges() -> None:
    for r in protected.CONTROL:
        for msr in (r.first, r.last):
            assert protected.control_range(msr) == r
            assert protected.explain_write(msr) is not None
    # the examples, each by number
    for msr in (0x10, 0x1B, 0x3A, 0x3B, 0x48, 0x79, 0x1D9, 0x277, 0x2FF, 0x6E0, 0x800, 0x830, 0x8FF, 0xDA0):
        assert protected.control_range(msr), hex(msr)
    for msr in (0xC0000080, 0xC0000084, 0xC0000103, 0xC0010010, 0xC0010015, 0xC0010114, 0x400, 0x47F):
        assert protected.control_range(msr), hex(msr)
    # what members are given lists for stays writable: prefetchers, HWP, EPB, RAPL limits, counters
    for msr in (0x1A4, 0x774, 0x1B0, 0x610, 0x199, 0x620, 0xC1, 0x186, 0x38F, 0xC0010200, 0xC00102B3):
        assert protected.control_range(msr) is None, hex(msr)
    assert protected.explain_write(0xC0000084, "IA32_FMASK") == (
        "MSR 0xc0000084 (IA32_FMASK) sets how the kernel enters system calls (SYSCALL_MASK (FMASK))"
    )


def test_mca_address_registers_by_their_stride() -> None:
    """Each bank's ADDR (and AMD's DEADDR) is protected; the bank's CTL, STATUS and MISC are not."""
    for bank in range(32):
        base = 0x400 + 4 * bank
        assert protected.protected_range(base + 2).description == f"IA32_MC{bank}_ADDR"  # type: ignore[union-attr]
        assert [protected.protected_range(base + k) for k in (0, 1, 3)] == [None, None, None]
    for bank in range(64):
        base = 0xC0002000 + 0x10 * bank
        assert protected.protected_range(base + 2) and protected.protected_range(base + 9)
        assert not any(protected.protected_range(base + k) for k in (0, 1, 3, 4, 5, 6, 7, 8, 0xA, 0xF))
    assert protected.protected_range(0x480) is None and protected.protected_range(0xC0002400) is None
