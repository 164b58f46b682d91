"""msrctl/admin/protected.py is the kernel's msrdrv_protected[] table, range for range, word for word."""

from __future__ import annotations

import re
from pathlib import Path

from msrctl.admin import protected

ROOT = Path(__file__).resolve().parents[3]
ROW = re.compile(r"^\s*\{\s*(0x[0-9a-fA-F]+),\s*(0x[0-9a-fA-F]+)\s*\},\s*/\*\s*(.*?)\s*\*/\s*$")


def kernel_table() -> list[tuple[int, int, str]]:
    source = (ROOT / "dkms" / "msrdrv_policy.c").read_text()
    body = re.search(r"msrdrv_protected\[\]\s*=\s*\{\n(.*?)\n\};", source, re.S)
    assert body, "msrdrv_protected[] not found in dkms/msrdrv_policy.c"
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
    for msr in (0x0, 0x10, 0x1B, 0xE7, 0x38F, 0x606, 0x611, 0xC0000080, 0xC0000103, 0xFFFFFFFF):
        assert protected.is_protected(msr) is None, hex(msr)
    assert protected.is_protected(0xC0000082) == "STAR, LSTAR, CSTAR"
    assert protected.explain(0xC0000082, "IA32_LSTAR") == (
        "MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR)"
    )
    assert protected.explain(0x10) is None


def doc_row(r: protected.Range) -> str:
    span = f"`{r.first:#x}`" if r.first == r.last else f"`{r.first:#x}`\u2013`{r.last:#x}`"  # an en dash, as in prose
    return f"| {span} | {r.description} | {r.why} |"


def test_the_policy_page_lists_every_range() -> None:
    """docs/access-policy.md's table is this one (regenerate its rows with doc_row)."""
    page = (ROOT / "docs" / "access-policy.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `0x")]
    assert rows == [doc_row(r) for r in protected.RANGES]
