"""The MSRs msrdrv keeps from openers without CAP_SYS_RAWIO, as dkms/msrdrv_policy.c has them.

Protected (msrdrv_protected[], and the machine-check banks' address registers
by their stride): they hold kernel (or guest-physical) addresses or record
kernel control flow; reading one defeats KASLR or leaks another task's state,
writing one hijacks the kernel.  A list may not name them at all.

Kernel control (msrdrv_kernel_control[], data/kernel_control.json): they steer
the kernel (its entry paths, interrupts, memory types, mitigations, time,
machine checks); a list may let members read them but never write them.

The kernel refuses a list breaking either rule (EACCES); msrctl refuses it
first, with the file's lines.  tests/host/admin/test_protected.py parses the C
tables and checks these copies against them, so they cannot drift.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path

# Why each kind of range is protected, in words for an error message.
KERNEL = "holds kernel addresses"
BRANCHES = "records kernel branch addresses"
SAMPLES = "records sampled kernel code and data addresses"
PHYSICAL = "holds physical addresses of kernel, firmware or hypervisor memory"
GUEST = "holds guest-physical addresses shared with the hypervisor"
MCA_ADDR = "holds the physical address of failed memory"


@dataclass(frozen=True)
class Range:
    first: int
    last: int  # inclusive, as in the kernel's table
    description: str  # the kernel table's comment, verbatim
    why: str  # one of the kinds above

    def __contains__(self, msr: int) -> bool:
        return self.first <= msr <= self.last


RANGES: tuple[Range, ...] = (
    Range(0x00000000, 0x00000000, "IA32_P5_MC_ADDR (Pentium)", PHYSICAL),
    Range(0x00000011, 0x00000012, "KVM pvclock (old numbers): GPAs", GUEST),
    Range(0x00000040, 0x00000047, "LBR FROM_IP (Core, Atom)", BRANCHES),
    Range(0x00000060, 0x00000067, "LBR TO_IP (Core, Atom)", BRANCHES),
    Range(0x0000009E, 0x0000009E, "IA32_SMBASE", PHYSICAL),
    Range(0x000000A0, 0x000000A1, "MSR_SMRR_PHYSBASE/MASK (Core 2)", PHYSICAL),
    Range(0x00000174, 0x00000176, "IA32_SYSENTER_CS/ESP/EIP", KERNEL),
    Range(0x000001CC, 0x000001D4, "IA32_FRED_RSP0-3, STKLVLS, SSP1-3, CONFIG", KERNEL),
    Range(0x000001D7, 0x000001D8, "MSR_LER_FROM_LIP, MSR_LER_TO_LIP (P4)", BRANCHES),
    Range(0x000001DB, 0x000001DE, "LASTBRANCH/LER FROM/TO IP", BRANCHES),
    Range(0x000001F2, 0x000001F5, "IA32_SMRR_PHYSBASE/MASK, PRMRR_PHYS_BASE/MASK", PHYSICAL),
    Range(0x000002A0, 0x000002A7, "MSR_PRMRR_BASE_0-7", PHYSICAL),
    Range(0x000002F4, 0x000002F5, "MSR_UNCORE_PRMRR_PHYS_BASE/MASK", PHYSICAL),
    Range(0x000003F4, 0x000003F5, "IA32_PEBS_BASE, IA32_PEBS_INDEX", KERNEL),
    Range(0x00000560, 0x00000561, "IA32_RTIT_OUTPUT_BASE, OUTPUT_MASK_PTRS", PHYSICAL),
    Range(0x00000572, 0x00000572, "IA32_RTIT_CR3_MATCH", PHYSICAL),
    Range(0x00000580, 0x00000587, "IA32_RTIT_ADDR0_A-ADDR3_B", KERNEL),
    Range(0x00000600, 0x00000600, "IA32_DS_AREA", KERNEL),
    Range(0x00000680, 0x0000069F, "MSR_LASTBRANCH_0-31_FROM_IP", BRANCHES),
    Range(0x000006A0, 0x000006A8, "IA32_U_CET, S_CET, PL0-3_SSP, INT_SSP_TAB", KERNEL),
    Range(0x000006C0, 0x000006DF, "MSR_LASTBRANCH_0-31_TO_IP", BRANCHES),
    Range(0x00000983, 0x00000984, "IA32_TME_EXCLUDE_MASK, TME_EXCLUDE_BASE", PHYSICAL),
    Range(0x00000985, 0x0000098A, "IA32_UINTR_RR, HANDLER, STACKADJUST, MISC, PD, TT", KERNEL),
    Range(0x00000D90, 0x00000D90, "IA32_BNDCFGS", KERNEL),
    Range(0x00000DC0, 0x00000DDF, "MSR_LBR_INFO_0-31", BRANCHES),
    Range(0x00001200, 0x0000121F, "IA32_LBR_0-31_INFO", BRANCHES),
    Range(0x00001400, 0x00001401, "IA32_SEAMRR_PHYS_BASE, SEAMRR_PHYS_MASK", PHYSICAL),
    Range(0x00001500, 0x0000151F, "IA32_LBR_0-31_FROM_IP", BRANCHES),
    Range(0x00001600, 0x0000161F, "IA32_LBR_0-31_TO_IP", BRANCHES),
    Range(0x000017D0, 0x000017D0, "IA32_HW_FEEDBACK_PTR", PHYSICAL),
    Range(0x40000000, 0x400000FF, "Hyper-V synthetic MSRs: GPAs", GUEST),
    Range(0x40000100, 0x40000105, "Hyper-V crash MSRs: panic RIP, parameters", KERNEL),
    Range(0x40000200, 0x40000200, "Xen hypercall page (with Viridian): GPA", GUEST),
    Range(0x40001082, 0x40001083, "Hyper-V nested SIEFP, SIMP: GPAs", GUEST),
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


def mca_address(msr: int) -> str | None:
    """The name of a machine-check bank's address register, found by its stride as the kernel's
    msrdrv_mca_addr(): IA32_MCi_ADDR 0x402 + 4i (banks 0-31), AMD SMCA MCA_ADDR and MCA_DEADDR
    0xc0002002 and 0xc0002009 + 0x10i (banks 0-63)."""
    if 0x400 <= msr <= 0x47F and msr & 3 == 2:
        return f"IA32_MC{(msr - 0x400) // 4}_ADDR"
    if 0xC0002000 <= msr <= 0xC00023FF and msr & 0xF in (2, 9):
        return f"MCA_{'ADDR' if msr & 0xF == 2 else 'DEADDR'} of bank {(msr - 0xC0002000) // 0x10}"
    return None


def protected_range(msr: int) -> Range | None:
    """The protected range holding msr (a bank's address register: a range of its own), or None."""
    i = bisect.bisect_right(_FIRSTS, msr) - 1
    if i >= 0 and msr in RANGES[i]:
        return RANGES[i]
    name = mca_address(msr)
    return Range(msr, msr, name, MCA_ADDR) if name else None


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


@dataclass(frozen=True)
class ControlRange:
    """MSRs a member may never write (a list may let members read them)."""

    first: int
    last: int  # inclusive
    description: str  # the kernel table's comment, verbatim
    kind: str  # what the registers steer: one of KINDS
    effect: str  # what a member's write would do
    source: str  # the manual's section and the kernel code that writes them

    def __contains__(self, msr: int) -> bool:
        return self.first <= msr <= self.last


# What each kind of kernel-control MSR steers, in words for an error message.
KINDS = {
    "syscall-entry": "sets how the kernel enters system calls",
    "interrupt-control": "steers interrupts (the APIC and its vectors)",
    "memory-typing": "sets memory types or the physical address map",
    "mitigation": "controls speculation and other security mitigations",
    "microcode": "loads microcode",
    "feature-lock": "enables or locks CPU features the kernel relies on",
    "debug": "controls tracing and branch recording the kernel owns",
    "time": "moves the time base the kernel keeps",
    "cpu-state": "holds CPU state the kernel manages",
    "machine-check": "controls machine-check reporting",
    "virtualization": "controls virtualization state",
    "resource-control": "sets cache and bandwidth allocation (the kernel's resctrl)",
    "test": "starts hardware self-tests",
    "voltage": "sets core voltages or P-state definitions",
    "firmware": "controls SMM and SMI delivery",
    "enclave": "sets the SGX launch-enclave keys",
}
PKRS = 0x6E1  # counts only while the kernel uses supervisor protection keys (CR4.PKS)


def _control() -> tuple[ControlRange, ...]:
    data = json.loads((Path(__file__).parent.parent / "data" / "kernel_control.json").read_text())
    return tuple(
        ControlRange(int(r["first"], 16), int(r["last"], 16), r["description"], r["kind"], r["effect"], r["source"])
        for r in data["ranges"]
    )


CONTROL: tuple[ControlRange, ...] = _control()
_CONTROL_FIRSTS = [r.first for r in CONTROL]


def control_range(msr: int) -> ControlRange | None:
    """The kernel-control range holding msr, or None."""
    i = bisect.bisect_right(_CONTROL_FIRSTS, msr) - 1
    return CONTROL[i] if i >= 0 and msr in CONTROL[i] else None


def explain_write(msr: int, name: str | None = None) -> str | None:
    """'MSR 0xc0000084 (IA32_FMASK) sets how the kernel enters system calls (SYSCALL_MASK (FMASK))':
    why members may not write msr, or None if a list may grant its writes."""
    r = control_range(msr)
    if r is None:
        return None
    label = f"MSR {msr:#x} ({name})" if name else f"MSR {msr:#x}"
    pks = " while the kernel uses supervisor protection keys" if msr == PKRS else ""
    return f"{label} {KINDS[r.kind]}{pks} ({r.description})"
