"""What decoding needs from other registers: RAPL units, TjMax, the TSC frequency.

A field's meaning may depend on another register (a power limit is counted in the
units of MSR_RAPL_POWER_UNIT, a temperature in degrees below TjMax).  This module
says which register supplies each such item and turns its raw value into a Context;
a value that cannot be right (0 where 0 is impossible) becomes a reason instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..registers import table as registers
from . import units
from .units import RaplUnits

# The context item each field kind needs (kinds absent here need none; "ratio"
# uses the bus clock, which always has a value).
NEEDS: dict[str, str] = {
    "power": "rapl",
    "energy": "rapl",
    "rapl_time": "rapl",
    "rapl_window": "rapl",
    "below_tjmax": "tjmax",
    "tsc_count": "tsc",
}
# Which register holds an item, by the vendor of the register being decoded.
SOURCES: dict[tuple[str, str], int] = {
    ("rapl", "intel"): 0x606,  # MSR_RAPL_POWER_UNIT
    ("rapl", "amd"): 0xC0010299,  # MSR_AMD_RAPL_POWER_UNIT
    ("tjmax", "intel"): 0x1A2,  # MSR_TEMPERATURE_TARGET
    ("tsc", "intel"): 0xCE,  # MSR_PLATFORM_INFO: the TSC runs at the base ratio
}
WHAT = {"rapl": "RAPL units", "tjmax": "TjMax", "tsc": "the TSC frequency"}


@dataclass(frozen=True)
class Context:
    """Values from other registers that some fields need; missing says why one is absent."""

    rapl: RaplUnits | None = None
    tjmax: int | None = None  # degrees C
    tsc_hz: float | None = None
    bus_mhz: float = units.BUS_MHZ
    amd_family: int | None = None  # CPU family, for the P-state layout (None: 17h/19h)
    missing: dict[str, str] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return {"rapl": self.rapl, "tjmax": self.tjmax, "tsc": self.tsc_hz}[key] is not None

    def with_item(self, key: str, value: Any) -> Context:
        return replace(self, **{_ATTR[key]: value})

    def without(self, key: str, why: str) -> Context:
        return replace(self, missing={**self.missing, key: why})


_ATTR = {"rapl": "rapl", "tjmax": "tjmax", "tsc": "tsc_hz"}


def needs(reg: registers.Register) -> list[str]:
    """The context items some field of reg needs, in a fixed order."""
    kinds = {f.kind for f in reg.fields}
    return [key for key in WHAT if any(NEEDS.get(k) == key for k in kinds)]


def source(key: str, vendor: str) -> int | None:
    """The MSR that holds item key for a register of this vendor (None: none known)."""
    return SOURCES.get((key, "intel" if vendor == "both" else vendor))


def item(key: str, raw: int, bus_mhz: float = units.BUS_MHZ) -> Any:
    """Item key from its register's raw value; None when the value cannot be right
    (0, as read from a register this machine does not implement)."""
    if key == "rapl":
        return units.rapl_units(raw) if raw else None
    if key == "tjmax":
        return (raw >> 16) & 0xFF or None
    ratio = (raw >> 8) & 0xFF  # tsc: MSR_PLATFORM_INFO's maximum non-turbo ratio
    return units.ratio_mhz(ratio, bus_mhz) * 1e6 if ratio else None


def from_register(ctx: Context, key: str, msr: int, raw: int) -> Context:
    """ctx with item key taken from register msr's raw value, or the reason it cannot be."""
    value = item(key, raw, ctx.bus_mhz)
    if value is None:
        reg = registers.by_number(msr)
        name = reg.name if reg else f"MSR {msr:#x}"
        why = f"{name} reads 0: not implemented here?" if raw == 0 else f"{name} gives {WHAT[key]} as 0"
        return ctx.without(key, why)
    return ctx.with_item(key, value)
