"""Pure functions from raw MSR values to physical units: counter wrap, joules,
watts, MHz, busy and residency percentages, degrees C, throttle and limit flags.

No I/O: `derive` feeds them raw snapshots; `top`, `record`, the exporter and the
kernel sampler's records all share them.  Formulas from the Intel SDM vol. 3B
(ch. 15, power and thermal management) and vol. 4, and the AMD PPR for
family 17h/19h.
"""

from __future__ import annotations


def counter_delta(prev: int, cur: int, bits: int) -> int:
    """cur - prev for a counter of `bits` bits that wrapped at most once in between."""
    mask = (1 << bits) - 1
    return ((cur & mask) - (prev & mask)) & mask


def energy_joules(prev: int, cur: int, unit_j: float) -> float:
    """Joules between two readings of a 32-bit RAPL energy counter (bits 31:0), wrap handled.

    The counter wraps after 2^32 units: 2^18 J with Intel's usual 2^-14 J units
    (about 260 s at 1 kW), 2^16 J with AMD's 2^-16 J (65 s at 1 kW); readings
    one sample interval apart are well within that."""
    return counter_delta(prev, cur, 32) * unit_j


def watts(joules: float, dt_s: float) -> float | None:
    """Average power over an interval; None for an empty interval."""
    return joules / dt_s if dt_s > 0 else None


def busy_pct(d_mperf: int, d_tsc: int) -> float | None:
    """Share of the interval the CPU was in C0: MPERF counts in C0 only, at the TSC rate
    where that is the base frequency."""
    return 100.0 * d_mperf / d_tsc if d_tsc > 0 else None


def busy_pct_at_base(d_mperf: int, base_mhz: float, dt_s: float) -> float | None:
    """Share of the interval in C0 on parts whose TSC runs at its own rate (2712 MHz against a
    2700 MHz base): MPERF counts at the base frequency, so C0 time is MPERF / base.  turbostat
    divides MPERF by the TSC count times base/TSC-rate, the same with the TSC rate measured."""
    return 100.0 * d_mperf / (base_mhz * 1e6 * dt_s) if base_mhz > 0 and dt_s > 0 else None


def busy_mhz(d_aperf: int, d_mperf: int, base_mhz: float) -> float | None:
    """Average frequency while busy: APERF counts actual cycles, MPERF base-frequency
    cycles, both only in C0.  None if the CPU was never busy in the interval."""
    return base_mhz * d_aperf / d_mperf if d_mperf > 0 else None


def effective_mhz(d_aperf: int, dt_s: float) -> float | None:
    """Average frequency over the whole interval, idle counting as 0 MHz: APERF's cycles
    over the wall time (turbostat's Avg_MHz; no base frequency or TSC rate needed)."""
    return d_aperf / dt_s / 1e6 if dt_s > 0 else None


def residency_pct(d_residency: int, d_tsc: int) -> float | None:
    """Share of the interval spent in a C-state: residency counters tick at the TSC rate."""
    return 100.0 * d_residency / d_tsc if d_tsc > 0 else None


def tjmax(temperature_target: int) -> int:
    """TjMax in degrees C: MSR_TEMPERATURE_TARGET bits 23:16 (0: not reported)."""
    return (temperature_target >> 16) & 0xFF


def temperature_c(tjmax_c: int, therm_status: int, valid_bit: bool = True) -> int | None:
    """TjMax minus the digital readout (bits 22:16, degrees below TjMax).

    IA32_THERM_STATUS says with bit 31 whether the readout is valid (valid_bit);
    IA32_PACKAGE_THERM_STATUS has no such bit.  None for an invalid reading."""
    if valid_bit and not therm_status >> 31 & 1:
        return None
    return tjmax_c - ((therm_status >> 16) & 0x7F)


def base_ratio(platform_info: int) -> int:
    """MSR_PLATFORM_INFO bits 15:8, the maximum non-turbo ratio (0: not reported)."""
    return (platform_info >> 8) & 0xFF


def intel_base_mhz(platform_info: int, bclk_mhz: float = 100.0) -> float:
    """Base (maximum non-turbo) frequency: the base ratio times the bus clock
    (100 MHz since Sandy Bridge, 133.33 on Nehalem, Westmere and Airmont; 0: not reported)."""
    return base_ratio(platform_info) * bclk_mhz


# MSR_FSB_FREQ (0xCD) bits 3:0 on Silvermont -> its bus clock in MHz (turbostat's slm_bclk).
SLM_BCLK_MHZ = (83.3, 100.0, 133.3, 116.7, 80.0)


def slm_bclk_mhz(fsb_freq: int) -> float | None:
    """Silvermont's bus clock from MSR_FSB_FREQ; None for a code the SDM does not define."""
    code = fsb_freq & 0xF
    return SLM_BCLK_MHZ[code] if code < len(SLM_BCLK_MHZ) else None


def amd_pstate_mhz(pstate_def: int, layout: str = "fid_did") -> float | None:
    """Core frequency of an AMD P-state definition (MSRC001_006[4..B]); None if PstateEn
    (bit 63) is clear or the divisor is 0.  layout (the model table's amd_pstate):
    fid_did, families 17h/19h: CpuFid[7:0] / CpuDfsId[13:8] * 200 MHz (PPR 'CoreCOF');
    fid_5mhz, family 1Ah: CpuFid[11:0] * 5 MHz."""
    if not pstate_def >> 63:
        return None
    if layout == "fid_5mhz":
        return (pstate_def & 0xFFF) * 5.0 or None
    fid, did = pstate_def & 0xFF, (pstate_def >> 8) & 0x3F
    return 200.0 * fid / did if did else None


def _names(value: int, bits: dict[int, str]) -> tuple[str, ...]:
    return tuple(name for bit, name in bits.items() if value >> bit & 1)


# IA32_THERM_STATUS / IA32_PACKAGE_THERM_STATUS: the status bits that mean the
# CPU is being held back now; each one's sticky log bit is the next bit up.
THERM_BITS = {0: "thermal", 2: "prochot", 4: "critical", 10: "power_limit", 12: "current_limit", 14: "cross_domain"}
PACKAGE_THERM_BITS = {0: "thermal", 2: "prochot", 4: "critical", 10: "power_limit"}


def throttle(therm_status: int, package: bool = False) -> tuple[str, ...]:
    """Why the core (or package) is throttled now: the set status bits of a thermal status register."""
    return _names(therm_status, PACKAGE_THERM_BITS if package else THERM_BITS)


def throttle_log(therm_status: int, package: bool = False) -> tuple[str, ...]:
    """What throttled it since the log bits were last cleared (sticky; msrctl only reads them)."""
    bits = PACKAGE_THERM_BITS if package else THERM_BITS
    return _names(therm_status, {bit + 1: name for bit, name in bits.items()})


# MSR_CORE_PERF_LIMIT_REASONS (0x64F, 6th-generation Core and later): status in
# bits 15:0, the matching sticky log bits in 31:16.
LIMIT_BITS = {
    0: "prochot",
    1: "thermal",
    4: "residency_state_regulation",
    5: "running_average_thermal",
    6: "vr_therm_alert",
    7: "vr_thermal_design_current",
    8: "other",
    10: "pl1",
    11: "pl2",
    12: "max_turbo_limit",
    13: "turbo_transition_attenuation",
}


def limit_reasons(value: int) -> tuple[str, ...]:
    """Why the core frequency is below the request now."""
    return _names(value, LIMIT_BITS)


def limit_log(value: int) -> tuple[str, ...]:
    """Why it was below the request since the log was last cleared."""
    return _names(value, {bit + 16: name for bit, name in LIMIT_BITS.items()})
