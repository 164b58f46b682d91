"""The bundled register table: well-formed, unambiguous, right numbers."""

from __future__ import annotations

import pytest

from msrctl.errors import UsageError
from msrctl.registers import table as registers

KNOWN = {
    "TSC": 0x10,
    "IA32_APIC_BASE": 0x1B,
    "IA32_FEATURE_CONTROL": 0x3A,
    "IA32_TSC_ADJUST": 0x3B,
    "IA32_SPEC_CTRL": 0x48,
    "IA32_PMC0": 0xC1,
    "IA32_PMC7": 0xC8,
    "IA32_MPERF": 0xE7,
    "IA32_APERF": 0xE8,
    "IA32_ARCH_CAPABILITIES": 0x10A,
    "IA32_PERFEVTSEL0": 0x186,
    "IA32_PERFEVTSEL7": 0x18D,
    "IA32_PERF_STATUS": 0x198,
    "IA32_PERF_CTL": 0x199,
    "IA32_CLOCK_MODULATION": 0x19A,
    "IA32_THERM_STATUS": 0x19C,
    "IA32_MISC_ENABLE": 0x1A0,
    "IA32_TEMPERATURE_TARGET": 0x1A2,
    "IA32_PACKAGE_THERM_STATUS": 0x1B1,
    "IA32_PAT": 0x277,
    "IA32_FIXED_CTR0": 0x309,
    "IA32_FIXED_CTR2": 0x30B,
    "IA32_FIXED_CTR_CTRL": 0x38D,
    "IA32_PERF_GLOBAL_STATUS": 0x38E,
    "IA32_PERF_GLOBAL_CTRL": 0x38F,
    "IA32_PERF_GLOBAL_OVF_CTRL": 0x390,
    "MSR_RAPL_POWER_UNIT": 0x606,
    "MSR_PKG_POWER_LIMIT": 0x610,
    "MSR_PKG_ENERGY_STATUS": 0x611,
    "MSR_DRAM_ENERGY_STATUS": 0x619,
    "MSR_PP0_ENERGY_STATUS": 0x639,
    "MSR_PP1_ENERGY_STATUS": 0x641,
    "IA32_PKRS": 0x6E1,
    "EFER": 0xC0000080,
    "STAR": 0xC0000081,
    "LSTAR": 0xC0000082,
    "CSTAR": 0xC0000083,
    "FMASK": 0xC0000084,
    "MSR_SYSCALL_MASK": 0xC0000084,
    "FS_BASE": 0xC0000100,
    "GS_BASE": 0xC0000101,
    "KERNEL_GS_BASE": 0xC0000102,
    "TSC_AUX": 0xC0000103,
    "MSR_K7_EVNTSEL0": 0xC0010000,
    "MSR_K7_PERFCTL3": 0xC0010003,
    "MSR_K7_PERFCTR0": 0xC0010004,
    "MSR_K7_PERFCTR3": 0xC0010007,
    "MSR_K7_HWCR": 0xC0010015,
    "MSR_AMD_PERF_STATUS": 0xC0010063,
    "MSR_F15H_PERF_CTL0": 0xC0010200,
    "MSR_F15H_PERF_CTR0": 0xC0010201,
    "MSR_F15H_PERF_CTL5": 0xC001020A,
    "MSR_F15H_PERF_CTR5": 0xC001020B,
    "MSR_AMD_RAPL_POWER_UNIT": 0xC0010299,
    "MSR_AMD_CORE_ENERGY_STATUS": 0xC001029A,
    "MSR_AMD_PKG_ENERGY_STATUS": 0xC001029B,
}


@pytest.mark.parametrize(("name", "msr"), sorted(KNOWN.items()))
def test_known_numbers(name: str, msr: int) -> None:
    assert registers.lookup(name).msr == msr
    assert registers.lookup(name.lower()).msr == msr


def test_prefixes_and_case() -> None:
    for spelling in ("apic_base", "IA32_APIC_BASE", "ia32_apic_base", "MSR_IA32_APICBASE", "apic-base"):
        assert registers.lookup(spelling).name == "IA32_APIC_BASE"


