"""Topology from a fake sysfs, the op plan (exact ops, per-package MSRs once per package),
the probe's verdicts, and derive() from raw snapshots to metrics."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from fakecpu import TWO_PACKAGES, write_sysfs

from msrctl.device import abi
from msrctl.device.msrdrv import Info
from msrctl.errors import PERMISSION, MsrctlError, UsageError
from msrctl.telemetry import catalog, cpu, msrs, probe, topology
from msrctl.telemetry.derive import derive
from msrctl.telemetry.msrs import APERF, MPERF, PKG_ENERGY, THERM_STATUS, TSC
from msrctl.telemetry.plan import Context, Plan, PlanOp, Raw

LAYOUT = TWO_PACKAGES


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_sysfs(tmp_path, LAYOUT, monkeypatch)


def test_topology_from_sysfs(sysfs: Path) -> None:
    topo = topology.read()
    assert topo.numbers == list(range(8))
    # core_id repeats across packages: a core is (package, core_id)
    assert [c.cpu for c in topo.cores()] == [0, 1, 2, 3]
    assert [(c.cpu, c.package) for c in topo.packages()] == [(0, 0), (2, 1)]
    sub = topology.read([5, 7, 6])
    assert [c.cpu for c in sub.cores()] == [5, 6, 7] and [c.cpu for c in sub.packages()] == [5, 6]


def test_topology_needs_sysfs(sysfs: Path) -> None:
    (sysfs / "sys/devices/system/cpu/cpu3/topology/core_id").unlink()
    with pytest.raises(UsageError, match="cannot tell which core and package CPU 3 belongs to"):
        topology.read()


def test_plan_reads_per_package_msrs_once_per_package(sysfs: Path) -> None:
    plan = Plan(topology.read(), [MPERF, APERF, THERM_STATUS, PKG_ENERGY], Context("intel", {}))
    t, m, a, th, e = TSC.msr, MPERF.msr, APERF.msr, THERM_STATUS.msr, PKG_ENERGY.msr
    expected = []
    for c in range(8):
        expected += [(c, t, True), (c, m, False), (c, a, False)]
        if c < 4:  # the first thread of each core
            expected.append((c, th, False))
        if c in (0, 2):  # the first CPU of each package
            expected.append((c, e, False))
    assert [(op.cpu, op.msr, op.rdtsc) for op in plan.ops] == expected
    assert len(plan) == 30 and plan.per_cpu() == 5
    assert sum(op.msr == e for op in plan.ops) == 2 and sum(op.msr == th for op in plan.ops) == 4
    assert plan.index(2, e) == 13 and plan.index(1, e) is None


def test_plan_batch_holds_the_same_ops(sysfs: Path) -> None:
    plan = Plan(topology.read([0, 2]), [MPERF, PKG_ENERGY], Context("intel", {}))
    b = plan.batch()
    assert len(b) == len(plan) == 6
    got = [(b._ops[i].op, b._ops[i].cpu, b._ops[i].msr) for i in range(len(b))]
    assert got == [
        (abi.OP_RDTSC, c, 0) if i == 0 else (abi.OP_READ, c, msr)
        for c in (0, 2)
        for i, msr in enumerate((0, 0xE7, 0x611))
    ]


INTEL = cpu.CpuInfo("GenuineIntel", 6, 0x55, "Xeon", frozenset({"aperfmperf", "dts", "pts", "constant_tsc"}))
AMD = cpu.CpuInfo("AuthenticAMD", 0x19, 0x01, "EPYC", frozenset({"aperfmperf", "rapl", "hw_pstate"}))
# Good values for the static registers; counters read as a running count.
STATIC = {
    0xCE: 0x1800,
    0x1A2: 100 << 16,
    0x606: 0xA0E03,
    0x19C: 1 << 31 | 0x2A << 16,
    0x1B1: 0x28 << 16,
    0xC0010064: 1 << 63 | 0x08 << 8 | 0x88,
    0xC0010299: 0x000A1003,
}


def results_for(
    info: cpu.CpuInfo, topo: topology.Topology, value: Callable[[int, int], tuple[int, int]] | None = None
) -> dict[tuple[int, int], tuple[int, int]]:
    value = value or (lambda c, msr: (STATIC.get(msr, 123_456_789), 0))
    return {(c, m): value(c, m) for c, m in probe.probe_reads(info, topo)}


def test_probe_intel_bare_metal_has_everything_intel_has(sysfs: Path) -> None:
    topo = topology.read()
    found = probe.evaluate(INTEL, topo, results_for(INTEL, topo))
    ctx = found.context
    assert found.absent() == {catalog.INTEL["core_energy_j"]: ["core_energy_j", "core_power_w"]}  # type: ignore[dict-item]
    assert ctx.base_mhz == 2400.0
    assert (
        ctx.base_source
        == "MSR_PLATFORM_INFO bits 15:8 (24) x 100 MHz (the bus clock of Skylake-SP, Cascade Lake, Cooper Lake)"
    )
    assert ctx.tjmax == {0: 100, 1: 100}
    assert ctx.energy_unit[0, msrs.PKG_ENERGY.msr] == 2**-14
    assert ctx.energy_unit[1, msrs.DRAM_ENERGY.msr] == 15.3e-6  # Skylake-SP's fixed DRAM unit
    # the probe reads the sampled registers on CPU 0, the static ones on each package's first CPU
    reads = probe.probe_reads(INTEL, topo)
    assert (0, 0x606) in reads and (2, 0x606) in reads and (2, 0xE7) not in reads
    assert [r.msr for r in found.sampled][:3] == [0xE7, 0xE8, 0x19C]


def test_probe_zeroes_are_absent_under_a_hypervisor_only_where_0_is_plausible(sysfs: Path) -> None:
    topo = topology.read([0, 1])
    res = results_for(INTEL, topo, lambda c, m: (STATIC.get(m, 0 if m in catalog.ZERO_PLAUSIBLE else 5), 0))
    bare = probe.evaluate(INTEL, topo, res)
    assert bare.context.available("pkg_c6_pct") and bare.context.available("limit_reasons")  # a real 0 %
    guest = probe.evaluate(replace(INTEL, flags=INTEL.flags | {"hypervisor"}), topo, res)
    why = guest.context.metrics["pkg_c6_pct"]
    assert why == "MSR_PKG_C6_RESIDENCY (0x3f9) " + probe.ZERO_WHY
    # a 0 where no real register holds one (an energy counter) is absent on bare metal too
    res[0, msrs.PKG_ENERGY.msr] = (0, 0)
    assert "reads 0" in str(probe.evaluate(INTEL, topo, res).context.metrics["pkg_power_w"])


def test_probe_faults_allowlist_and_missing_flags(sysfs: Path) -> None:
    topo = topology.read([0])
    res = results_for(INTEL, topo)
    res[0, msrs.PLATFORM_ENERGY.msr] = (0, errno.EIO)
    res[0, msrs.PP1_ENERGY.msr] = (0, errno.EACCES)
    res[0, msrs.CORE_C7.msr] = (0, errno.EACCES)
    no_dts = replace(INTEL, flags=frozenset({"aperfmperf"}))
    m = probe.evaluate(INTEL, topo, res).context.metrics
    assert m["psys_energy_j"] == "MSR_PLATFORM_ENERGY_STATUS (0x64d) faults: not implemented on this CPU"
    assert m["pp1_power_w"] == (
        "MSR_PP1_ENERGY_STATUS (0x641) is not in the msrdrv allowlist; RAPL energy is a side channel, granted by "
        "the energy profile: sudo msrctl allowlist load --profile telemetry --profile energy"
    )
    assert m["core_c7_pct"] == (
        "MSR_CORE_C7_RESIDENCY (0x3fe) is not in the msrdrv allowlist; "
        "ask an admin to run: sudo msrctl allowlist load --profile telemetry"
    )
    assert (0, msrs.THERM_STATUS.msr) not in probe.probe_reads(no_dts, topo)  # not read without the flag
    m = probe.evaluate(no_dts, topo, results_for(no_dts, topo)).context.metrics
    assert (
        m["core_temp_c"]
        == m["core_throttle"]
        == "the CPU lacks a digital thermal sensor (no 'dts' flag in /proc/cpuinfo)"
    )
    assert m["pkg_temp_c"] == "the CPU lacks a package thermal sensor (no 'pts' flag in /proc/cpuinfo)"


def test_probe_base_frequency_fallbacks(sysfs: Path) -> None:
    topo = topology.read([0])
    res = results_for(INTEL, topo)
    res[0, msrs.PLATFORM_INFO.msr] = (0, errno.EIO)
    ctx = probe.evaluate(INTEL, topo, res, cpuid_base_mhz=2100.0).context
    assert (ctx.base_mhz, ctx.base_source) == (2100.0, "CPUID leaf 0x16 EAX")
    ctx = probe.evaluate(INTEL, topo, res).context
    assert ctx.base_mhz is None and not ctx.available("mhz_busy") and ctx.available("busy_pct")
    assert str(ctx.metrics["mhz_busy"]).startswith(
        "the base frequency is unknown: MSR_PLATFORM_INFO (0xce) faults: not implemented on this CPU; CPUID leaf 0x16"
    )
    cpufreq = sysfs / "sys/devices/system/cpu/cpu0/cpufreq"
    cpufreq.mkdir()
    (cpufreq / "base_frequency").write_text("2300000\n")
    assert probe.sysfs_base(0) == (2300.0, "sysfs cpufreq base_frequency")
    ctx = probe.evaluate(INTEL, topo, res, sysfs_base=probe.sysfs_base(0)).context
    assert ctx.base_mhz == 2300.0 and ctx.available("mhz_busy")


def test_probe_amd(sysfs: Path) -> None:
    topo = topology.read()
    found = probe.evaluate(AMD, topo, results_for(AMD, topo))
    ctx = found.context
    assert ctx.base_mhz == 3400.0 and "MSR_AMD_PSTATE_DEF0" in ctx.base_source
    assert ctx.available("core_power_w") and ctx.available("pkg_energy_j") and ctx.available("mhz_busy")
    assert ctx.metrics["core_temp_c"] == (
        "AMD CPUs have no per-core temperature sensor (k10temp's per-package value is pkg_temp_c)"
    )
    assert ctx.metrics["dram_energy_j"] == "AMD RAPL has only core and package energy counters"
    assert ctx.energy_unit[1, msrs.AMD_PKG_ENERGY.msr] == 2**-16
    assert [r.msr for r in found.sampled] == [0xE7, 0xE8, 0xC001029A, 0xC001029B]
    # family 1Ah: CpuFid[11:0] x 5 MHz (PPR): FID 860 is a 4300 MHz P0 (a Ryzen 9 9950X's base)
    zen5 = replace(AMD, family=0x1A, model=0x44)
    p0 = 1 << 63 | 860

    def values(c: int, msr: int) -> tuple[int, int]:
        return (p0 if msr == 0xC0010064 else STATIC.get(msr, 123_456_789)), 0

    ctx = probe.evaluate(zen5, topo, results_for(zen5, topo, values)).context
    assert ctx.base_mhz == 4300.0 and "CpuFid x 5 MHz" in ctx.base_source
    older = replace(AMD, family=0x15)  # Bulldozer: not in the model table
    assert "the P-state layout of a model msrctl's table does not know (amd:0x15:0x1) is not known" in str(
        probe.evaluate(older, topo, results_for(older, topo)).context.metrics["mhz_busy"]
    )


def test_probe_qemu_tcg_like_cpu_reads_nothing(sysfs: Path) -> None:
    """QEMU's TCG 'max' CPU: AMD, family 6, none of the feature flags."""
    qemu = cpu.CpuInfo("AuthenticAMD", 6, 6, "QEMU TCG CPU version 2.5+", frozenset({"hypervisor", "tsc"}))
    topo = topology.read([0, 1])
    assert probe.probe_reads(qemu, topo) == []
    found = probe.evaluate(qemu, topo, {})
    assert found.sampled == () and not any(v is None for v in found.context.metrics.values())
    assert found.context.metrics["busy_pct"] == "the CPU lacks APERF/MPERF (no 'aperfmperf' flag in /proc/cpuinfo)"
    assert found.context.metrics["pkg_energy_j"] == "the CPU lacks RAPL (no 'rapl' flag in /proc/cpuinfo)"
    assert Plan(topo, found.sampled, found.context).ops == (PlanOp(0, 0x10, True), PlanOp(1, 0x10, True))
    other = cpu.CpuInfo("CentaurHauls", 6, 0xF, "VIA", frozenset())
    assert (
        probe.evaluate(other, topo, {}).context.metrics["busy_pct"] == "not an Intel or AMD CPU (vendor 'CentaurHauls')"
    )


