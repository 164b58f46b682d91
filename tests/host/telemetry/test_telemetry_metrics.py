"""The telemetry unit math against values worked out from the Intel SDM and the AMD PPR."""

from __future__ import annotations

import pytest

from msrctl.decode.units import rapl_units
from msrctl.telemetry import metrics


def test_intel_rapl_power_unit_0xa0e03() -> None:
    """SDM vol. 3B 15.10.1: power 1/2^3 W, energy 1/2^14 J, time 1/2^10 s."""
    u = rapl_units(0xA0E03)
    assert u.watts == 1 / 8
    assert u.joules == 2**-14  # 61.04 uJ
    assert u.seconds == 2**-10  # 976.6 us


def test_amd_rapl_pwr_unit_0xc0010299() -> None:
    """PPR 17h MSRC001_0299 reset value 0x000A1003: PowerUnit 3, EnergyStatusUnit 10h, TimeUnit Ah."""
    u = rapl_units(0x000A1003)
    assert (u.watts, u.joules, u.seconds) == (1 / 8, 2**-16, 2**-10)
    assert round(u.joules * 1e6, 2) == 15.26  # uJ per count


def test_energy_counter_wraps_at_32_bits() -> None:
    assert metrics.counter_delta(0xFFFFFF00, 0x00000100, 32) == 0x200
    assert metrics.energy_joules(0xFFFFFF00, 0x00000100, 2**-14) == 0x200 * 2**-14 == 0.03125
    # bits 63:32 are reserved: whatever they hold does not count
    assert metrics.energy_joules(0xDEAD_0000_FFFF_FF00, 0xBEEF_0000_0000_0100, 2**-14) == 0.03125
    assert metrics.energy_joules(1000, 1000, 2**-14) == 0.0  # no energy used: a real 0


def test_joules_and_watts_over_an_interval() -> None:
    # 10 W for 100 ms at 2^-14 J: 1 J = 16384 counts
    joules = metrics.energy_joules(5_000_000, 5_000_000 + 16384, 2**-14)
    assert joules == 1.0
    assert metrics.watts(joules, 0.1) == 10.0
    assert metrics.watts(joules, 0.0) is None


def test_frequency_and_busy_from_aperf_mperf_tsc() -> None:
    """100 ms at a 2.4 GHz TSC that is also the base clock, busy half the time at 1.5x base."""
    base, d_tsc, dt = 2400.0, 240_000_000, 0.1
    d_mperf, d_aperf = 120_000_000, 180_000_000
    assert metrics.busy_pct(d_mperf, d_tsc) == 50.0
    assert metrics.busy_mhz(d_aperf, d_mperf, base) == 3600.0
    assert metrics.effective_mhz(d_aperf, dt) == 1800.0
    assert metrics.busy_mhz(0, 0, base) is None  # never busy: no busy frequency, not 0 MHz


def test_frequency_when_the_tsc_is_not_the_base_clock() -> None:
    """A client part whose TSC runs at 2712 MHz and whose base is 2700 MHz, 100 ms, busy
    50 ms at 3600 MHz.  In C0 MPERF counts 2700 MHz cycles (135M), APERF 3600 MHz cycles
    (180M); the TSC counts 271.2M.  turbostat: Avg_MHz = APERF / interval = 1800;
    Busy% = MPERF / (TSC x base / TSC rate) = 50; Bzy_MHz = base x APERF / MPERF = 3600.
    base x APERF / TSC (1792 MHz) and MPERF / TSC (49.78 %) are what it must not say."""
    d_tsc, d_mperf, d_aperf, dt = 271_200_000, 135_000_000, 180_000_000, 0.1
    oracle_busy = 100.0 * d_mperf / (d_tsc * 2700.0 / (d_tsc / dt / 1e6))
    assert metrics.effective_mhz(d_aperf, dt) == pytest.approx(1800.0)
    assert metrics.busy_pct_at_base(d_mperf, 2700.0, dt) == pytest.approx(oracle_busy) == pytest.approx(50.0)
    assert metrics.busy_mhz(d_aperf, d_mperf, 2700.0) == pytest.approx(3600.0)
    assert metrics.busy_pct_at_base(d_mperf, 0.0, dt) is None and metrics.effective_mhz(d_aperf, 0.0) is None


