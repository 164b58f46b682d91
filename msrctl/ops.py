"""Run a list of ops through /dev/msrdrv in one ioctl and explain any failures.

The device module (and so cffi) is imported only when ops are executed.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import diagnose, errors
from .errors import MsrctlError

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


def _writes_reason(info: Any) -> str | None:
    if info is None:
        return None
    if not info.rawio:
        return "rawio"
    if info.lockdown:
        return "lockdown"
    if not info.writes_allowed:
        return "disabled"
    return None


def execute(path: str, ops: Sequence[Op]) -> tuple[list[Result], str | None]:
    """Submit all ops in one batch; returns results and, if a write was refused, why."""
    from .device import Batch, Device, DeviceError  # cffi only here

    try:
        dev = Device(path)
    except DeviceError as e:
        raise diagnose.open_error(path, e.errno) from None
    with dev:
        batch = Batch(max(1, len(ops)))
        for op in ops:
            if op.kind == "read":
                batch.read(op.msr, op.cpu)
            elif op.kind == "write":
                batch.write(op.msr, op.value, op.cpu, op.mask)
            elif op.kind == "rdtsc":
                batch.rdtsc(op.cpu)
            elif op.kind == "nop":
                batch.nop(op.cpu)
            else:
                batch.stop()
        try:
            dev.submit(batch)
        except DeviceError as e:
            raise _batch_error(dev, len(ops), e.errno, str(e)) from None
        done = batch.done
        results = [Result(op, batch.value(i), batch.err(i) if i < done else 0, i < done) for i, op in enumerate(ops)]
        reason = None
        if any(r.err == errno.EPERM for r in results):
            reason = _writes_reason(dev.info())
    return results, reason


def _batch_error(dev: Any, n: int, err: int, text: str) -> MsrctlError:
    if err == errno.E2BIG:
        limit = dev.info().max_ops
        return MsrctlError(
            f"batch of {n} ops refused",
            f"msrdrv takes at most {limit} ops per call (max_ops)",
            "split the batch, or reload with a higher limit: msrctl unload && msrctl load --max-ops N",
            errors.USAGE,
        )
    if err == errno.EPROTO:
        return MsrctlError(
            "batch refused",
            "msrdrv speaks another ABI version than this msrctl",
            "install matching versions of msrdrv-dkms and msrctl (see `msrctl status`)",
        )
    return MsrctlError("batch refused", text, "see `msrctl status`")


def failure(result: Result, name: str | None, reason: str | None, online: list[int] | None = None) -> MsrctlError:
    """The explained error of one failed op."""
    op = result.op
    return diagnose.op_error(op.kind, op.cpu, op.msr, name, result.err, op.value, online, reason)
