"""Which core PMU this CPU has, from CPUID.

CPUID comes from the kernel's cpuid driver (/dev/cpu/N/cpuid, module
`cpuid`, root only) when it is there; otherwise only /proc/cpuinfo's flags
are known (arch_perfmon, perfctr_core), which tell whether a PMU exists but
not its size.  Intel: CPUID leaf 0xA (architectural performance
monitoring).  AMD: leaf 0x80000001 ECX bit 23 (PerfCtrExtCore: six
counters at 0xC0010200) or the four legacy K7 counters, and leaf
0x80000022 (PerfMonV2: global control) where present.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

INTEL_PMC0 = 0xC1
INTEL_PERFEVTSEL0 = 0x186
INTEL_FIXED_CTR0 = 0x309
INTEL_FIXED_CTR_CTRL = 0x38D
INTEL_PERF_GLOBAL_STATUS = 0x38E
INTEL_PERF_GLOBAL_CTRL = 0x38F
INTEL_PERF_GLOBAL_OVF_CTRL = 0x390
AMD_K7_EVNTSEL0 = 0xC0010000
AMD_K7_PERFCTR0 = 0xC0010004
AMD_F15H_PERF_CTL0 = 0xC0010200  # CTLn at +2n, CTRn at +2n+1
AMD_PERF_GLOBAL_CTL = 0xC0000301


@dataclass(frozen=True)
class Pmu:
    vendor: str  # "intel", "amd" or "other"
    present: bool
    source: str  # "cpuid" or "cpuinfo"
    version: int = 0  # Intel arch perfmon version; AMD: 2 with PerfMonV2
    gp_counters: int = 0
    gp_width: int = 0
    fixed_counters: int = 0
    fixed_width: int = 0
    unavailable: tuple[str, ...] = field(default_factory=tuple)  # architectural events CPUID marks absent
    reason: str = ""  # why there is none, when present is False

    @property
    def global_ctrl(self) -> bool:
        # Intel v2+ and AMD PerfMonV2 gate every counter through one global enable register.
        return self.present and self.vendor in ("intel", "amd") and self.version >= 2

    def evtsel(self, i: int) -> int:
        if self.vendor == "amd":
            return AMD_F15H_PERF_CTL0 + 2 * i if self.gp_counters > 4 else AMD_K7_EVNTSEL0 + i
        return INTEL_PERFEVTSEL0 + i

    def counter(self, i: int) -> int:
        if self.vendor == "amd":
            return AMD_F15H_PERF_CTL0 + 2 * i + 1 if self.gp_counters > 4 else AMD_K7_PERFCTR0 + i
        return INTEL_PMC0 + i

    def describe(self) -> str:
        if not self.present:
            return f"no usable PMU: {self.reason}"
        text = f"{self.vendor.upper()} PMU"
        if self.vendor == "intel":
            text += f" v{self.version}: {self.gp_counters} general counters ({self.gp_width} bits)"
            text += f", {self.fixed_counters} fixed ({self.fixed_width} bits)"
        else:
            text += f": {self.gp_counters} counters" + (", PerfMonV2" if self.version >= 2 else "")
        return text + ("" if self.source == "cpuid" else " (sizes assumed: no /dev/cpu/0/cpuid)")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}


ARCH_EVENTS = ("cycles", "instructions", "ref-cycles", "llc-references", "llc-misses", "branches", "branch-misses")


def cpuid_reader(cpu: int = 0) -> Any:
    """A function leaf, subleaf -> (eax, ebx, ecx, edx), or None without the cpuid driver."""
    path = f"/dev/cpu/{cpu}/cpuid"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None

    def read(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        data = os.pread(fd, 16, leaf | (subleaf << 32))
        return struct.unpack("<4I", data)  # type: ignore[return-value]

    return read


def _cpuinfo() -> tuple[str, set[str]]:
    vendor, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id" and not vendor:
                vendor = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return vendor, flags


def _vendor(name: str) -> str:
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}.get(name, "other")


def cpu_vendor() -> str:
    """This machine's CPU vendor as events and Pmu name it: "intel", "amd" or "other"."""
    return _vendor(_cpuinfo()[0])


