"""Which metrics this machine has, and why each missing one is missing.

In order: the vendor (a metric with no source on it), the CPU flags a register
needs, then one probe batch that reads each candidate register on the first CPU
(and the static ones, units and TjMax, on every package's first CPU): a register
that faults, is refused by the allowlist, or reads 0 where a real one cannot, is
absent.  A metric is there only if all its registers and static values are.
`evaluate` is pure (results in, Context out); `run` adds the device and the system.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..decode.units import energy_status_unit
from ..device.cpus import sysroot
from ..errors import LOAD_PROFILE, LOAD_TELEMETRY, MsrctlError
from ..registers import models
from . import catalog, metrics, msrs
from .catalog import BASE, RAPL_UNIT, TJMAX, Source
from .cpu import CpuInfo
from .hwmon import Sensor
from .msrs import Register
from .plan import Context, Submitter
from .topology import Topology

Results = Mapping[tuple[int, int], tuple[int, int]]  # (cpu, msr) -> (value, errno)

ENERGY_FIX = f"RAPL energy is a side channel, granted by the energy profile: {LOAD_PROFILE}telemetry --profile energy"
ZERO_WHY = "reads 0: not implemented here (QEMU and some hypervisors read unknown MSRs as 0)"


@dataclass(frozen=True)
class Probe:
    cpu: CpuInfo
    registers: dict[int, str | None]  # every candidate register: None if usable, else why not
    sampled: tuple[Register, ...]  # the registers each sample reads
    context: Context

    def absent(self) -> dict[str, list[str]]:
        """Missing metrics grouped by reason, in catalog order."""
        out: dict[str, list[str]] = {}
        for m in catalog.METRICS:
            why = self.context.metrics[m.name]
            if why is not None:
                out.setdefault(why, []).append(m.name)
        return out


def candidates(cpu: CpuInfo) -> tuple[list[Register], list[Register], dict[int, str]]:
    """(sampled candidates, static candidates, registers ruled out by a missing flag -> why)."""
    srcs = catalog.sources(cpu.vendor, cpu.vendor_id)
    sampled: list[Register] = []
    for src in srcs.values():
        if isinstance(src, Source):
            sampled += [r for r in src.registers if r not in sampled]
    static = list({"intel": catalog.STATIC_INTEL, "amd": catalog.STATIC_AMD}.get(cpu.vendor, ()))
    if cpu.vendor == "intel" and cpu.model_entry().bclk_mhz == "fsb_freq":
        static.append(msrs.FSB_FREQ)  # Silvermont's bus clock
    gated: dict[int, str] = {}
    for r in sampled + static:
        flag = catalog.FLAGS.get(r.msr)
        if flag and not cpu.has(flag[0]):
            gated[r.msr] = f"the CPU lacks {flag[1]} (no '{flag[0]}' flag in /proc/cpuinfo)"
    order = {r.msr: i for i, r in enumerate(msrs.ALL)}
    sampled.sort(key=lambda r: order[r.msr])
    return sampled, static, gated


def probe_reads(cpu: CpuInfo, topology: Topology) -> list[tuple[int, int]]:
    """The (cpu, msr) reads of the probe batch."""
    sampled, static, gated = candidates(cpu)
    first = topology.cpus[0].cpu
    reads = [(first, r.msr) for r in sampled if r.msr not in gated]
    reads += [(p.cpu, r.msr) for r in static if r.msr not in gated for p in topology.packages()]
    return reads


def read_reason(reg: Register, value: int, err: int, hypervisor: bool) -> str | None:
    """Why a probe read makes the register unusable, or None."""
    if err == errno.EIO:
        return f"{reg.label()} faults: not implemented on this CPU"
    if err == errno.EACCES:
        fix = ENERGY_FIX if reg.msr in msrs.ENERGY_COUNTERS else f"ask an admin to run: {LOAD_TELEMETRY}"
        return f"{reg.label()} is not in the msrdrv allowlist; {fix}"
    if err:
        return f"{reg.label()}: {os.strerror(err)}"
    if value == 0 and (hypervisor or reg.msr not in catalog.ZERO_PLAUSIBLE):
        return f"{reg.label()} {ZERO_WHY}"
    return None


def _bclk(cpu: CpuInfo, results: Results, first: int, regs: dict[int, str | None]) -> tuple[float | None, str]:
    """The bus clock that MSR_PLATFORM_INFO's ratio multiplies, and where it came from."""
    model = cpu.model_entry()
    if model.bclk_mhz != "fsb_freq":
        whose = f"the bus clock of {model.name}" if model.known else f"assumed: {model.describe()}"
        return float(model.bclk_mhz), f"{model.bclk_mhz:g} MHz ({whose})"
    reg = msrs.FSB_FREQ
    why = regs.get(reg.msr)
    mhz = metrics.slm_bclk_mhz(results[first, reg.msr][0]) if why is None else None
    if mhz is None:
        return None, why or f"{reg.label()} holds a bus-clock code the SDM does not define"
    return mhz, f"{mhz:g} MHz (the bus clock in {reg.name} bits 3:0)"