def test_no_two_registers_share_a_name() -> None:
    owners: dict[str, int] = {}
    for reg in registers.table():
        for name in (reg.name, *reg.aliases):
            key = registers.normalize(name)
            assert owners.setdefault(key, reg.msr) == reg.msr, f"{name} names two registers"


def test_table_is_well_formed() -> None:
    numbers = [r.msr for r in registers.table()]
    assert len(numbers) == len(set(numbers)), "an MSR appears twice"
    for reg in registers.table():
        assert reg.vendor in registers.VENDORS
        assert reg.description and "{n}" not in reg.name + reg.description
        assert 0 <= reg.msr <= 0xFFFFFFFF
        seen: set[int] = set()
        for f in reg.fields:
            assert 0 <= f.low <= f.high <= 63, f"{reg.name}.{f.name}"
            bits = set(range(f.low, f.high + 1))
            assert not bits & seen, f"{reg.name}.{f.name} overlaps another field"
            seen |= bits


def test_apic_base_fields() -> None:
    reg = registers.lookup("apic_base")
    assert {f.name: (f.high, f.low) for f in reg.fields} == {
        "BSP": (8, 8),
        "EXTD": (10, 10),
        "EN": (11, 11),
        "BASE": (51, 12),
    }
    assert reg.field("bsp") is not None and reg.field("nope") is None


def test_suggestions() -> None:
    assert registers.suggest("APIC_BAS")[0] == "IA32_APIC_BASE"
    assert "IA32_TSC_AUX" in registers.suggest("tsc_aux_")
    with pytest.raises(UsageError) as e:
        registers.lookup("zzzzzz")
    assert "did you mean" not in e.value.message
    assert "`msrctl registers` lists the names" in e.value.message


def test_by_number_and_select() -> None:
    assert registers.name_of(0x1B) == "IA32_APIC_BASE"
    assert registers.name_of(0x12345) is None
    amd = registers.select("amd")
    assert all(r.vendor in ("amd", "both") for r in amd)
    assert any(r.name == "MSR_K7_HWCR" for r in amd)
    assert not any(r.vendor == "intel" for r in amd)
    assert [r.name for r in registers.select(pattern="tsc_aux")] == ["IA32_TSC_AUX"]


@pytest.mark.parametrize(
    ("pattern", "expect"),
    [
        ("IA32_", "IA32_APIC_BASE"),  # a prefix alone matches the names that have it
        ("ia32_apic", "IA32_APIC_BASE"),
        ("0x1b", "IA32_APIC_BASE"),  # by number, in every spelling the CLI takes
        ("27", "IA32_APIC_BASE"),
        ("1bh", "IA32_APIC_BASE"),
        ("thermal throttling", "MSR_TEMPERATURE_TARGET"),  # description search
        ("pstate_status", "MSR_AMD_PERF_STATUS"),  # through an alias
    ],
)
def test_registers_search(pattern: str, expect: str) -> None:
    assert expect in [r.name for r in registers.select(None, pattern)]


def test_search_by_number_is_exact() -> None:
    assert [r.name for r in registers.select(None, "0x10")] == ["IA32_TIME_STAMP_COUNTER"]
    assert registers.select(None, "0x12345") == []


def test_sdm_and_common_names() -> None:
    assert registers.lookup("MSR_TEMPERATURE_TARGET").name == "MSR_TEMPERATURE_TARGET"  # the SDM's name
    assert registers.lookup("IA32_TEMPERATURE_TARGET").msr == 0x1A2
    assert registers.lookup("IA32_PERF_GLOBAL_STATUS_RESET").msr == 0x390  # the SDM's newer name
    assert registers.lookup("MSR_AMD_PSTATE_STATUS").msr == 0xC0010063


def test_every_name_in_the_profiles_is_one_read_knows() -> None:
    """The allowlist profiles name each MSR in a comment: `msrctl read NAME` must take that name."""
    import re

    from msrctl.admin import allowlist

    seen = 0
    for profile in allowlist.profiles():
        for line in allowlist.render_profile(profile).splitlines():
            m = re.match(r"\s*(0x[0-9a-fA-F]+)\s+\S+\s+#\s*([A-Z][A-Z0-9_]+)\b", line)
            if m:
                assert registers.lookup(m.group(2)).msr == int(m.group(1), 16), line
                seen += 1
    assert seen >= 10
