"""What telemetry can report: every metric (column name, unit, scope), the registers and
static values each needs per vendor, and the CPU flags a register needs.

Which of these this machine has is probe.py's question; this module is data.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import msrs
from .msrs import CORE, CPU, PACKAGE, Register


@dataclass(frozen=True)
class Metric:
    name: str  # the CSV column and JSON key; the suffix is the unit
    scope: str  # CPU, CORE or PACKAGE
    unit: str  # "MHz", "%", "C", "J", "W", or "" for a list of flag names
    digits: int  # decimals printed (flags: 0)
    help: str


def _pair(prefix: str, what: str) -> tuple[Metric, Metric]:
    return (
        Metric(f"{prefix}_energy_j", PACKAGE if prefix != "core" else CORE, "J", 6, f"{what} energy in the interval"),
        Metric(f"{prefix}_power_w", PACKAGE if prefix != "core" else CORE, "W", 3, f"{what} average power"),
    )


METRICS: tuple[Metric, ...] = (
    Metric("mhz_effective", CPU, "MHz", 1, "average frequency over the interval, idle counting as 0"),
    Metric("mhz_busy", CPU, "MHz", 1, "average frequency while busy (C0)"),
    Metric("busy_pct", CPU, "%", 2, "share of the interval in C0"),
    Metric("core_temp_c", CORE, "C", 0, "core temperature"),
    Metric("core_c3_pct", CORE, "%", 2, "core C3 residency"),
    Metric("core_c6_pct", CORE, "%", 2, "core C6 residency"),
    Metric("core_c7_pct", CORE, "%", 2, "core C7 residency"),
    *_pair("core", "core"),
    Metric("core_throttle", CORE, "", 0, "why the core is throttled now (thermal status bits)"),
    Metric("core_throttle_log", CORE, "", 0, "what throttled the core since the log was cleared"),
    Metric("pkg_temp_c", PACKAGE, "C", 0, "package temperature"),
    *(Metric(f"pkg_c{n}_pct", PACKAGE, "%", 2, f"package C{n} residency") for n in (2, 3, 6, 7, 8, 9, 10)),
    *_pair("pkg", "package"),
    *_pair("pp0", "all cores of the package (RAPL PP0)"),
    *_pair("pp1", "uncore or graphics (RAPL PP1)"),
    *_pair("dram", "DRAM"),
    *_pair("psys", "platform (RAPL PSYS)"),
    Metric("pkg_throttle", PACKAGE, "", 0, "why the package is throttled now"),
    Metric("pkg_throttle_log", PACKAGE, "", 0, "what throttled the package since the log was cleared"),
    Metric("limit_reasons", PACKAGE, "", 0, "why core frequency is below the request now"),
    Metric("limit_log", PACKAGE, "", 0, "why it was below the request since the log was cleared"),
)
BY_NAME = {m.name: m for m in METRICS}

# Static values a metric needs besides its sampled registers (probe.py finds them).
BASE = "base_mhz"  # the frequency MPERF counts at
TJMAX = "tjmax"  # per package
RAPL_UNIT = "rapl_unit"  # per package and energy counter


@dataclass(frozen=True)
class Source:
    """How one vendor gives a metric: the registers read each sample, the statics it needs."""

    registers: tuple[Register, ...]
    statics: tuple[str, ...] = ()
    sensor: str = ""  # a hwmon driver that gives the value instead of a register (hwmon.py)


def _energy(counter: Register) -> tuple[Source, Source]:
    src = Source((counter,), (RAPL_UNIT,))
    return src, src


_NO_CORE_TEMP_AMD = "AMD CPUs have no per-core temperature sensor (k10temp's per-package value is pkg_temp_c)"
_NO_CSTATE_AMD = "AMD CPUs have no C-state residency MSRs"
_NO_THERM_AMD = "AMD CPUs have no thermal status MSR (IA32_THERM_STATUS is Intel's)"
_NO_RAPL_DOMAIN_AMD = "AMD RAPL has only core and package energy counters"
_NO_LIMITS_AMD = "AMD CPUs have no limit-reasons MSR"
_NO_CORE_ENERGY_INTEL = "Intel RAPL has no per-core energy counter (PP0 is all cores of a package: pp0_energy_j)"

_FREQ = {
    "mhz_effective": Source((msrs.APERF,)),
    "mhz_busy": Source((msrs.APERF, msrs.MPERF), (BASE,)),
    "busy_pct": Source((msrs.MPERF,)),
}

INTEL: dict[str, Source | str] = {
    **_FREQ,
    "core_temp_c": Source((msrs.THERM_STATUS,), (TJMAX,)),
    "core_c3_pct": Source((msrs.CORE_C3,)),
    "core_c6_pct": Source((msrs.CORE_C6,)),
    "core_c7_pct": Source((msrs.CORE_C7,)),
    "core_energy_j": _NO_CORE_ENERGY_INTEL,
    "core_power_w": _NO_CORE_ENERGY_INTEL,
    "core_throttle": Source((msrs.THERM_STATUS,)),
    "core_throttle_log": Source((msrs.THERM_STATUS,)),
    "pkg_temp_c": Source((msrs.PACKAGE_THERM_STATUS,), (TJMAX,)),
    "pkg_c2_pct": Source((msrs.PKG_C2,)),
    "pkg_c3_pct": Source((msrs.PKG_C3,)),
    "pkg_c6_pct": Source((msrs.PKG_C6,)),
    "pkg_c7_pct": Source((msrs.PKG_C7,)),
    "pkg_c8_pct": Source((msrs.PKG_C8,)),
    "pkg_c9_pct": Source((msrs.PKG_C9,)),
    "pkg_c10_pct": Source((msrs.PKG_C10,)),
    **dict(zip(("pkg_energy_j", "pkg_power_w"), _energy(msrs.PKG_ENERGY))),
    **dict(zip(("pp0_energy_j", "pp0_power_w"), _energy(msrs.PP0_ENERGY))),
    **dict(zip(("pp1_energy_j", "pp1_power_w"), _energy(msrs.PP1_ENERGY))),
    **dict(zip(("dram_energy_j", "dram_power_w"), _energy(msrs.DRAM_ENERGY))),
    **dict(zip(("psys_energy_j", "psys_power_w"), _energy(msrs.PLATFORM_ENERGY))),
    "pkg_throttle": Source((msrs.PACKAGE_THERM_STATUS,)),
    "pkg_throttle_log": Source((msrs.PACKAGE_THERM_STATUS,)),
    "limit_reasons": Source((msrs.PERF_LIMIT_REASONS,)),
    "limit_log": Source((msrs.PERF_LIMIT_REASONS,)),
}

AMD: dict[str, Source | str] = {
    **_FREQ,
    "core_temp_c": _NO_CORE_TEMP_AMD,
    "core_c3_pct": _NO_CSTATE_AMD,
    "core_c6_pct": _NO_CSTATE_AMD,
    "core_c7_pct": _NO_CSTATE_AMD,
    **dict(zip(("core_energy_j", "core_power_w"), _energy(msrs.AMD_CORE_ENERGY))),
    "core_throttle": _NO_THERM_AMD,
    "core_throttle_log": _NO_THERM_AMD,
    "pkg_temp_c": Source((), sensor="k10temp"),  # no MSR has it: the kernel's driver reads the SMN
    **{f"pkg_c{n}_pct": _NO_CSTATE_AMD for n in (2, 3, 6, 7, 8, 9, 10)},
    **dict(zip(("pkg_energy_j", "pkg_power_w"), _energy(msrs.AMD_PKG_ENERGY))),
    **{f"{d}_{u}": _NO_RAPL_DOMAIN_AMD for d in ("pp0", "pp1", "dram", "psys") for u in ("energy_j", "power_w")},
    "pkg_throttle": _NO_THERM_AMD,
    "pkg_throttle_log": _NO_THERM_AMD,
    "limit_reasons": _NO_LIMITS_AMD,
    "limit_log": _NO_LIMITS_AMD,
}


def sources(vendor: str, vendor_id: str) -> dict[str, Source | str]:
    """Each metric's source on this vendor, or why it has none."""
    if vendor == "intel":
        return INTEL
    if vendor == "amd":
        return AMD
    why = f"not an Intel or AMD CPU (vendor '{vendor_id or 'unknown'}')"
    return {m.name: why for m in METRICS}