def _base(
    cpu: CpuInfo, results: Results, first: int, regs: dict[int, str | None], cpuid_mhz: float | None, sysfs: Any
) -> tuple[float | None, str]:
    """The base frequency in MHz and where it came from (or None and why not)."""
    tried = []
    if cpu.vendor == "intel":
        reg = msrs.PLATFORM_INFO
        bclk, bclk_source = _bclk(cpu, results, first, regs)
        raw = results[first, reg.msr][0] if regs.get(reg.msr) is None else 0
        ratio = metrics.base_ratio(raw)
        if ratio and bclk:
            return metrics.intel_base_mhz(raw, bclk), f"{reg.name} bits 15:8 ({ratio}) x {bclk_source}"
        tried.append(regs.get(reg.msr) or (bclk_source if ratio else f"{reg.label()} reports no base ratio"))
        if cpuid_mhz:
            return cpuid_mhz, "CPUID leaf 0x16 EAX"
        tried.append("CPUID leaf 0x16 is not readable (/dev/cpu/N/cpuid needs root and the cpuid module)")
    elif cpu.vendor == "amd":
        reg = msrs.AMD_PSTATE_DEF0
        model = cpu.model_entry()
        if not model.known or model.amd_pstate is None:
            tried.append(f"the P-state layout of {model.describe()} is not known")
        elif regs.get(reg.msr) is None:
            mhz = metrics.amd_pstate_mhz(results[first, reg.msr][0], model.amd_pstate)
            if mhz:
                how = "CpuFid x 5 MHz" if model.amd_pstate == "fid_5mhz" else "CpuFid / CpuDfsId x 200 MHz"
                return mhz, f"{reg.name} (P0): {how}"
            tried.append(f"{reg.label()} is not an enabled P-state")
        else:
            tried.append(str(regs[reg.msr]))
    if sysfs is not None:
        return sysfs
    tried.append("sysfs has no cpufreq base_frequency (intel_pstate) or acpi-cpufreq maximum")
    return None, "the base frequency is unknown: " + "; ".join(tried)


def evaluate(
    cpu: CpuInfo,
    topology: Topology,
    results: Results,
    cpuid_base_mhz: float | None = None,
    sysfs_base: tuple[float, str] | None = None,
    sensors: tuple[Mapping[int, Sensor], str | None] = ({}, "hwmon was not looked at"),
) -> Probe:
    """The probe's verdict from the probe batch's results, the other base-frequency sources and
    the hwmon sensors found for the sampled packages (hwmon.k10temp's answer)."""
    sampled, static, gated = candidates(cpu)
    hypervisor = cpu.has("hypervisor")
    first = topology.cpus[0].cpu
    packages = [p.cpu for p in topology.packages()]
    regs: dict[int, str | None] = {}
    for r in sampled + static:
        if r.msr in gated:
            regs[r.msr] = gated[r.msr]
            continue
        on = [first] if r in sampled else packages
        regs[r.msr] = next(
            (why for c in on if (why := read_reason(r, *results[c, r.msr], hypervisor)) is not None), None
        )

    statics: dict[str, str | None] = {}
    base_mhz, base_source = _base(cpu, results, first, regs, cpuid_base_mhz, sysfs_base)
    statics[BASE] = None if base_mhz else base_source

    tjmax: dict[int, int] = {}
    if cpu.vendor == "intel":
        reg = msrs.TEMPERATURE_TARGET
        statics[TJMAX] = regs[reg.msr]
        if statics[TJMAX] is None:
            for p in topology.packages():
                tjmax[p.package] = metrics.tjmax(results[p.cpu, reg.msr][0])
            if not all(tjmax.values()):
                statics[TJMAX] = f"{reg.label()} reports no TjMax (bits 23:16 are 0)"

    units: dict[tuple[int, int], float] = {}
    unit_reg = {"intel": msrs.RAPL_POWER_UNIT, "amd": msrs.AMD_RAPL_POWER_UNIT}.get(cpu.vendor)
    model = cpu.model_entry()
    if unit_reg is not None:
        statics[RAPL_UNIT] = regs[unit_reg.msr]
        if statics[RAPL_UNIT] is None:
            for p in topology.packages():
                esu = energy_status_unit(results[p.cpu, unit_reg.msr][0])
                for r in sampled:
                    if r.msr in msrs.ENERGY_COUNTERS:
                        units[p.package, r.msr] = model.rapl_energy_unit(models.ENERGY_DOMAINS[r.msr], esu)

    available: dict[str, str | None] = {}
    used: set[int] = set()
    sensed = False  # some present metric comes from a hwmon sensor
    for m in catalog.METRICS:
        src = catalog.sources(cpu.vendor, cpu.vendor_id)[m.name]
        if isinstance(src, str):
            available[m.name] = src
            continue
        why = next((regs[r.msr] for r in src.registers if regs[r.msr] is not None), None)
        why = why or next((statics[s] for s in src.statics if statics.get(s) is not None), None)
        if src.sensor:
            why = why or _sensor_reason(sensors, topology)
        available[m.name] = why
        if why is None:
            used.update(r.msr for r in src.registers)
            sensed = sensed or bool(src.sensor)
    context = Context(
        cpu.vendor, available, base_mhz, base_source if base_mhz else "", tjmax, units,
        model.describe(), model.aperf_mperf_scale, model.tsc_tweak, model.atom_core_c6_includes_c7,
        dict(sensors[0]) if sensed else {},
    )  # fmt: skip
    return Probe(cpu, regs, tuple(r for r in sampled if r.msr in used), context)