def _info(rawio: bool, entries: int) -> Info:
    return Info(1, 1024, 0, 8, 1 if rawio else 0, entries, "test", 64)


def test_permission_error_without_an_allowlist() -> None:
    with pytest.raises(MsrctlError) as e:
        probe.check_allowed(_info(False, 0), {})
    assert e.value.code == PERMISSION
    assert e.value.message == (
        "cannot read telemetry registers: no msrdrv allowlist is loaded, so members of group msr may read no MSR; "
        "ask an admin to run: sudo msrctl allowlist load --profile telemetry"
    )
    with pytest.raises(MsrctlError, match="the msrdrv allowlist lists none of them"):
        probe.check_allowed(_info(False, 3), {(0, 0xE7): (0, errno.EACCES), (0, 0xE8): (0, errno.EACCES)})
    probe.check_allowed(_info(True, 0), {})  # root needs no list
    probe.check_allowed(_info(False, 3), {(0, 0xE7): (0, errno.EACCES), (0, 0xE8): (5, 0)})
    probe.check_allowed(None, {})  # a backend without INFO


def test_cpuinfo_parse() -> None:
    text = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
        "model name\t: Intel(R) Xeon(R) Gold 6130\nflags\t\t: fpu aperfmperf dts pts\n\n"
        "processor\t: 1\nvendor_id\t: Other\n"
    )
    info = cpu.parse(text)
    assert (info.vendor, info.family, info.model) == ("intel", 6, 0x55)
    assert info.has("pts") and not info.has("rapl")
    assert cpu.parse("").vendor == "other"