def test_silvermont_bus_clock_codes() -> None:
    """SDM vol. 4, MSR_FSB_FREQ on the Silvermont family: 83.3, 100, 133.3, 116.7, 80 MHz."""
    assert [metrics.slm_bclk_mhz(c) for c in range(5)] == [83.3, 100.0, 133.3, 116.7, 80.0]
    assert metrics.slm_bclk_mhz(0x10) == 83.3  # bits 3:0 only
    assert metrics.slm_bclk_mhz(5) is None and metrics.slm_bclk_mhz(0xF) is None  # undefined codes


def test_counters_wrap_at_64_bits() -> None:
    assert metrics.counter_delta(2**64 - 10, 5, 64) == 15


def test_c6_residency_against_tsc() -> None:
    assert metrics.residency_pct(60_000_000, 240_000_000) == 25.0
    assert metrics.residency_pct(0, 240_000_000) == 0.0


def test_temperature_tjmax_100_readout_0x2a_is_58c() -> None:
    """SDM 15.8.5: temperature = TjMax (MSR_TEMPERATURE_TARGET[23:16]) - readout (THERM_STATUS[22:16])."""
    tjmax = metrics.tjmax(0x00640000)
    assert tjmax == 100
    status = 1 << 31 | 0x2A << 16  # Reading Valid, readout 42 below TjMax
    assert metrics.temperature_c(tjmax, status) == 58
    assert metrics.temperature_c(tjmax, 0x2A << 16) is None  # Reading Valid clear
    assert metrics.temperature_c(tjmax, 0x2A << 16, valid_bit=False) == 58  # the package register has no such bit


def test_base_frequency_intel_platform_info() -> None:
    assert metrics.intel_base_mhz(0x0000_0000_0000_1800) == 2400.0  # max non-turbo ratio 24
    assert metrics.intel_base_mhz(0x0000_0000_0000_1800, 133.33) == pytest.approx(3199.92)  # Nehalem's bus
    assert metrics.intel_base_mhz(0) == 0.0


def test_amd_pstate_layouts() -> None:
    """PPR 17h/19h: 200 MHz x CpuFid / CpuDfsId (FID 0x88 = 136, DID 8 -> 3400 MHz);
    PPR 1Ah: CpuFid[11:0] x 5 MHz (FID 0x2EE = 750 -> 3750 MHz); PstateEn clear: none."""
    assert metrics.amd_pstate_mhz(1 << 63 | 8 << 8 | 0x88) == 3400.0
    assert metrics.amd_pstate_mhz(1 << 63 | 0x2EE, "fid_5mhz") == 3750.0
    assert metrics.amd_pstate_mhz(8 << 8 | 0x88) is None


@pytest.mark.parametrize(
    ("pstate_def", "mhz"),
    [
        (1 << 63 | 0x48 << 14 | 0x08 << 8 | 0x88, 3400.0),  # FID 136 / DID 8 * 200
        (1 << 63 | 0x0A << 8 | 0x7C, 2480.0),  # FID 124 / DID 10 * 200
        (0x08 << 8 | 0x88, None),  # PstateEn clear
        (1 << 63 | 0x88, None),  # divisor 0
    ],
)
def test_base_frequency_amd_p0(pstate_def: int, mhz: float | None) -> None:
    """PPR 17h/19h MSRC001_0064: CoreCOF = CpuFid[7:0] / CpuDfsId[13:8] * 200 MHz."""
    assert metrics.amd_pstate_mhz(pstate_def) == mhz


def test_thermal_throttle_and_log_bits() -> None:
    status = 1 << 31 | 0x30 << 16 | 1 << 0 | 1 << 1 | 1 << 10 | 1 << 11 | 1 << 3
    assert metrics.throttle(status) == ("thermal", "power_limit")
    assert metrics.throttle_log(status) == ("thermal", "prochot", "power_limit")
    assert metrics.throttle(1 << 12 | 1 << 14) == ("current_limit", "cross_domain")
    assert metrics.throttle(1 << 12, package=True) == ()  # the package register has no current-limit bit
    assert metrics.throttle(1 << 31 | 0x30 << 16) == ()


def test_perf_limit_reasons() -> None:
    value = 1 << 1 | 1 << 10 | 1 << 11 | 1 << 26 | 1 << 27 | 1 << 16
    assert metrics.limit_reasons(value) == ("thermal", "pl1", "pl2")
    assert metrics.limit_log(value) == ("prochot", "pl1", "pl2")
