"""What decoding needs from other registers and from the CPU model: RAPL units, TjMax,
the TSC frequency, turbo buckets' core counts, whether the TCC offset is programmable;
the model's energy units, bus clock, C-state limit names and P-state layout.

A field's meaning may depend on another register (a power limit is counted in the
units of MSR_RAPL_POWER_UNIT, a temperature in degrees below TjMax) or on the model
(DRAM energy units, what MSR_TURBO_RATIO_LIMIT1 holds).  This module says which
register supplies each item and turns its raw value into a Context; a value that
cannot be right (0 where 0 is impossible) becomes a reason instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..registers import table as registers
from ..registers.models import ENERGY_DOMAINS, Model
from . import units
from .units import RaplUnits

# The context item each field kind needs (kinds absent here need none; "ratio"
# uses the bus clock, which always has a value).
NEEDS: dict[str, str] = {
    "power": "rapl",
    "energy": "rapl",
    "rapl_time": "rapl",
    "rapl_window": "rapl",
    "rapl_max_window": "rapl",
    "below_tjmax": "tjmax",
    "tsc_count": "tsc",
    "turbo_ratio": "trl_counts",
    "tcc_offset": "tcc_prog",
}
# Which register holds an item, by the vendor of the register being decoded.
SOURCES: dict[tuple[str, str], int] = {
    ("rapl", "intel"): 0x606,  # MSR_RAPL_POWER_UNIT
    ("rapl", "amd"): 0xC0010299,  # MSR_AMD_RAPL_POWER_UNIT
    ("tjmax", "intel"): 0x1A2,  # MSR_TEMPERATURE_TARGET
    ("tsc", "intel"): 0xCE,  # MSR_PLATFORM_INFO: the TSC runs at the base ratio
    ("trl_counts", "intel"): 0x1AE,  # MSR_TURBO_RATIO_LIMIT1: each bucket's active cores, where the model says so
    ("tcc_prog", "intel"): 0xCE,  # MSR_PLATFORM_INFO bit 30: the TCC offset is programmable
}
WHAT = {
    "rapl": "RAPL units",
    "tjmax": "TjMax",
    "tsc": "the TSC frequency",
    "trl_counts": "the turbo buckets' active-core counts",
    "tcc_prog": "whether the TCC offset is in force",
}


@dataclass(frozen=True)
class Context:
    """Values from other registers that some fields need; missing says why one is absent."""

    rapl: RaplUnits | None = None
    tjmax: int | None = None  # degrees C
    tsc_hz: float | None = None
    bus_mhz: float = units.BUS_MHZ
    amd_family: int | None = None  # CPU family, for the P-state layout (None: 17h/19h)
    missing: dict[str, str] = field(default_factory=dict)
    model: Model | None = None  # the CPU whose value this is (its quirks); None: not known
    model_assumed: bool = False  # model is this machine's, taken for a value given without --model
    rapl_raw: int | None = None  # MSR_RAPL_POWER_UNIT's value (energy units per domain use its ESU)
    trl_counts: int | None = None  # MSR_TURBO_RATIO_LIMIT1 on models where it holds core counts
    tcc_prog: bool | None = None  # MSR_PLATFORM_INFO bit 30

    def has(self, key: str) -> bool:
        return getattr(self, _ATTR[key]) is not None

    def energy_unit(self, msr: int) -> float | None:
        """Joules per count of energy status register msr: the model's fixed unit for its
        domain where it has one, else the unit register's (None without RAPL units)."""
        if self.rapl is None:
            return None
        domain = ENERGY_DOMAINS.get(msr)
        if self.model is not None and domain is not None and self.rapl_raw is not None:
            return self.model.rapl_energy_unit(domain, units.energy_status_unit(self.rapl_raw))
        return self.rapl.joules

    def with_item(self, key: str, value: Any) -> Context:
        return replace(self, **{_ATTR[key]: value})

    def without(self, key: str, why: str) -> Context:
        return replace(self, missing={**self.missing, key: why})


_ATTR = {"rapl": "rapl", "tjmax": "tjmax", "tsc": "tsc_hz", "trl_counts": "trl_counts", "tcc_prog": "tcc_prog"}


def for_model(model: Model, bus_mhz: float | None = None, assumed: bool = False) -> Context:
    """An empty Context for a value of model's CPU: its bus clock (unless one is given) and P-state layout."""
    bus = bus_mhz if bus_mhz is not None else model.bclk_mhz if isinstance(model.bclk_mhz, float) else units.BUS_MHZ
    family = model.family if model.vendor == "amd" else None
    return Context(bus_mhz=bus, amd_family=family, model=model, model_assumed=assumed)


def needs(reg: registers.Register, model: Model | None = None) -> list[str]:
    """The context items some field of reg needs, in a fixed order; with a model, only those
    that mean something on it (turbo core counts where MSR_TURBO_RATIO_LIMIT1 holds them,
    the TCC offset's switch where the model has an offset)."""
    kinds = {f.kind for f in reg.fields}
    keys = [key for key in WHAT if any(NEEDS.get(k) == key for k in kinds)]
    if model is None or model.turbo != "core_counts" or reg.msr == 0x1AE:
        keys = [k for k in keys if k != "trl_counts"]
    if model is None or not model.tcc_offset_bits:
        keys = [k for k in keys if k != "tcc_prog"]
    return keys


def source(key: str, vendor: str) -> int | None:
    """The MSR that holds item key for a register of this vendor (None: none known)."""
    return SOURCES.get((key, "intel" if vendor == "both" else vendor))


def item(key: str, raw: int, bus_mhz: float = units.BUS_MHZ, model: Model | None = None) -> Any:
    """Item key from its register's raw value; None when the value cannot be right
    (0, as read from a register this machine does not implement)."""
    if key == "rapl":
        if not raw:
            return None
        if model is None:
            return units.rapl_units(raw)
        found = units.rapl_units(raw, 10 if model.vendor == "intel" else None)
        return replace(found, joules=model.rapl_energy_unit("pkg", units.energy_status_unit(raw)))  # Silvermont: uJ
    if key == "tjmax":
        return (raw >> 16) & 0xFF or None
    if key == "trl_counts":
        return raw or None
    if key == "tcc_prog":
        return bool(raw >> 30 & 1) if raw else None
    ratio = (raw >> 8) & 0xFF  # tsc: MSR_PLATFORM_INFO's maximum non-turbo ratio
    return units.ratio_mhz(ratio, bus_mhz) * 1e6 if ratio else None


def from_register(ctx: Context, key: str, msr: int, raw: int) -> Context:
    """ctx with item key taken from register msr's raw value, or the reason it cannot be."""
    value = item(key, raw, ctx.bus_mhz, ctx.model)
    if value is None:
        reg = registers.by_number(msr)
        name = reg.name if reg else f"MSR {msr:#x}"
        why = f"{name} reads 0: not implemented here?" if raw == 0 else f"{name} gives {WHAT[key]} as 0"
        return ctx.without(key, why)
    out = ctx.with_item(key, value)
    return replace(out, rapl_raw=raw) if key == "rapl" else out
