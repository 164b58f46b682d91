"""Run a list of ops through the chosen driver (msrdrv: one ioctl) and explain any failures.

The device module (and so cffi) is imported only when ops are executed.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

from .. import errors
from ..device.ops import Op, Refusals, Result
from ..errors import MsrctlError


def _writes_reason(info: Any) -> str | None:
    if info.lockdown:
        return "lockdown"
    if not info.writes_allowed:
        return "disabled"
    return None


def _allowlist(fd: int) -> tuple[Any, ...] | None:
    from . import allowlist

    try:
        return tuple(allowlist.current(fd))
    except MsrctlError:
        return None


def _stock_writes_reason() -> str | None:
    """Why the kernel's msr driver refused a write with EPERM."""
    from . import system

    if system.lockdown() not in (None, "none"):
        return "lockdown"
    return "msr_off" if system.msr_allow_writes() == "off" else None


def open_device(path: str, write: bool | None = None, backend: str | None = None) -> Any:
    """The chosen backend's device (backend.open_device), or an MsrctlError explaining
    why it did not open and what to do."""
    from ..device import backend as backends
    from ..device.msrdrv import DeviceError  # cffi only here

    chosen = backends.choose(path, backend)
    try:
        return backends.open_device(path, write, backend=chosen)
    except DeviceError as e:
        from . import diagnose

        if chosen == backends.MSR:
            raise diagnose.stock_open_error(e.filename or backends.stock_node(), e.errno) from None
        auto = backends.requested(backend) == backends.AUTO
        raise diagnose.open_error(path, e.errno, diagnose.STOCK_FALLBACK if auto else diagnose.MSRDRV_ONLY) from None


def execute(path: str, ops: Sequence[Op], backend: str | None = None) -> tuple[list[Result], Refusals]:
    """Submit all ops in one batch (one ioctl; one system call per op on the stock msr driver);
    returns results and what explains refused ones.  backend as for backend.open_device."""
    from ..device.msrdrv import Batch, Device, DeviceError  # cffi only here

    with open_device(path, backend=backend) as dev:
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
        errs = {r.err for r in results}
        entries = None
        if isinstance(dev, Device):
            reason = _writes_reason(dev.info()) if errno.EPERM in errs else None
            entries = _allowlist(dev.fd) if errno.EACCES in errs else None
        else:  # the stock msr driver: no INFO ioctl and no allowlist to ask
            reason = _stock_writes_reason() if errno.EPERM in errs else None
    return results, Refusals(reason, entries)


def _batch_error(dev: Any, n: int, err: int, text: str) -> MsrctlError:
    if err == errno.E2BIG:
        info = dev.info()
        if info.rawio:
            why = "max_ops"
            fix = "split the batch, or reload with a higher limit: msrctl unload && msrctl load --max-ops N"
        else:
            why = "max_ops_user, for openers without CAP_SYS_RAWIO"
            fix = "split the batch, or run it as root"
        return MsrctlError(
            f"batch of {n} ops refused", f"msrdrv takes at most {info.max_ops} ops per call ({why})", fix, errors.USAGE
        )
    if err == errno.ENOTTY:
        return MsrctlError(
            "batch refused",
            "msrdrv does not know msrctl's batch ioctl: it is another version (older msrdrv used ioctl magic 0xb7)",
            "install matching versions of msrdrv-dkms and msrctl (see `msrctl status`)",
        )
    if err == errno.EPROTO:
        return MsrctlError(
            "batch refused",
            "msrdrv speaks another ABI version than this msrctl",
            "install matching versions of msrdrv-dkms and msrctl (see `msrctl status`)",
        )
    return MsrctlError("batch refused", text, "see `msrctl status`")


def failure(
    result: Result, name: str | None, refusals: Refusals | None = None, online: list[int] | None = None
) -> MsrctlError:
    """The explained error of one failed op."""
    op = result.op
    why = refusals or Refusals()
    from . import diagnose

    return diagnose.op_error(
        op.kind, op.cpu, op.msr, name, result.err, op.value, online, why.writes, op.mask, why.allowlist
    )