def _sensor_reason(sensors: tuple[Mapping[int, Sensor], str | None], topology: Topology) -> str | None:
    found, why = sensors
    if why is not None:
        return why
    missing = [p.package for p in topology.packages() if p.package not in found]
    return f"no hwmon temperature found for package {missing[0]}" if missing else None


def check_allowed(info: Any, results: Results) -> None:
    """Raise the permission error when a group member may read none of the registers."""
    if info is not None and not info.rawio and info.allowlist_entries == 0:
        raise MsrctlError(
            "cannot read telemetry registers",
            "no msrdrv allowlist is loaded, so members of group msr may read no MSR",
            f"ask an admin to run: {LOAD_TELEMETRY}",
            errors.PERMISSION,
        )
    errs = [e for _, e in results.values()]
    if errs and all(e == errno.EACCES for e in errs):
        raise MsrctlError(
            "cannot read telemetry registers",
            "the msrdrv allowlist lists none of them",
            f"ask an admin to run: {LOAD_TELEMETRY}",
            errors.PERMISSION,
        )


def cpuid_base_mhz(cpu: int, reader: Callable[[int], Any] | None = None) -> float | None:
    """CPUID leaf 0x16 EAX[15:0] (processor base frequency, MHz), if the cpuid driver is readable."""
    if reader is None:
        from ..perf.pmu import cpuid_reader

        reader = cpuid_reader
    try:
        cpuid = reader(cpu)
        if cpuid is None or cpuid(0)[0] < 0x16:
            return None
        return float(cpuid(0x16)[0] & 0xFFFF) or None
    except OSError:
        return None


def sysfs_base(cpu: int) -> tuple[float, str] | None:
    """The base frequency cpufreq reports, and which file: intel_pstate's base_frequency, or
    acpi-cpufreq's cpuinfo_max_freq (its highest _PSS state, P0: boost is not listed)."""
    d = sysroot() / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"

    def khz(name: str) -> int | None:
        try:
            return int((d / name).read_text().strip())
        except (OSError, ValueError):
            return None

    base = khz("base_frequency")
    if base:
        return base / 1000.0, "sysfs cpufreq base_frequency"
    try:
        driver = (d / "scaling_driver").read_text().strip()
    except OSError:
        driver = ""
    top = khz("cpuinfo_max_freq")
    if driver == "acpi-cpufreq" and top:
        return top / 1000.0, "sysfs cpufreq cpuinfo_max_freq (acpi-cpufreq P0)"
    return None


def device_info(dev: Any) -> Any:
    """msrdrv's INFO (limits, the allowlist's size), or None from a backend without it:
    the kernel's msr driver (whose info() always raises) or a bare submitter."""
    if getattr(dev, "backend", "msrdrv") != "msrdrv" or not hasattr(dev, "info"):
        return None
    return dev.info()


def run(dev: Submitter, cpu: CpuInfo, topology: Topology) -> Probe:
    """Probe this machine through dev (one batch), raising the permission error if nothing is readable."""
    from ..device.msrdrv import Batch

    reads = probe_reads(cpu, topology)
    results: dict[tuple[int, int], tuple[int, int]] = {}
    if reads:
        b = Batch(len(reads))
        for c, msr in reads:
            b.read(msr, c)
        dev.submit(b)
        results = {rd: (b.value(i), b.err(i)) for i, rd in enumerate(reads)}
    check_allowed(device_info(dev), results)
    first = topology.cpus[0].cpu
    cpuid = cpuid_base_mhz(first) if cpu.vendor == "intel" else None
    return evaluate(cpu, topology, results, cpuid, sysfs_base(first), find_sensors(cpu, topology))


def find_sensors(cpu: CpuInfo, topology: Topology) -> tuple[dict[int, Sensor], str | None]:
    """The hwmon sensors this vendor's metrics may need (AMD: k10temp's), for the sampled packages."""
    if not any(isinstance(s, Source) and s.sensor for s in catalog.sources(cpu.vendor, cpu.vendor_id).values()):
        return {}, "this vendor needs no hwmon sensor"
    from . import hwmon

    return hwmon.k10temp([p.package for p in topology.packages()])
