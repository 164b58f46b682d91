"""The CPU's vendor, family, model and feature flags, from /proc/cpuinfo (under sysroot()).

The flags are the kernel's names for CPUID bits: aperfmperf (CPUID 6 ECX[0]),
dts and pts (CPUID 6 EAX[0] and [6], digital thermal sensors), rapl (AMD
CPUID 0x80000007 EDX[14]), hw_pstate (AMD P-state MSRs), constant_tsc.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..device.cpus import sysroot
from ..registers import models

VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}


@dataclass(frozen=True)
class CpuInfo:
    vendor_id: str = ""  # as CPUID says it: GenuineIntel, AuthenticAMD, ...
    family: int = 0  # "cpu family": the displayed family (extended family included)
    model: int = 0  # the displayed model (extended model included)
    model_name: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)
    stepping: int | None = None

    @property
    def vendor(self) -> str:
        """'intel', 'amd' (Hygon's Dhyana is a Zen core) or 'other'."""
        return VENDORS.get(self.vendor_id, "other")

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def model_entry(self) -> models.Model:
        """This CPU's entry in the model table (its quirks)."""
        return models.lookup(self.vendor, self.family, self.model, self.stepping)

    def describe(self) -> str:
        name = self.model_name or self.vendor_id or "unknown CPU"
        return f"{name} (family {self.family:#x}, model {self.model:#x})"


def parse(text: str) -> CpuInfo:
    """The first processor's entry of /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())

    def number(key: str) -> int:
        try:
            return int(fields.get(key, "0"), 0)
        except ValueError:
            return 0

    return CpuInfo(
        fields.get("vendor_id", ""),
        number("cpu family"),
        number("model"),
        fields.get("model name", ""),
        frozenset(fields.get("flags", "").split()),
        number("stepping") if "stepping" in fields else None,
    )


def read() -> CpuInfo:
    """This machine's CPU (an empty CpuInfo if /proc/cpuinfo cannot be read)."""
    try:
        text = (sysroot() / "proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo()
    return parse(text)
