"""Physical units of register values: pure arithmetic from the Intel SDM and AMD PPR.

No I/O and no register table: functions of raw numbers only, so that `decode`,
`power` and the telemetry code share one implementation and tests can check each
against the manuals' own examples.
"""

from __future__ import annotations

from dataclasses import dataclass

BUS_MHZ = 100.0  # Intel bus clock since Sandy Bridge (133.33 MHz on Nehalem)


@dataclass(frozen=True)
class RaplUnits:
    """What one unit of a RAPL field is worth (MSR_RAPL_POWER_UNIT / AMD RAPL_PWR_UNIT)."""

    watts: float
    joules: float
    seconds: float


def energy_status_unit(value: int) -> int:
    """ESU, bits 12:8 of a RAPL_POWER_UNIT value: energy counts are 1/2^ESU J (or what the model table says)."""
    return (value >> 8) & 0x1F


def rapl_units(value: int, default_time_unit: int | None = None) -> RaplUnits:
    """Units from a RAPL_POWER_UNIT value: 1/2^PU W (bits 3:0), 1/2^ESU J (12:8), 1/2^TU s (19:16).

    default_time_unit replaces a TU of 0 (turbostat assumes 10, 976.6 us, on Intel, where 0
    would mean 1 s).  Models whose energy unit differs (Silvermont) are the model table's."""
    tu = (value >> 16) & 0xF
    if tu == 0 and default_time_unit is not None:
        tu = default_time_unit
    return RaplUnits(
        watts=1.0 / (1 << (value & 0xF)),
        joules=1.0 / (1 << energy_status_unit(value)),
        seconds=1.0 / (1 << tu),
    )


def rapl_time_window(y: int, z: int, time_unit: float) -> float:
    """Seconds of a RAPL time window: 2^Y * (1 + Z/4) * time unit."""
    return float(1 << y) * (1.0 + z / 4.0) * time_unit


def rapl_window(raw: int, time_unit: float) -> float:
    """Seconds of a 7-bit RAPL window field: Y is bits 4:0, Z bits 6:5."""
    return rapl_time_window(raw & 0x1F, (raw >> 5) & 0x3, time_unit)


@dataclass(frozen=True)
class Limit:
    """One RAPL power limit."""

    watts: float
    seconds: float | None  # None: the processor chooses the window (PSys PL2)
    enabled: bool
    clamp: bool  # may go below the requested P-state to hold the limit


@dataclass(frozen=True)
class PowerLimits:
    pl1: Limit
    pl2: Limit | None  # None for the one-limit layout (DRAM, PP0, PP1)
    locked: bool


def _limit(word: int, units: RaplUnits, window: bool = True) -> Limit:
    return Limit(
        watts=(word & 0x7FFF) * units.watts,
        seconds=rapl_window((word >> 17) & 0x7F, units.seconds) if window else None,
        enabled=bool(word >> 15 & 1),
        clamp=bool(word >> 16 & 1),
    )


def power_limit(value: int, units: RaplUnits, two_limits: bool = True, pl2_window: bool = True) -> PowerLimits:
    """PL1/PL2 of MSR_PKG_POWER_LIMIT (or PLATFORM_POWER_LIMIT, pl2_window=False):
    PL1 in bits 31:0, PL2 in 63:32, lock bit 63.  two_limits=False reads the one-limit
    layout of DRAM/PP0/PP1_POWER_LIMIT, lock bit 31."""
    if not two_limits:
        return PowerLimits(_limit(value & 0xFFFFFFFF, units), None, bool(value >> 31 & 1))
    pl2 = _limit(value >> 32 & 0xFFFFFFFF, units, pl2_window)
    return PowerLimits(_limit(value & 0xFFFFFFFF, units), pl2, bool(value >> 63 & 1))


def temperature(tjmax: int, readout: int) -> int:
    """Degrees C from a digital readout, which counts degrees below TjMax."""
    return tjmax - readout


def ratio_mhz(ratio: int, bus_mhz: float = BUS_MHZ) -> float:
    """MHz of a frequency ratio (multiplier of the bus clock)."""
    return ratio * bus_mhz


def turbo_ratio_limits(value: int, first_cores: int = 1, bus_mhz: float = BUS_MHZ) -> dict[int, float]:
    """MSR_TURBO_RATIO_LIMIT as {active cores: MHz}, one byte per core count from
    first_cores (9 for TURBO_RATIO_LIMIT1); zero bytes (no such core count) left out."""
    out: dict[int, float] = {}
    for i in range(8):
        ratio = value >> (8 * i) & 0xFF
        if ratio:
            out[first_cores + i] = ratio_mhz(ratio, bus_mhz)
    return out


def amd_pstate_mhz(fid: int, dfs_id: int, family: int = 0x17) -> float | None:
    """Core frequency of an AMD P-state definition: 200 * CpuFid / CpuDfsId MHz on
    families 17h/19h (DfsId 8 is /1, so CpuFid counts 25 MHz); family 1Ah and later
    drop the divisor: CpuFid (bits 11:0) * 5 MHz.  None when the divisor is 0 (off)."""
    if family >= 0x1A:
        return fid * 5.0
    if dfs_id == 0:
        return None
    return 200.0 * fid / dfs_id


def amd_pstate_amps(idd_value: int, idd_div: int) -> float | None:
    """Expected maximum current of an AMD P-state: IddValue / 10^IddDiv A (IddDiv 3 is reserved)."""
    if idd_div > 2:
        return None
    return idd_value / 10**idd_div


def hwp_activity_window_us(raw: int) -> int | None:
    """HWP activity window in microseconds: mantissa (bits 6:0) * 10^exponent (bits 9:7);
    None for 0, which lets the hardware choose."""
    if raw == 0:
        return None
    return (raw & 0x7F) * 10 ** ((raw >> 7) & 0x7)


def tsc_seconds(count: int, tsc_hz: float) -> float:
    """Seconds a TSC-rate counter (C-state residency) has counted."""
    return count / tsc_hz
