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
    "StockDevice",
    "__version__",
    "online_cpus",
    "open_device",
]

from ._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads them lazily
    from .device.backend import open_device
    from .device.cpus import online_cpus
    from .device.msrdrv import CPU_SELF, Batch, Device, DeviceError, Info, MsrError, OpError, OpResult
    from .device.stockmsr import StockDevice

# The module each name lives in, when not msrctl.device.msrdrv.
_HOME = {"StockDevice": "device.stockmsr", "open_device": "device.backend", "online_cpus": "device.cpus"}


def __getattr__(name: str) -> Any:
    # Lazy so that `import msrctl` (and the CLI's start-up) does not load cffi.
    if name in __all__ and name != "__version__":
        import importlib

        return getattr(importlib.import_module(f".{_HOME.get(name, 'device.msrdrv')}", __name__), name)
    raise AttributeError(name)
