"""Event-select encoding (against the Intel SDM / AMD PPR encodings), PMU
detection from CPUID, and the region's planned batches, on the host."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from msrctl.device.msrdrv import Batch
from msrctl.errors import UsageError
from msrctl.perf import events, region
from msrctl.perf import pmu as pmu_mod
from msrctl.perf.events import Event, decode, encode
from msrctl.perf.pmu import Pmu, from_cpuid, from_cpuinfo

# --- encoding: SDM Vol. 3B architectural events (event, umask) -----------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cycles", 0x0041003C),  # UnHalted Core Cycles 3CH/00H + USR + EN
        ("instructions", 0x004100C0),  # Instructions Retired C0H/00H
        ("ref-cycles", 0x0041013C),  # UnHalted Reference Cycles 3CH/01H
        ("llc-references", 0x00414F2E),  # LLC Reference 2EH/4FH
        ("llc-misses", 0x0041412E),  # LLC Misses 2EH/41H
        ("branches", 0x004100C4),  # Branch Instruction Retired C4H/00H
        ("branch-misses", 0x004100C5),  # Branch Misses Retired C5H/00H
    ],
)
def test_intel_architectural_event_encoding(name: str, value: int) -> None:
    ev = events.parse(name, "intel")[0]
    assert encode(ev, "intel") == value
    d = decode(value, "intel")
    assert (d["event"], d["umask"], d["usr"], d["os"], d["en"], d["int"]) == (
        ev.event,
        ev.umask,
        True,
        False,
        True,
        False,
    )


def test_raw_events_with_modifiers() -> None:
    ev = events.parse("0x3c:0x00:cmask=1:inv:os", "intel")[0]
    assert (ev.event, ev.umask, ev.cmask, ev.inv, ev.kernel) == (0x3C, 0, 1, True, True)
    assert encode(ev, "intel") == 0x01C3003C  # CMASK 1 <<24 | INV | EN | OS | USR | 3CH
    assert encode(ev, "intel", enable=False) == 0x0183003C


def test_amd_twelve_bit_event_codes() -> None:
    ev = events.parse("0x1c0:0x01", "amd")[0]
    value = encode(ev, "amd")
    assert value == 0x1_0041_01C0  # event bits 11:8 go to 35:32
    assert decode(value, "amd")["event"] == 0x1C0
    with pytest.raises(UsageError, match="out of range"):
        events.parse("0x1c0", "intel")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cylces", "unknown event 'cylces'.*did you mean cycles"),
        ("0xzz", "malformed raw event"),
        ("0xc0:0x100", "out of range"),
        ("0xc0:0x00:bogus", "unknown modifier 'bogus'"),
        (",", "no events given"),
    ],
)
def test_event_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        events.parse(text, "intel")


def test_aliases() -> None:
    assert [e.name for e in events.parse("cpu-cycles,cache-misses", "amd")] == ["cycles", "llc-misses"]


# --- detection from CPUID -------------------------------------------------------


def fake_cpuid(leaves: dict[int, tuple[int, int, int, int]]) -> Any:
    return lambda leaf, subleaf=0: leaves.get(leaf, (0, 0, 0, 0))


def vendor_leaf(max_leaf: int, name: bytes) -> tuple[int, int, int, int]:
    b, d, c = struct.unpack("<3I", name)
    return (max_leaf, b, c, d)


def test_intel_leaf_0xa() -> None:
    # a Skylake-like leaf 0xA: v4, 4 counters of 48 bits, 7 events; 3 fixed of 48 bits
    pmu = from_cpuid(fake_cpuid({0: vendor_leaf(0x16, b"GenuineIntel"), 0xA: (0x07300404, 0x4, 0, 0x603)}))
    assert (pmu.vendor, pmu.present, pmu.version) == ("intel", True, 4)
    assert (pmu.gp_counters, pmu.gp_width, pmu.fixed_counters, pmu.fixed_width) == (4, 48, 3, 48)
    assert pmu.unavailable == ("ref-cycles",)  # EBX bit 2
    assert pmu.global_ctrl and pmu.evtsel(2) == 0x188 and pmu.counter(2) == 0xC3


def test_no_pmu_under_emulation() -> None:
    pmu = from_cpuid(fake_cpuid({0: vendor_leaf(0xD, b"GenuineIntel")}))
    assert not pmu.present and "no counters" in pmu.reason
    tcg = from_cpuinfo("GenuineIntel", {"fpu", "msr", "hypervisor"})
    assert not tcg.present and "virtual PMU" in tcg.describe()


def test_amd_core_counters() -> None:
    leaves = {
        0: vendor_leaf(0x10, b"AuthenticAMD"),
        0x80000000: (0x80000022, 0, 0, 0),
        0x80000001: (0, 0, 1 << 23, 0),
        0x80000022: (0x1, 0x6, 0, 0),
    }
    pmu = from_cpuid(fake_cpuid(leaves))
    assert (pmu.vendor, pmu.gp_counters, pmu.version) == ("amd", 6, 2)
    assert pmu.evtsel(1) == 0xC0010202 and pmu.counter(1) == 0xC0010203


AMD_VM_CPUID = {0: vendor_leaf(0x10, b"AuthenticAMD"), 0x80000000: (0x80000008, 0, 0, 0)}


@pytest.mark.parametrize("kernel_pmu", [True, False, None])
def test_detection_needs_the_kernel_to_have_found_the_pmu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_pmu: bool | None
) -> None:
    """An AMD VM without a vPMU still reports K7 counters in CPUID; the kernel, which probes
    them, registers no `cpu` event source, and then there is no PMU (not 4 counters of zeros)."""
    devices = tmp_path / "devices"
    if kernel_pmu is not None:
        (devices / "software").mkdir(parents=True)
        if kernel_pmu:
            (devices / "cpu").mkdir()
    monkeypatch.setattr(pmu_mod, "cpuid_reader", lambda cpu=0: fake_cpuid(AMD_VM_CPUID))
    monkeypatch.setattr(pmu_mod, "_cpuinfo", lambda: ("AuthenticAMD", {"fpu", "msr", "hypervisor"}))
    found = pmu_mod.detect(0, devices)
    if kernel_pmu is False:
        assert not found.present
        assert "kernel found no core PMU" in found.reason and "virtual PMU" in found.reason
        assert "Intel" not in found.describe() and "QEMU" not in found.describe()
    else:  # the kernel has one, or sysfs cannot tell: CPUID decides
        assert found.present and (found.vendor, found.gp_counters) == ("amd", 4)


def test_no_pmu_reasons_name_the_vendors_own_flag() -> None:
    amd = from_cpuinfo("AuthenticAMD", {"fpu", "hypervisor"})
    assert not amd.present and "perfctr_core" in amd.reason and "arch_perfmon" not in amd.reason
    intel = from_cpuinfo("GenuineIntel", {"fpu"})
    assert "arch_perfmon" in intel.reason and "virtual" not in intel.reason  # not a VM: no VM advice


# --- the region's batches --------------------------------------------------------

INTEL_V4 = Pmu("intel", True, "test", 4, 4, 48, 3, 48)


class Sim:
    """Executes batches on a dict of MSRs the way msrdrv's ops are defined
    (read, write, masked write, rdtsc), so save/restore can be checked."""

    def __init__(self, msrs: dict[int, int]) -> None:
        self.msrs = dict(msrs)
        self.tsc = 1000
        self.log: list[tuple[str, int, int]] = []

    def submit(self, b: Batch) -> int:
        for i in range(len(b)):
            o = b._ops[i]
            if o.op == 1:
                o.value = self.msrs.get(o.msr, 0)
            elif o.op == 2:
                v = o.value
                if o.flags & 1:
                    v = (self.msrs.get(o.msr, 0) & ~o.mask) | (v & o.mask)
                self.msrs[o.msr] = v
                o.value = v
                self.log.append(("write", o.msr, v))
            elif o.op == 4:
                self.tsc += 100
                o.value = self.tsc
            o.err = 0
        b._hdr.ndone = len(b)
        return 0


def test_region_plan_programs_exact_msrs() -> None:
    evs = events.parse("cycles,instructions,llc-misses,branches", "intel")
    r = region.Region(Sim({}), evs, cpu=0, pmu=INTEL_V4, calibrate=0)  # type: ignore[arg-type]
    writes = [(p.msr, p.value, p.mask) for p in r.start_plan if p.op == "write"]
    assert writes == [
        (0x38F, 0, 0x3_0000_0003),  # stop our counters (fixed 0,1 and PMC0,1) only
        (0x30A, 0, None),  # zero fixed counter 1 (cycles)
        (0x309, 0, None),  # zero fixed counter 0 (instructions)
        (0x186, 0x0041412E, None),  # PERFEVTSEL0 = LLC misses
        (0xC1, 0, None),
        (0x187, 0x004100C4, None),  # PERFEVTSEL1 = branches
        (0xC2, 0, None),
        (0x38D, 0x22, 0xFF),  # fixed 0 and 1: user mode, no PMI
        (0x38F, 0x3_0000_0003, 0x3_0000_0003),  # start
    ]
    assert [p.op for p in r.start_plan[:8]] == ["read"] * 8  # save first, in the same batch
    assert r.start_plan[-2].op == "rdtsc"


def test_region_restores_everything_and_leaves_others_counters_alone() -> None:
    before = {
        0x186: 0x0043003C,
        0x38F: 0x1_0000_0001,
        0x38D: 0x0B0,
        0xC1: 12345,
    }  # perf owns PMC0 and fixed 1... (nibble)
    sim = Sim(before)
    evs = events.parse("instructions,branches", "intel")
    with pytest.warns(UserWarning, match="in use by someone else"):
        r = region.Region(sim, evs, cpu=0, pmu=INTEL_V4, calibrate=2)  # type: ignore[arg-type]
    assert [s.select for s in r.slots] == [None, 0x187]  # fixed 0, then PMC1: PMC0 is taken
    with r:
        sim.msrs[0x309] += 500  # instructions counted while inside
        sim.msrs[0xC2] += 70
    assert r.counts == {"instructions": 500, "branches": 70}
    assert r.tsc > 0
    assert {m: sim.msrs.get(m, 0) for m in before} == before
    assert sim.msrs.get(0x187, 0) == 0 and sim.msrs.get(0xC2, 0) == 0 and sim.msrs.get(0x309, 0) == 0
    assert all(msr != 0x186 for _, msr, _ in sim.log)  # perf's event select never written


def test_region_refuses_without_pmu() -> None:
    with pytest.raises(region.PmuError, match="virtual PMU"):
        region.Region(Sim({}), [Event("cycles", 0x3C)], pmu=from_cpuinfo("GenuineIntel", {"hypervisor"}))  # type: ignore[arg-type]


@pytest.mark.parametrize("vendor_id", ["AuthenticAMD", "GenuineIntel"])
def test_events_default_to_this_machines_vendor(monkeypatch: pytest.MonkeyPatch, vendor_id: str) -> None:
    monkeypatch.setattr(pmu_mod, "_cpuinfo", lambda: (vendor_id, set()))
    vendor = "amd" if vendor_id == "AuthenticAMD" else "intel"
    assert events.parse("instructions,branch-misses") == events.parse("instructions,branch-misses", vendor)
    assert events.parse("instructions") != events.parse("instructions", "intel" if vendor == "amd" else "amd")