def from_cpuid(cpuid: Any) -> Pmu:
    """Decode the PMU from CPUID leaves (cpuid: leaf, subleaf -> eax, ebx, ecx, edx)."""
    max_leaf, b, c, d = cpuid(0)
    vendor = _vendor(struct.pack("<3I", b, d, c).decode(errors="replace"))
    if vendor == "intel":
        if max_leaf < 0xA:
            return Pmu(vendor, False, "cpuid", reason="CPUID has no leaf 0xA (architectural performance monitoring)")
        a, b, _, d = cpuid(0xA)
        version, ngp, width, nmask = a & 0xFF, (a >> 8) & 0xFF, (a >> 16) & 0xFF, (a >> 24) & 0xFF
        if version == 0 or ngp == 0:
            return Pmu(vendor, False, "cpuid", reason="CPUID leaf 0xA reports no counters (a VM without a vPMU?)")
        unavailable = tuple(n for i, n in enumerate(ARCH_EVENTS) if i < nmask and b >> i & 1)
        nfixed = d & 0x1F if version > 1 else 0
        fwidth = (d >> 5) & 0xFF if version > 1 else 0
        return Pmu(vendor, True, "cpuid", version, ngp, width, nfixed, fwidth, unavailable)
    if vendor == "amd":
        ext_max = cpuid(0x80000000)[0]
        ext_core = ext_max >= 0x80000001 and bool(cpuid(0x80000001)[2] >> 23 & 1)
        version, ngp = 1, 6 if ext_core else 4
        if ext_max >= 0x80000022:
            a, b, _, _ = cpuid(0x80000022)
            if a & 1:
                version, ngp = 2, b & 0xF or ngp
        return Pmu(vendor, True, "cpuid", version, ngp, 48)
    return Pmu(vendor, False, "cpuid", reason="not an Intel or AMD CPU")


VM_NOTE = "this is a virtual machine without a virtual PMU (the hypervisor must expose one)"


def from_cpuinfo(vendor_id: str, flags: set[str]) -> Pmu:
    """The fallback: presence from /proc/cpuinfo flags, typical sizes assumed."""
    vendor = _vendor(vendor_id)
    if vendor == "intel" and "arch_perfmon" in flags:
        return Pmu(vendor, True, "cpuinfo", 2, 4, 48, 3, 48)
    if vendor == "amd" and ("perfctr_core" in flags or "hypervisor" not in flags):
        return Pmu(vendor, True, "cpuinfo", 1, 6 if "perfctr_core" in flags else 4, 48)
    flag = {"intel": "arch_perfmon", "amd": "perfctr_core"}.get(vendor)
    why = f"the CPU flags show no performance monitoring ({flag})" if flag else "not an Intel or AMD CPU"
    if "hypervisor" in flags:
        why += f"; {VM_NOTE}"
    return Pmu(vendor, False, "cpuinfo", reason=why)


PERF_DEVICES = Path("/sys/bus/event_source/devices")


def kernel_has_core_pmu(devices: Path = PERF_DEVICES) -> bool | None:
    """Whether the kernel's perf found a core PMU (None: sysfs cannot tell).

    CPUID alone cannot say: an AMD CPU in a VM reports its counters whether
    or not the hypervisor backs them, and the kernel, which probes them,
    then registers no `cpu` event source."""
    if not devices.is_dir():
        return None
    return any((devices / name).exists() for name in ("cpu", "cpu_core", "cpu_atom"))


def detect(cpu: int = 0, devices: Path = PERF_DEVICES) -> Pmu:
    """The PMU of this CPU as the hardware and the kernel both see it."""
    cpuid = cpuid_reader(cpu)
    vendor_id, flags = _cpuinfo()  # read once: both the fallback and the VM note need it
    pmu = from_cpuid(cpuid) if cpuid is not None else from_cpuinfo(vendor_id, flags)
    vm = f"; {VM_NOTE}" if "hypervisor" in flags and VM_NOTE not in pmu.reason else ""
    if not pmu.present:
        return replace(pmu, reason=pmu.reason + vm)
    if kernel_has_core_pmu(devices) is False:
        why = f"the kernel found no core PMU (no cpu event source in {devices}; see dmesg 'Performance Events')"
        return Pmu(pmu.vendor, False, pmu.source, reason=why + vm)
    return pmu


def nmi_watchdog_on() -> bool:
    """The hard-lockup detector keeps a counter (via perf) while this is 1."""
    try:
        return Path("/proc/sys/kernel/nmi_watchdog").read_text().strip() == "1"
    except OSError:
        return False
