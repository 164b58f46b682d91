"""Allowlist text, protected MSRs refused with their line, profile masks, the energy split, merging."""

from __future__ import annotations

import errno

import pytest

from msrctl import errors
from msrctl.admin import allowlist
from msrctl.admin.allowlist import Entry
from msrctl.errors import MsrctlError, UsageError

OS, INT, ANY = 1 << 17, 1 << 20, 1 << 21
RAPL_ENERGY = {0x611, 0x619, 0x639, 0x641, 0x64D, 0xC001029A, 0xC001029B}
RAPL_UNITS = {0x606, 0xC0010299}


def entries(*profiles: str, **params: object) -> dict[int, Entry]:
    text = allowlist.render_profiles(list(profiles), **params)
    return {e.msr: e for e in allowlist.parse(text)}


def test_parse_msr_safe_format_and_write_only() -> None:
    text = "# site list\n0x10 0x0\nMSR_MISC_FEATURE_CONTROL 0xf write-only  # prefetchers, never read back\n\n0xe7 0\n"
    assert allowlist.parse(text) == [Entry(0x10, 0), Entry(0xE7, 0), Entry(0x1A4, 0xF, read=False)]


def test_format_round_trips() -> None:
    listed = [Entry(0x10, 0), Entry(0x1A4, 0xF, read=False), Entry(0x38F, 0xF), Entry(0x4000_1000, 1)]
    text = allowlist.format_entries(listed)
    assert "0x000001a4 0x000000000000000f write-only  # MSR_MISC_FEATURE_CONTROL\n" in text
    assert allowlist.parse(text) == listed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "0x10 0x0\n\nIA32_LSTAR 0x0\n",
            "allowlist.txt:3: MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR): "
            "msrdrv never lets group members read or write it; remove the line (root reaches it without a list)",
        ),
        (
            "0x600 0x0\n",
            "allowlist.txt:1: MSR 0x600 holds kernel addresses (IA32_DS_AREA): msrdrv never lets",
        ),
        ("0x1500 0x0\n", "allowlist.txt:1: MSR 0x1500 records kernel branch addresses (IA32_LBR_0-31_FROM_IP)"),
        ("0x10 0x0 read\n", "allowlist.txt:1: malformed allowlist line '0x10 0x0 read': the third field may only be"),
        ("0x10\n", "allowlist.txt:1: malformed allowlist line '0x10': expected the MSR, its write mask"),
        (
            "0x10 0x0 write-only\n",
            "allowlist.txt:1: MSR 0x10 is write-only with write mask 0: the entry grants nothing",
        ),
        ("0x10 0\n0x10 1\n", "allowlist.txt:2: MSR 0x10 listed twice: line 1 lists it already"),
        ("0x10 0x1g\n", "allowlist.txt:1: malformed mask '0x1g'"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        allowlist.parse(text, "allowlist.txt")
    assert e.value.message.startswith(message), e.value.message
    assert e.value.code == errors.USAGE


def test_validate_refuses_protected_entries_from_code() -> None:
    with pytest.raises(UsageError, match=r"^merged: MSR 0xc0000101 \(IA32_GS_BASE\) holds kernel addresses"):
        allowlist.validate([Entry(0x10), Entry(0xC0000101)], "merged")
    assert allowlist.validate([Entry(0xE8), Entry(0x10)]) == [Entry(0x10), Entry(0xE8)]


def test_merge_grants_the_union_once() -> None:
    a = [Entry(0x10, 0), Entry(0x1A4, 0xC, read=False)]
    b = [Entry(0x10, 0), Entry(0x1A4, 0x3, read=False), Entry(0xE7, 0)]
    c = [Entry(0x1A4, 0, read=True)]
    assert allowlist.merge([a, b, c]) == [Entry(0x10, 0), Entry(0xE7, 0), Entry(0x1A4, 0xF, read=True)]


def test_every_profile_renders_for_every_vendor_and_size() -> None:
    assert allowlist.profiles() == ["energy", "perfmon", "power-capping", "telemetry"]
    for name in allowlist.profiles():
        for vendor in ("intel", "amd", "both"):
            for gp in (1, 4, 8, 32):
                got = entries(name, vendor=vendor, gp_counters=gp, fixed_counters=gp % 5)
                assert got, (name, vendor, gp)
                # never past the architectural counters, whose neighbours are other registers
                assert not {0xC9, 0x18E, 0x19B, 0x1A0} & got.keys(), (name, vendor, gp)


@pytest.mark.parametrize("gp,fixed", [(8, 3), (4, 4), (2, 0)])
def test_perfmon_masks_leave_out_os_int_anythread(gp: int, fixed: int) -> None:
    got = entries("perfmon", vendor="both", gp_counters=gp, fixed_counters=fixed)
    intel = [0x186 + i for i in range(gp)]
    amd = [0xC0010000 + i for i in range(4)] + [0xC0010200 + 2 * i for i in range(6)]
    for msr in intel + amd:
        assert got[msr].write_mask & (OS | INT | ANY) == 0, hex(msr)
        assert got[msr].read
    for msr in intel:
        assert got[msr].write_mask == 0x00000000FFCDFFFF
    for msr in amd:
        assert got[msr].write_mask == 0x0000000FFFCDFFFF
    if fixed:
        ctrl = got[0x38D].write_mask
        for i in range(16):
            assert ctrl >> (4 * i) & 0xF == (0x2 if i < fixed else 0), f"FIXED_CTR_CTRL field {i}: USR only"
    else:
        assert got[0x38D].write_mask == 0


def test_rapl_energy_is_its_own_profile() -> None:
    telemetry = entries("telemetry")
    energy = entries("energy")
    assert not RAPL_ENERGY & set(telemetry), "Platypus: energy counters only by the admin's choice"
    assert RAPL_UNITS <= set(telemetry)
    assert set(energy) == RAPL_ENERGY | RAPL_UNITS
    assert all(e.read and not e.write_mask for e in [*telemetry.values(), *energy.values()])
    assert not RAPL_ENERGY & set(entries("perfmon"))
    intel = entries("energy", vendor="intel")
    assert set(intel) == {0x606, 0x611, 0x619, 0x639, 0x641, 0x64D}


def test_several_profiles_merge_without_duplicates() -> None:
    text = allowlist.render_profiles(["telemetry", "energy", "telemetry"])
    assert text.startswith("# msrdrv allowlist: profiles telemetry + energy, merged")
    lines = [line.split()[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == len(set(lines))
    assert {int(m, 16) for m in lines} == set(entries("telemetry")) | set(entries("energy"))
    both = entries("telemetry", "perfmon")
    assert both[0x10] == Entry(0x10, 0) and 0x186 in both
    assert allowlist.render_profiles(["telemetry"]) == allowlist.render_profile("telemetry")


def test_kernel_refusals_are_explained() -> None:
    with pytest.raises(MsrctlError) as e:
        allowlist._check(-errno.EACCES, "loading the allowlist", [Entry(0x10), Entry(0xC0000082)])
    assert e.value.message.startswith(
        "msrdrv refused the allowlist: MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR); "
    )
    with pytest.raises(MsrctlError) as e:
        allowlist._check(-errno.EACCES, "loading the allowlist", [Entry(0x10)])
    assert "msrdrv and msrctl versions differ?" in e.value.message and e.value.code == errors.USAGE
    with pytest.raises(MsrctlError) as e:
        allowlist._check(-errno.EBADF, "loading the allowlist", [])
    assert e.value.message == (
        "loading the allowlist: the device was opened read-only (the node gives this user read access only); "
        "run it as root (sudo)"
    )
    assert e.value.code == errors.PERMISSION
    with pytest.raises(MsrctlError) as e:
        allowlist._check(-errno.EPERM, "loading the allowlist", [])
    assert e.value.message == "loading the allowlist: it needs CAP_SYS_ADMIN; run it as root (sudo)"


def test_the_telemetry_profile_lists_every_register_record_reads() -> None:
    """What record, top and the exporter read (msrctl/telemetry/msrs.py), less RAPL energy (the
    energy profile's), is in the telemetry profile: a member with it is refused nothing."""
    from msrctl.telemetry import msrs

    wanted = {r.msr for r in msrs.ALL if r.msr != msrs.TSC.msr} - msrs.ENERGY_COUNTERS
    assert wanted <= set(entries("telemetry", vendor="both")), sorted(
        hex(m) for m in wanted - set(entries("telemetry", vendor="both"))
    )
