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
# An EPYC 7543 (Zen 3) on bare metal: P0 at 3400 MHz, RAPL units 2^-16 J.
ZEN3 = cpu.CpuInfo("AuthenticAMD", 0x19, 0x01, "AMD EPYC 7543", frozenset({"aperfmperf", "rapl", "hw_pstate"}))
PSTATE0 = 1 << 63 | 0x08 << 8 | 0x88  # 200 x 0x88 / 8 = 3400 MHz
AMD_STATIC = {0xC0010064: PSTATE0, 0xC0010299: 0x000A1003}


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
    results = {r: (STATIC.get(r[1], 123) if value is None else value, 0) for r in reads}
    found = probe.evaluate(info, topo, results, sensors=probe.find_sensors(info, topo))
    return Plan(topo, found.sampled, found.context)


def hwmon_device(root: Path, n: int, node: str, temps: dict[int, tuple[str, int]]) -> Path:
    """/sys/class/hwmon/hwmon<n> of k10temp on PCI node <node>, as the driver lays it out:
    temps {index: (label, millidegrees)}."""
    pci = root / "sys/devices/pci0000:00" / node
    d = pci / "hwmon" / f"hwmon{n}"
    d.mkdir(parents=True)
    (d / "name").write_text("k10temp\n")
    (d / "device").symlink_to(pci)
    for i, (label, milli) in temps.items():
        if label:
            (d / f"temp{i}_label").write_text(label + "\n")
        (d / f"temp{i}_input").write_text(f"{milli}\n")
    cls = root / "sys/class/hwmon"
    cls.mkdir(parents=True, exist_ok=True)
    (cls / f"hwmon{n}").symlink_to(d)
    return d
