"""Ops as the command line and batch files give them, and their results: plain data, no
device (admin/execute.py runs them), so that parsing a batch loads no cffi."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("read", "write", "rdtsc", "nop", "stop")


@dataclass(frozen=True)
class Op:
    kind: str
    cpu: int = 0
    msr: int = 0
    value: int = 0
    mask: int | None = None
    where: str = ""  # where a batch file gave it ("ops.txt:3"); "" on the command line


@dataclass(frozen=True)
class Result:
    op: Op
    value: int
    err: int  # 0 or a positive errno
    ran: bool  # False for ops after a STOP

    @property
    def ok(self) -> bool:
        return self.ran and not self.err


@dataclass(frozen=True)
class Refusals:
    """What the device said about refused ops, to explain them: why writes got EPERM, and the
    allowlist in force when an op got EACCES (None: not asked, or not readable)."""

    writes: str | None = None
    allowlist: tuple[Any, ...] | None = None
