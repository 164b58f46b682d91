"""A made-up machine for host tests of the telemetry stack: a sysfs topology tree under
MSRCTL_SYSROOT, the CPUs QEMU and a Skylake-SP Xeon show, and register values whose
derived metrics are known (SDM units), so plans, samples, frames and metrics can be
checked exactly without a device."""

from __future__ import annotations

from pathlib import Path

import pytest

from msrctl.telemetry import cpu, probe, topology
from msrctl.telemetry.plan import Plan

# 1 package, 2 cores, 2 threads each (CPUs 2 and 3 are the siblings of 0 and 1).
SMALL = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}
# 2 packages x 2 cores x 2 threads, numbered as Linux does: first threads, then siblings.
TWO_PACKAGES = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1), 4: (0, 0), 5: (0, 1), 6: (1, 0), 7: (1, 1)}

# A Skylake-SP (model 0x55: DRAM energy in fixed 15.3 uJ units) on bare metal.
XEON = cpu.CpuInfo("GenuineIntel", 6, 0x55, "Xeon Gold 6130", frozenset({"aperfmperf", "dts", "pts"}))
# What QEMU 7.2 TCG shows the guest: AMD family 0xF, none of the flags, and every MSR reads 0.
QEMU = cpu.CpuInfo("AuthenticAMD", 0xF, 0x6B, "QEMU Virtual CPU version 2.5+", frozenset({"hypervisor"}))
# Base 2400 MHz, TjMax 100 C, RAPL units 2^-14 J; core readout 42 below TjMax, package 40.
STATIC = {0xCE: 0x1800, 0x1A2: 100 << 16, 0x606: 0xA0E03, 0x19C: 1 << 31 | 0x2A << 16, 0x1B1: 0x28 << 16}
# Counters over 0.1 s at that base: 240M TSC ticks; APERF 180M (1800 MHz effective), MPERF
# 120M (50 % busy, 3600 MHz busy); core C6 60M (25 %), PC2 24M (10 %), PC6 12M (5 %);
# 3 x 2^14 package energy units (3 J: 30 W), 2^14 DRAM units of 15.3 uJ (2.5067 W).
STEP = {
    0x10: 240_000_000, 0xE8: 180_000_000, 0xE7: 120_000_000, 0x3FD: 60_000_000,
    0x60D: 24_000_000, 0x3F9: 12_000_000, 0x611: 3 * 16384, 0x619: 16384,
}  # fmt: skip


def write_sysfs(root: Path, layout: dict[int, tuple[int, int]], monkeypatch: pytest.MonkeyPatch) -> Path:
    """sys/devices/system/cpu under root for layout {cpu: (package, core_id)}, all online;
    msrctl reads it through MSRCTL_SYSROOT."""
    base = root / "sys/devices/system/cpu"
    base.mkdir(parents=True)
    (base / "online").write_text(f"0-{len(layout) - 1}\n")
    for c, (package, core) in layout.items():
        t = base / f"cpu{c}/topology"
        t.mkdir(parents=True)
        (t / "physical_package_id").write_text(f"{package}\n")
        (t / "core_id").write_text(f"{core}\n")
    monkeypatch.setenv("MSRCTL_SYSROOT", str(root))
    return root


def plan(info: cpu.CpuInfo, value: int | None = None) -> Plan:
    """The plan the probe makes for info on the fake topology: every probe read gives
    STATIC's value (123 for the rest), or value for all of them."""
    topo = topology.read()
    reads = probe.probe_reads(info, topo)
    found = probe.evaluate(info, topo, {r: (STATIC.get(r[1], 123) if value is None else value, 0) for r in reads})
    return Plan(topo, found.sampled, found.context)
