"""msrctl: manage the msrdrv kernel module and issue batched MSR operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "CPU_SELF",
    "Batch",
    "Device",
    "DeviceError",
    "Info",
    "MsrError",
    "OpError",
    "OpResult",
    "__version__",
    "online_cpus",
]

from ._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads them lazily
    from .device import CPU_SELF, Batch, Device, DeviceError, Info, MsrError, OpError, OpResult, online_cpus


def __getattr__(name: str) -> Any:
    # Lazy so that `import msrctl` (and the CLI's start-up) does not load cffi.
    if name in __all__ and name != "__version__":
        from . import device

        return getattr(device, name)
    raise AttributeError(name)
