"""Telemetry on the models whose MSRs mean something else than the generic case: each test
is one defect class of issue 27 (it failed on the tree before the model table), with its
figure worked out here from the SDM, turbostat or the kernel's intel_rapl, not by msrctl."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from fakecpu import SMALL, write_sysfs

from msrctl.telemetry import cpu, msrs, probe, topology
from msrctl.telemetry.derive import derive
from msrctl.telemetry.plan import Plan, Raw

FLAGS = frozenset({"aperfmperf", "dts", "pts", "constant_tsc"})
UNITS = 0xA0E03  # 1/8 W, 2^-14 J, 2^-10 s: MSR_RAPL_POWER_UNIT of most client and server parts


@pytest.fixture
def topo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> topology.Topology:
    write_sysfs(tmp_path, SMALL, monkeypatch)
    return topology.read([0])


def info(model: int, family: int = 6, vendor: str = "GenuineIntel") -> cpu.CpuInfo:
    return cpu.CpuInfo(vendor, family, model, "test", FLAGS)


def found(c: cpu.CpuInfo, topo: topology.Topology, static: Mapping[int, int]) -> probe.Probe:
    """The probe's verdict when every probe read gives static's value (a counter's 1000 else)."""
    return probe.evaluate(c, topo, {r: (static.get(r[1], 1000), 0) for r in probe.probe_reads(c, topo)})


def sample(p: probe.Probe, topo: topology.Topology, step: Mapping[int, int], dt_s: float = 0.1) -> dict:
    """derive() over dt_s in which each register in step advanced by its step."""
    plan = Plan(topo, p.sampled, p.context)
    a = Raw(tuple(1000 for _ in plan.ops), (0,) * len(plan.ops), 0, 0, 0)
    b = Raw(tuple(1000 + step.get(op.msr, 0) for op in plan.ops), (0,) * len(plan.ops), int(dt_s * 1e9), 0, 0)
    s = derive(plan, a, b)
    return {**s.cpus[0], **s.cores[0], **s.packages[0]}


def test_sapphire_rapids_dram_counts_in_the_unit_registers_units(topo: topology.Topology) -> None:
    """Class 1. The kernel's intel_rapl dropped SPR's fixed DRAM unit in 2022 (and turbostat's
    table gives SPR no has_fixed_rapl_unit): 2^14 counts of 2^-14 J in 0.1 s are 10 W, where
    the old 15.3 uJ gave 2.5 W, about 4x too low."""
    for model in (0x8F, 0xCF):  # Sapphire and Emerald Rapids
        p = found(info(model), topo, {0x606: UNITS, 0xCE: 0x1F00})
        assert p.context.energy_unit[0, msrs.DRAM_ENERGY.msr] == 2**-14
        assert sample(p, topo, {msrs.DRAM_ENERGY.msr: 1 << 14})["dram_power_w"] == pytest.approx(10.0)
    p = found(info(0x55), topo, {0x606: UNITS, 0xCE: 0x1F00})  # Skylake-SP keeps 15.3 uJ
    assert p.context.energy_unit[0, msrs.DRAM_ENERGY.msr] == 15.3e-6


def test_sapphire_rapids_platform_energy_counts_joules(topo: topology.Topology) -> None:
    """Class 2. turbostat: has_fixed_rapl_psys_unit on SPR, EMR and GNR, so PSys counts 1 J:
    30 counts in 0.1 s are 300 W (the unit register's 2^-14 J would say 0.018 W)."""
    for model in (0x8F, 0xCF, 0xAD):
        p = found(info(model), topo, {0x606: UNITS, 0xCE: 0x1F00})
        assert p.context.energy_unit[0, msrs.PLATFORM_ENERGY.msr] == 1.0
        assert sample(p, topo, {msrs.PLATFORM_ENERGY.msr: 30})["psys_power_w"] == pytest.approx(300.0)
    p = found(info(0xAF), topo, {0x606: UNITS, 0xCE: 0x1F00})  # Sierra Forest: the register's unit
    assert p.context.energy_unit[0, msrs.PLATFORM_ENERGY.msr] == 2**-14


def test_silvermont_energy_unit_is_2_to_the_esu_microjoules(topo: topology.Topology) -> None:
    """Class 3. turbostat (has_rapl_divisor): on Bay Trail the ESU field counts 2^ESU uJ.
    ESU 5 (0x505): 32 uJ per count, so 10_000 counts in 1 s are 0.32 W (2^-5 J would be 312 W)."""
    p = found(info(0x37), topo, {0x606: 0x505, 0xCE: 0x1000, 0xCD: 0x1})
    assert p.context.energy_unit[0, msrs.PKG_ENERGY.msr] == pytest.approx(32e-6)
    assert sample(p, topo, {msrs.PKG_ENERGY.msr: 10_000}, dt_s=1.0)["pkg_power_w"] == pytest.approx(0.32)


def test_bus_clock_of_nehalem_and_silvermont(topo: topology.Topology) -> None:
    """Class 4. turbostat: 133.33 MHz on Nehalem, Westmere and Airmont; Silvermont's from
    MSR_FSB_FREQ (code 0: 83.3 MHz).  Base ratio 0x18 = 24: 3199.92 MHz and 1999.2 MHz,
    and busy MHz follows (APERF 1.5x MPERF)."""
    for model, fsb, base in ((0x1A, None, 24 * 133.33), (0x4C, None, 24 * 133.33), (0x37, 0x0, 24 * 83.3)):
        static = {0xCE: 0x1800, 0x606: UNITS, **({0xCD: fsb} if fsb is not None else {})}
        p = found(info(model), topo, static)
        assert p.context.base_mhz == pytest.approx(base)
        s = sample(p, topo, {0x10: 10**8, msrs.MPERF.msr: 10**6, msrs.APERF.msr: 15 * 10**5})
        assert s["mhz_busy"] == pytest.approx(base * 1.5)
    assert (0, msrs.FSB_FREQ.msr) in probe.probe_reads(info(0x37), topo)
    assert (0, msrs.FSB_FREQ.msr) not in probe.probe_reads(info(0x55), topo)  # read only where it is the clock


def test_an_undefined_fsb_code_leaves_the_base_unknown(topo: topology.Topology) -> None:
    p = found(info(0x37), topo, {0xCE: 0x1800, 0x606: 0x505, 0xCD: 0x7})
    assert p.context.base_mhz is None
    assert "MSR_FSB_FREQ (0xcd) holds a bus-clock code the SDM does not define" in str(p.context.metrics["mhz_busy"])


def test_mhz_and_busy_when_the_tsc_is_not_the_base_clock(topo: topology.Topology) -> None:
    """Class 5. A Kaby Lake-U (model 0x8E) with a 2700 MHz base (ratio 27) whose TSC runs at
    2712 MHz: 0.1 s, busy 50 ms at 3600 MHz.  turbostat: Avg_MHz = APERF / 0.1 s = 1800,
    Busy% = MPERF / (TSC x 2700/2712) = 50, Bzy_MHz = 2700 x APERF / MPERF = 3600."""
    p = found(info(0x8E), topo, {0xCE: 27 << 8, 0x606: UNITS, 0x1A2: 100 << 16})
    assert p.context.tsc_tweak
    s = sample(p, topo, {0x10: 271_200_000, msrs.MPERF.msr: 135_000_000, msrs.APERF.msr: 180_000_000})
    assert s["mhz_effective"] == pytest.approx(1800.0)  # was 1792: base x APERF / TSC
    assert s["busy_pct"] == pytest.approx(50.0)  # was 49.78: MPERF / TSC
    assert s["mhz_busy"] == pytest.approx(3600.0)


def test_xeon_phi_counts_aperf_and_mperf_in_1024s(topo: topology.Topology) -> None:
    """Class 7. turbostat (need_perf_multiplier): on Knights Landing/Mill APERF and MPERF
    tick once per 1024 cycles.  0.1 s with APERF 131_836 (x1024 = 135M cycles): 1350 MHz
    average; MPERF 87_891 (x1024 = 90M of the 1.3 GHz TSC's 130M): 69.2 % busy."""
    p = found(info(0x57), topo, {0xCE: 13 << 8, 0x606: UNITS})
    s = sample(p, topo, {0x10: 130_000_000, msrs.MPERF.msr: 87_891, msrs.APERF.msr: 131_836})
    assert s["mhz_effective"] == pytest.approx(131_836 * 1024 / 0.1 / 1e6)
    assert s["busy_pct"] == pytest.approx(100 * 87_891 * 1024 / 130_000_000)
    assert s["mhz_busy"] == pytest.approx(1300.0 * 131_836 / 87_891)


def test_an_unknown_model_says_its_quirks_are_assumed(topo: topology.Topology) -> None:
    p = found(info(0xEE), topo, {0xCE: 0x1800, 0x606: UNITS})
    assert p.context.base_mhz == 2400.0 and "assumed" in p.context.base_source
    assert p.context.model == "a model msrctl's table does not know (intel:0x6:0xee)"
