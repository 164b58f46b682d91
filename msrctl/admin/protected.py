"""The MSRs msrdrv never lets openers without CAP_SYS_RAWIO reach (dkms/msrdrv_policy.c's msrdrv_protected[]).

They hold kernel (or guest-physical) addresses or record kernel control flow:
reading one defeats KASLR or leaks another task's state, writing one hijacks
the kernel.  The kernel refuses an allowlist naming one (EACCES); msrctl
refuses it first, with the file's line.  tests/host/admin/test_protected.py parses
the C table and checks this copy against it, so the two cannot drift.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# Why each kind of range is protected, in words for an error message.
KERNEL = "holds kernel addresses"
BRANCHES = "records kernel branch addresses"
SAMPLES = "records sampled kernel code and data addresses"
PHYSICAL = "holds physical addresses of kernel, firmware or hypervisor memory"
GUEST = "holds guest-physical addresses shared with the hypervisor"


@dataclass(frozen=True)
class Range:
    first: int
    last: int  # inclusive, as in the kernel's table
    description: str  # the kernel table's comment, verbatim
    why: str  # one of the kinds above

    def __contains__(self, msr: int) -> bool:
        return self.first <= msr <= self.last


RANGES: tuple[Range, ...] = (
    Range(0x00000011, 0x00000012, "KVM pvclock (old numbers): GPAs", GUEST),
    Range(0x00000040, 0x00000047, "LBR FROM_IP (Core, Atom)", BRANCHES),
    Range(0x00000060, 0x00000067, "LBR TO_IP (Core, Atom)", BRANCHES),
    Range(0x0000009E, 0x0000009E, "IA32_SMBASE", PHYSICAL),
    Range(0x00000174, 0x00000176, "IA32_SYSENTER_CS/ESP/EIP", KERNEL),
    Range(0x000001CC, 0x000001D4, "IA32_FRED_RSP0-3, STKLVLS, SSP1-3, CONFIG", KERNEL),
    Range(0x000001DB, 0x000001DE, "LASTBRANCH/LER FROM/TO IP", BRANCHES),
    Range(0x000003F4, 0x000003F5, "IA32_PEBS_BASE, IA32_PEBS_INDEX", KERNEL),
    Range(0x00000560, 0x00000561, "IA32_RTIT_OUTPUT_BASE, OUTPUT_MASK_PTRS", PHYSICAL),
    Range(0x00000572, 0x00000572, "IA32_RTIT_CR3_MATCH", PHYSICAL),
    Range(0x00000580, 0x00000587, "IA32_RTIT_ADDR0_A-ADDR3_B", KERNEL),
    Range(0x00000600, 0x00000600, "IA32_DS_AREA", KERNEL),
    Range(0x00000680, 0x0000069F, "MSR_LASTBRANCH_0-31_FROM_IP", BRANCHES),
    Range(0x000006A0, 0x000006A8, "IA32_U_CET, S_CET, PL0-3_SSP, INT_SSP_TAB", KERNEL),
    Range(0x000006C0, 0x000006DF, "MSR_LASTBRANCH_0-31_TO_IP", BRANCHES),
    Range(0x00000985, 0x0000098A, "IA32_UINTR_RR, HANDLER, STACKADJUST, MISC, PD, TT", KERNEL),
    Range(0x00000D90, 0x00000D90, "IA32_BNDCFGS", KERNEL),
    Range(0x00000DC0, 0x00000DDF, "MSR_LBR_INFO_0-31", BRANCHES),
    Range(0x00001200, 0x0000121F, "IA32_LBR_0-31_INFO", BRANCHES),
    Range(0x00001500, 0x0000151F, "IA32_LBR_0-31_FROM_IP", BRANCHES),
    Range(0x00001600, 0x0000161F, "IA32_LBR_0-31_TO_IP", BRANCHES),
    Range(0x40000000, 0x400000FF, "Hyper-V synthetic MSRs: GPAs", GUEST),
    Range(0x40000100, 0x40000105, "Hyper-V crash MSRs: panic RIP, parameters", KERNEL),
    Range(0x4B564D00, 0x4B564D07, "KVM paravirtual MSRs: GPAs", GUEST),
    Range(0xC0000081, 0xC0000083, "STAR, LSTAR, CSTAR", KERNEL),
    Range(0xC0000100, 0xC0000102, "FS_BASE, GS_BASE, KERNEL_GS_BASE", KERNEL),
    Range(0xC0010111, 0xC0010113, "AMD SMM_BASE, SMM_ADDR (TSEG), SMM_MASK", PHYSICAL),
    Range(0xC0010117, 0xC0010117, "MSR_VM_HSAVE_PA", PHYSICAL),
    Range(0xC0010130, 0xC0010130, "MSR_AMD64_SEV_ES_GHCB", PHYSICAL),
    Range(0xC0010132, 0xC0010133, "AMD SNP RMP_BASE, RMP_END", PHYSICAL),
    Range(0xC0010300, 0xC001031F, "AMD LbrExtV2 FROM/TO", BRANCHES),
    Range(0xC0011030, 0xC001103B, "AMD IBS fetch/op/data samples", SAMPLES),
)
_FIRSTS = [r.first for r in RANGES]


def protected_range(msr: int) -> Range | None:
    """The protected range holding msr, or None."""
    i = bisect.bisect_right(_FIRSTS, msr) - 1
    return RANGES[i] if i >= 0 and msr in RANGES[i] else None


def is_protected(msr: int) -> str | None:
    """The kernel table's description of msr's protected range, or None if msrdrv lets a list name it."""
    r = protected_range(msr)
    return r.description if r else None


def explain(msr: int, name: str | None = None) -> str | None:
    """'MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR)', or None if not protected."""
    r = protected_range(msr)
    if r is None:
        return None
    label = f"MSR {msr:#x} ({name})" if name else f"MSR {msr:#x}"
    return f"{label} {r.why} ({r.description})"
