"""The MSRs telemetry reads: numbers, SDM/PPR names, the scope each is read at, counter widths.

Scopes say where one read stands for the rest: "cpu" registers are read on
every logical CPU, "core" ones once per core, "package" ones once per
package.  Sources: Intel SDM vol. 4 (tables 2-2 and the per-family tables),
AMD PPR for family 17h/19h (MSRC001_0064, MSRC001_0299..029B).
"""

from __future__ import annotations

from dataclasses import dataclass

CPU, CORE, PACKAGE = "cpu", "core", "package"


@dataclass(frozen=True)
class Register:
    msr: int
    name: str
    scope: str  # CPU, CORE or PACKAGE
    width: int = 0  # a counter's width in bits; 0 for a status or static register

    def label(self) -> str:
        """'MSR_PKG_ENERGY_STATUS (0x611)', as reasons and docs name it."""
        return f"{self.name} ({self.msr:#x})"


# The TSC is read with the RDTSC op, not as an MSR, so the allowlist need not list it.
TSC = Register(0x10, "IA32_TIME_STAMP_COUNTER", CPU, 64)

MPERF = Register(0xE7, "IA32_MPERF", CPU, 64)
APERF = Register(0xE8, "IA32_APERF", CPU, 64)

# Intel
PLATFORM_INFO = Register(0xCE, "MSR_PLATFORM_INFO", PACKAGE)  # bits 15:8 max non-turbo ratio
FSB_FREQ = Register(0xCD, "MSR_FSB_FREQ", PACKAGE)  # Silvermont: bits 3:0 code the bus clock
THERM_STATUS = Register(0x19C, "IA32_THERM_STATUS", CORE)
TEMPERATURE_TARGET = Register(0x1A2, "MSR_TEMPERATURE_TARGET", PACKAGE)  # bits 23:16 TjMax
PACKAGE_THERM_STATUS = Register(0x1B1, "IA32_PACKAGE_THERM_STATUS", PACKAGE)
CORE_C3 = Register(0x3FC, "MSR_CORE_C3_RESIDENCY", CORE, 64)
CORE_C6 = Register(0x3FD, "MSR_CORE_C6_RESIDENCY", CORE, 64)
CORE_C7 = Register(0x3FE, "MSR_CORE_C7_RESIDENCY", CORE, 64)
PKG_C2 = Register(0x60D, "MSR_PKG_C2_RESIDENCY", PACKAGE, 64)
PKG_C3 = Register(0x3F8, "MSR_PKG_C3_RESIDENCY", PACKAGE, 64)
PKG_C6 = Register(0x3F9, "MSR_PKG_C6_RESIDENCY", PACKAGE, 64)
PKG_C7 = Register(0x3FA, "MSR_PKG_C7_RESIDENCY", PACKAGE, 64)
PKG_C8 = Register(0x630, "MSR_PKG_C8_RESIDENCY", PACKAGE, 64)
PKG_C9 = Register(0x631, "MSR_PKG_C9_RESIDENCY", PACKAGE, 64)
PKG_C10 = Register(0x632, "MSR_PKG_C10_RESIDENCY", PACKAGE, 64)
RAPL_POWER_UNIT = Register(0x606, "MSR_RAPL_POWER_UNIT", PACKAGE)
PKG_ENERGY = Register(0x611, "MSR_PKG_ENERGY_STATUS", PACKAGE, 32)
DRAM_ENERGY = Register(0x619, "MSR_DRAM_ENERGY_STATUS", PACKAGE, 32)
PP0_ENERGY = Register(0x639, "MSR_PP0_ENERGY_STATUS", PACKAGE, 32)
PP1_ENERGY = Register(0x641, "MSR_PP1_ENERGY_STATUS", PACKAGE, 32)
PLATFORM_ENERGY = Register(0x64D, "MSR_PLATFORM_ENERGY_STATUS", PACKAGE, 32)
# 6th-generation Core and later (Haswell/Broadwell kept it at 0x690, not read here).
PERF_LIMIT_REASONS = Register(0x64F, "MSR_CORE_PERF_LIMIT_REASONS", PACKAGE)

# AMD family 17h and later
AMD_PSTATE_DEF0 = Register(0xC0010064, "MSR_AMD_PSTATE_DEF0", PACKAGE)  # P0: the frequency MPERF counts at
AMD_RAPL_POWER_UNIT = Register(0xC0010299, "MSR_AMD_RAPL_POWER_UNIT", PACKAGE)
AMD_CORE_ENERGY = Register(0xC001029A, "MSR_AMD_CORE_ENERGY_STATUS", CORE, 32)
AMD_PKG_ENERGY = Register(0xC001029B, "MSR_AMD_PKG_ENERGY_STATUS", PACKAGE, 32)

ALL = (
    TSC, MPERF, APERF, PLATFORM_INFO, FSB_FREQ, THERM_STATUS, TEMPERATURE_TARGET, PACKAGE_THERM_STATUS,
    CORE_C3, CORE_C6, CORE_C7, PKG_C2, PKG_C3, PKG_C6, PKG_C7, PKG_C8, PKG_C9, PKG_C10,
    RAPL_POWER_UNIT, PKG_ENERGY, DRAM_ENERGY, PP0_ENERGY, PP1_ENERGY, PLATFORM_ENERGY, PERF_LIMIT_REASONS,
    AMD_PSTATE_DEF0, AMD_RAPL_POWER_UNIT, AMD_CORE_ENERGY, AMD_PKG_ENERGY,
)  # fmt: skip
BY_NUMBER = {r.msr: r for r in ALL}

# RAPL energy counters are a side channel (Platypus): the allowlist's "energy" profile grants them.
ENERGY_COUNTERS = frozenset(r.msr for r in ALL if r.width == 32)
