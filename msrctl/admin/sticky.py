"""Registers whose masked writes can lose a hardware event (data/sticky_bits.json).

msrdrv turns a member's write through a mask into a read-modify-write: bits
outside the mask are written back as they were read.  In these registers the
hardware sets log bits that software clears by writing 0, so a bit set
between the read and the write is cleared before anyone saw it.  msrdrv
cannot avoid that (the MSR has no atomic update); msrctl warns when a list
grants such a write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..device.ops import MASK_ALL
from .allowlist import Entry

DATA = Path(__file__).parent.parent / "data" / "sticky_bits.json"


@dataclass(frozen=True)
class Sticky:
    msr: int
    name: str
    bits: int  # set by hardware, cleared by writing 0
    what: str
    source: str


@cache
def registers() -> dict[int, Sticky]:
    rows = json.loads(DATA.read_text())["registers"]
    return {
        int(r["msr"], 16): Sticky(int(r["msr"], 16), r["name"], int(r["bits"], 16), r["what"], r["source"])
        for r in rows
    }


def hazard(entry: Entry) -> str | None:
    """The warning for an entry whose masked write can clear a sticky bit it does not grant, or None.

    A mask of all ones is a plain write (nothing is read back), and a mask of 0 grants no write."""
    reg = registers().get(entry.msr)
    if reg is None or entry.write_mask in (0, MASK_ALL):
        return None
    stale = reg.bits & ~entry.write_mask
    if not stale:
        return None
    return (
        f"MSR {reg.msr:#x} ({reg.name}) write mask {entry.write_mask:#x}: each write puts back bits {stale:#x} "
        f"({reg.what}) as they were read; one the hardware sets in between is cleared unseen. "
        "Include them in the mask (the writer then says which to clear) or grant no write"
    )


def hazards(entries: list[Entry]) -> list[str]:
    return [w for w in map(hazard, entries) if w]