# --- derive ---------------------------------------------------------------------


def _raw(plan: Plan, t_ns: int, value: Callable[[PlanOp], int], errs: dict[int, int] | None = None) -> Raw:
    e = tuple((errs or {}).get(i, 0) for i in range(len(plan)))
    return Raw(tuple(value(op) for op in plan.ops), e, t_ns, t_ns, t_ns)


def test_derive_units_from_two_snapshots(sysfs: Path) -> None:
    topo = topology.read([0, 1, 4])
    found = probe.evaluate(INTEL, topo, results_for(INTEL, topo))
    plan = Plan(topo, found.sampled, found.context)
    therm = 1 << 31 | 0x2A << 16 | 1 << 10 | 1 << 11
    start = {0x10: 1_000, 0xE7: 5_000, 0xE8: 7_000, 0x3FD: 0, 0x611: 0xFFFFFF00, 0x19C: therm, 0x1B1: 0x28 << 16}
    step = {0x10: 240_000_000, 0xE7: 120_000_000, 0xE8: 180_000_000, 0x3FD: 60_000_000, 0x611: 0x200 + 16384}

    a = _raw(plan, 10**9, lambda op: start.get(op.msr, 77))
    b = _raw(plan, 10**9 + 100_000_000, lambda op: (start.get(op.msr, 77) + step.get(op.msr, 0)) & 0xFFFFFFFFFFFFFFFF)
    s = derive(plan, a, b)
    assert s.dt_s == 0.1 and s.failed == ()
    assert [r["cpu"] for r in s.cpus] == [0, 1, 4] and [r["core"] for r in s.cores] == [0, 1]
    row = s.cpus[0]
    assert (row["mhz_effective"], row["mhz_busy"], row["busy_pct"]) == (1800.0, 3600.0, 50.0)
    assert row["tsc"] == 1_000 + 240_000_000
    core = s.cores[0]
    assert core["core_temp_c"] == 58 and core["core_c6_pct"] == 25.0 and core["core_c3_pct"] == 0.0
    assert core["core_throttle"] == ("power_limit",) and core["core_throttle_log"] == ("power_limit",)
    assert core["core_energy_j"] is None  # Intel has none: absent, not 0
    pkg = s.packages[0]
    assert pkg["pkg_energy_j"] == (0x200 + 16384) * 2**-14 and pkg["pkg_power_w"] == pytest.approx(10.3125)
    assert pkg["pkg_temp_c"] == 60 and pkg["pkg_throttle"] == ()
    assert set(s.cpus[0]) == {"package", "core", "cpu", "tsc", "mhz_effective", "mhz_busy", "busy_pct"}
    assert set(pkg) == {"package", "tsc", *(m.name for m in catalog.METRICS if m.scope == "package")}


def test_derive_failed_op_is_absent_not_zero(sysfs: Path) -> None:
    topo = topology.read([0])
    found = probe.evaluate(INTEL, topo, results_for(INTEL, topo))
    plan = Plan(topo, found.sampled, found.context)
    i = plan.index(0, msrs.PKG_ENERGY.msr)
    assert i is not None
    a = _raw(plan, 0, lambda op: 100)
    b = _raw(plan, 10**8, lambda op: 200, {i: errno.EACCES})
    s = derive(plan, a, b)
    assert s.packages[0]["pkg_energy_j"] is None and s.packages[0]["pkg_power_w"] is None
    assert s.failed == ((PlanOp(0, msrs.PKG_ENERGY.msr), errno.EACCES),)
    s = derive(plan, b, _raw(plan, 2 * 10**8, lambda op: 300))  # failed in the earlier snapshot: no delta either
    assert s.packages[0]["pkg_energy_j"] is None and s.cpus[0]["busy_pct"] == 100.0
