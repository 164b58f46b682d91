"""Choose and open the driver that runs msrctl's batches: msrdrv, or the kernel's msr driver as a fallback.

    from msrctl.device.backend import open_device
    with open_device() as dev:          # msrdrv if /dev/msrdrv exists, else /dev/cpu/N/msr
        dev.submit(batch)

"auto" takes msrdrv when its node exists or a device path other than the
default was given, else the stock msr driver when /dev/cpu/N/msr exists (the
first online CPU's), else msrdrv again, whose open error explains what to
load.  "msrdrv" and "msr" force one.  Paths are under system.sysroot(), so
tests can point them at a fake tree.  Only the stdlib loads at import: the
CLI imports this at start-up.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import DEFAULT_DEVICE

if TYPE_CHECKING:
    from .msrdrv import Batch, OpResult

AUTO = "auto"
MSRDRV = "msrdrv"
MSR = "msr"
BACKENDS = (AUTO, MSRDRV, MSR)

# The CLI's --backend (MSRCTL_BACKEND): what open_device(backend=None) and ops.execute use.
preferred = AUTO


class MsrDevice(Protocol):
    """What Device and StockDevice share: the interface batch code may rely on."""

    backend: str
    writable: bool

    def submit(self, batch: Batch) -> int: ...

    def read(self, msr: int, cpus: list[int]) -> list[OpResult]: ...

    def info(self) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


def requested(backend: str | None = None) -> str:
    """The backend asked for: backend, or the process's preferred one when None."""
    want = preferred if backend is None else backend
    if want not in BACKENDS:
        raise ValueError(f"unknown backend {want!r}: choose one of {', '.join(BACKENDS)}")
    return want


def stock_dir() -> str:
    """Where the kernel's msr driver puts its per-CPU nodes (N/msr)."""
    from .cpus import sysroot

    return str(sysroot() / "dev/cpu")


def stock_cpu() -> int:
    """The CPU whose node says whether the msr driver is there: the first online one."""
    from .cpus import online_cpus

    return online_cpus()[0]


def stock_node(cpu: int | None = None) -> str:
    """The msr driver's node for cpu (default: the first online CPU)."""
    return f"{stock_dir()}/{stock_cpu() if cpu is None else cpu}/msr"


def is_default_device(path: str) -> bool:
    """path is msrdrv's usual node (under the sysroot too), not one the user chose."""
    from .cpus import sysroot

    return path in (DEFAULT_DEVICE, str(sysroot() / "dev/msrdrv"))


def choose(path: str = DEFAULT_DEVICE, backend: str | None = None) -> str:
    """MSRDRV or MSR: the driver open_device(path, backend=backend) would use."""
    want = requested(backend)
    if want != AUTO:
        return want
    if os.path.exists(path) or not is_default_device(path):
        return MSRDRV
    return MSR if os.path.exists(stock_node()) else MSRDRV


def caveat(where: str | None = None) -> str:
    """What using the stock driver means, and what to do about it (stderr and `msrctl status`)."""
    where = where or f"{stock_dir()}/N/msr"
    return (
        f"using the kernel's msr driver ({where}), not msrdrv: one system call per op, so a CPU's ops are "
        "not atomic (a masked write is a read then a write), and no allowlist (root only); "
        "for msrdrv: sudo msrctl load"
    )


_warned: list[bool] = []  # the caveat goes to stderr once per process


def warn_once() -> None:
    """Print the stock driver's caveat on stderr, the first time only."""
    if not _warned:
        _warned.append(True)
        sys.stderr.write(f"msrctl: warning: {caveat()}\n")


def open_device(
    path: str = DEFAULT_DEVICE, write: bool | None = None, backend: str | None = None, quiet: bool = False
) -> MsrDevice:
    """Open the chosen driver: a Device (msrdrv at path) or a StockDevice (/dev/cpu/N/msr).

    backend is "auto", "msrdrv" or "msr" (None: the process's preferred one, "auto"
    unless the CLI was told otherwise); write as for Device.  Opening the stock
    driver prints its caveat on stderr once per process unless quiet.  Raises
    DeviceError as Device() does; for the stock driver its filename is the node."""
    if choose(path, backend) == MSRDRV:
        from .msrdrv import Device

        return Device(path, write)
    from .stockmsr import StockDevice

    dev = StockDevice(stock_dir(), write, stock_cpu())
    if not quiet:
        warn_once()
    return dev