# Static registers read once, at probe time, on every package's first CPU.
STATIC_INTEL = (msrs.PLATFORM_INFO, msrs.TEMPERATURE_TARGET, msrs.RAPL_POWER_UNIT)
STATIC_AMD = (msrs.AMD_PSTATE_DEF0, msrs.AMD_RAPL_POWER_UNIT)

# The /proc/cpuinfo flag (and what it stands for) without which a register is not read.
FLAGS: dict[int, tuple[str, str]] = {
    msrs.MPERF.msr: ("aperfmperf", "APERF/MPERF"),
    msrs.APERF.msr: ("aperfmperf", "APERF/MPERF"),
    msrs.THERM_STATUS.msr: ("dts", "a digital thermal sensor"),
    msrs.TEMPERATURE_TARGET.msr: ("dts", "a digital thermal sensor"),
    msrs.PACKAGE_THERM_STATUS.msr: ("pts", "a package thermal sensor"),
    msrs.AMD_PSTATE_DEF0.msr: ("hw_pstate", "P-state MSRs"),
    msrs.AMD_RAPL_POWER_UNIT.msr: ("rapl", "RAPL"),
    msrs.AMD_CORE_ENERGY.msr: ("rapl", "RAPL"),
    msrs.AMD_PKG_ENERGY.msr: ("rapl", "RAPL"),
}

# Registers a real CPU may hold at 0 (a C-state never entered, no limit active):
# a 0 is believed on bare metal, and only there (hypervisors read unknown MSRs as 0).
ZERO_PLAUSIBLE = frozenset(
    r.msr
    for r in (
        msrs.CORE_C3, msrs.CORE_C6, msrs.CORE_C7, msrs.PKG_C2, msrs.PKG_C3, msrs.PKG_C6, msrs.PKG_C7,
        msrs.PKG_C8, msrs.PKG_C9, msrs.PKG_C10, msrs.PERF_LIMIT_REASONS,
        msrs.FSB_FREQ,  # code 0: an 83.3 MHz bus clock
    )
)  # fmt: skip
