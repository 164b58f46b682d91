"""Ops as the command line and batch files give them, and their results: plain data, no
device (admin/execute.py runs them), so that parsing a batch loads no cffi.

NamedTuples rather than frozen dataclasses: every command that runs ops creates these
classes at start-up, and a frozen dataclass costs about 0.4 ms to create where a
NamedTuple costs 0.07 (Debian 12's Python 3.11).
"""

from __future__ import annotations

from typing import Any, NamedTuple

KINDS = ("read", "write", "rdtsc", "nop", "stop")
MASK_ALL = (1 << 64) - 1  # a write mask of every bit: as msrdrv, a plain write


class Op(NamedTuple):
    kind: str
    cpu: int = 0
    msr: int = 0
    value: int = 0
    mask: int | None = None
    where: str = ""  # where a batch file gave it ("ops.txt:3"); "" on the command line


class Result(NamedTuple):
    op: Op
    value: int
    err: int  # 0 or a positive errno
    ran: bool  # False for ops after a STOP

    @property
    def ok(self) -> bool:
        return self.ran and not self.err


class Refusals(NamedTuple):
    """What the device said about refused ops, to explain them: why writes got EPERM, and the
    allowlist in force when an op got EACCES (None: not asked, or not readable)."""

    writes: str | None = None
    allowlist: tuple[Any, ...] | None = None
