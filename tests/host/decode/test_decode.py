"""msrctl.decode against values worked out from the Intel SDM (vol. 3B ch. 14, vol. 4) and AMD PPRs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from msrctl import decode
from msrctl.decode import Context, DecodedField, rapl_units
from msrctl.registers import models
from msrctl.registers import schema as regschema
from msrctl.registers import table as registers
from msrctl.registers.schema import TableError

ROOT = Path(__file__).resolve().parents[3]
# SDM: MSR_RAPL_POWER_UNIT's usual value: power 1/2^3 W, energy 1/2^14 J (61 uJ), time 1/2^10 s (976 us).
SKL_UNITS = 0xA0E03


def fields(name: str, value: int, ctx: Context | None = None) -> dict[str, DecodedField]:
    return {f.name: f for f in decode.decode(registers.lookup(name), value, ctx)}


def test_rapl_units_of_the_sdm_default() -> None:
    u = rapl_units(SKL_UNITS)
    assert (u.watts, u.joules, u.seconds) == (0.125, 2**-14, 2**-10)
    f = fields("MSR_RAPL_POWER_UNIT", SKL_UNITS)
    assert f["POWER_UNITS"].text == "1/2^3 W = 125 mW"
    assert f["ENERGY_UNITS"].text == "1/2^14 J = 61.04 uJ"
    assert f["TIME_UNITS"].text == "1/2^10 s = 976.6 us"
    assert f["ENERGY_UNITS"].value == pytest.approx(61.035e-6, rel=1e-4)
    amd = fields("MSR_AMD_RAPL_POWER_UNIT", SKL_UNITS)  # AMD's RAPL_PWR_UNIT has the same layout
    assert amd["ENERGY_UNITS"].value == 2**-14


def test_rapl_time_window() -> None:
    unit = 2**-10
    assert decode.rapl_time_window(14, 3, unit) == pytest.approx(28.0)  # 2^14 * 1.75 * 976.5625 us
    assert decode.rapl_window(0x6E, unit) == pytest.approx(28.0)  # Z=3 in bits 6:5, Y=14 in 4:0
    assert decode.rapl_time_window(0, 0, unit) == unit
    assert decode.rapl_time_window(1, 1, unit) == pytest.approx(2.5 * unit)


# PL1 15 W (120 units) enabled, clamped, window Y=14 Z=3 (28 s); PL2 25 W (200 units) enabled,
# window Y=1 Z=1 (2.441 ms); locked.
PL1 = 120 | 1 << 15 | 1 << 16 | 0x6E << 17
PL2 = 200 | 1 << 15 | 0x21 << 17
PKG_LIMIT = PL2 << 32 | PL1 | 1 << 63


def test_power_limit() -> None:
    limits = decode.power_limit(PKG_LIMIT, rapl_units(SKL_UNITS))
    assert limits.locked
    assert (limits.pl1.watts, limits.pl1.enabled, limits.pl1.clamp) == (15.0, True, True)
    assert limits.pl1.seconds == pytest.approx(28.0)
    assert limits.pl2 is not None
    assert (limits.pl2.watts, limits.pl2.enabled, limits.pl2.clamp) == (25.0, True, False)
    assert limits.pl2.seconds == pytest.approx(2 * 1.25 * 2**-10)
    # DRAM/PP0/PP1 layout: one limit, lock at bit 31
    one = decode.power_limit(PL1 | 1 << 31, rapl_units(SKL_UNITS), two_limits=False)
    assert one.pl2 is None and one.locked and one.pl1.watts == 15.0


def test_pkg_power_limit_decoded() -> None:
    f = fields("MSR_PKG_POWER_LIMIT", PKG_LIMIT, Context(rapl=rapl_units(SKL_UNITS)))
    assert (f["PL1"].value, f["PL1"].unit, f["PL1"].text) == (15.0, "W", "15 W")
    assert f["PL1_EN"].text == "yes" and f["PL1_CLAMP"].value is True
    assert f["PL1_TIME"].text == "28 s (2^14 x 1.75 time units)"
    assert f["PL2"].text == "25 W" and f["PL2_CLAMP"].text == "no"
    assert f["PL2_TIME"].text.startswith("2.441 ms")
    assert f["LOCK"].value is True


def test_power_fields_without_units_say_what_they_need() -> None:
    ctx = Context().without("rapl", "MSR_RAPL_POWER_UNIT reads 0: not implemented here?")
    f = fields("MSR_PKG_POWER_LIMIT", PKG_LIMIT, ctx)
    assert (f["PL1"].value, f["PL1"].text, f["PL1"].needs) == (None, "needs RAPL units", "rapl")
    assert f["PL1_EN"].needs == ""  # flags need nothing


def test_temperature() -> None:
    assert decode.temperature(100, 0x2A) == 58
    valid = 1 << 31 | 0x2A << 16 | 1 << 27
    f = fields("IA32_THERM_STATUS", valid, Context(tjmax=100))
    assert (f["DIGITAL_READOUT"].value, f["DIGITAL_READOUT"].unit) == (58, "C")
    assert f["DIGITAL_READOUT"].text == "58 C (42 below TjMax 100 C)"
    assert f["RESOLUTION"].text == "1 C"
    stale = fields("IA32_THERM_STATUS", 0x2A << 16, Context(tjmax=100))["DIGITAL_READOUT"]
    assert stale.value is None and "not valid" in stale.text
    pkg = fields("IA32_PACKAGE_THERM_STATUS", 0x2A << 16, Context(tjmax=95))  # no valid bit in the package's
    assert pkg["DIGITAL_READOUT"].value == 53
    target = fields("MSR_TEMPERATURE_TARGET", 100 << 16 | 5 << 24)  # no model: the offset's width is unknown
    assert (target["TCC_ACTIVATION_TEMP"].value, target["TCC_OFFSET"].value) == (100, None)
    assert "give --model" in target["TCC_OFFSET"].text and target["TCC_ACTIVATION"].value is None
    skl = Context(model=models.lookup("intel", 6, 0x5E), tcc_prog=True)  # 6 bits (turbostat tcc_offset_bits)
    target = fields("MSR_TEMPERATURE_TARGET", 100 << 16 | 5 << 24, skl)
    assert (target["TCC_OFFSET"].value, target["TCC_ACTIVATION"].value) == (5, 95)
    interrupt = fields("IA32_THERM_INTERRUPT", 10 << 8 | 1 << 15, Context(tjmax=100))
    assert interrupt["THRESHOLD1"].value == 90 and interrupt["THRESHOLD1_INT"].value is True


def test_ratios_and_platform_info() -> None:
    assert decode.ratio_mhz(0x18) == 2400.0
    info = 0x18 << 8 | 1 << 28 | 8 << 40
    f = fields("MSR_PLATFORM_INFO", info)
    assert (f["MAX_NON_TURBO_RATIO"].value, f["MAX_NON_TURBO_RATIO"].unit) == (2400.0, "MHz")
    assert f["MAX_NON_TURBO_RATIO"].text == "24 x 100 MHz = 2400 MHz"
    assert f["MAX_EFFICIENCY_RATIO"].value == 800.0
    assert f["PROG_RATIO_LIMIT"].value is True and f["PROG_TDP_LIMIT"].value is False
    assert fields("MSR_PLATFORM_INFO", info, Context(bus_mhz=133.33))["MAX_NON_TURBO_RATIO"].value == pytest.approx(
        3199.92
    )
    status = fields("IA32_PERF_STATUS", 0x1F00 | 0x1800 << 32)
    assert status["RATIO"].value == 3100.0
    assert status["CORE_VOLTAGE"].text == "0.75 V"  # 0x1800 / 8192 V


def test_turbo_ratio_limits() -> None:
    value = 0x2020212122222424  # 1C..8C: 36 36 34 34 33 33 32 32
    assert decode.turbo_ratio_limits(value) == {
        1: 3600.0,
        2: 3600.0,
        3: 3400.0,
        4: 3400.0,
        5: 3300.0,
        6: 3300.0,
        7: 3200.0,
        8: 3200.0,
    }
    assert decode.turbo_ratio_limits(0x1A1B, first_cores=9) == {9: 2700.0, 10: 2600.0}
    f = fields("MSR_TURBO_RATIO_LIMIT", value)
    assert f["RATIO_1C"].text == "36 x 100 MHz = 3600 MHz" and f["RATIO_8C"].value == 3200.0


def test_hwp_request_and_capabilities() -> None:
    # min 8, max 0x24, desired 0 (autonomous), EPP 0x80, activity window 10 * 10^3 us
    value = 0x08 | 0x24 << 8 | 0x80 << 24 | (3 << 7 | 10) << 32
    f = fields("IA32_HWP_REQUEST", value)
    assert (f["MIN_PERF"].value, f["MAX_PERF"].value, f["DESIRED_PERF"].value) == (8, 0x24, 0)
    assert f["MAX_PERF"].text == "36 (~3600 MHz where levels are bus ratios)"
    assert f["EPP"].text == "128 (balance_performance)"
    assert f["ACTIVITY_WINDOW"].value == pytest.approx(0.01) and f["ACTIVITY_WINDOW"].text.startswith("10 ms")
    assert fields("IA32_HWP_REQUEST", 0x40 << 24)["EPP"].text == "64 (between 0 (performance) and 255 (energy saving))"
    assert fields("IA32_HWP_REQUEST", 0)["ACTIVITY_WINDOW"].text == "0 (the hardware chooses)"
    assert decode.hwp_activity_window_us(0x7F | 7 << 7) == 1270 * 10**6  # the SDM's maximum: 1270 s
    caps = fields("IA32_HWP_CAPABILITIES", 0x01_0A_1C_26)
    assert [caps[n].value for n in ("HIGHEST_PERF", "GUARANTEED_PERF", "MOST_EFFICIENT_PERF", "LOWEST_PERF")] == [
        0x26,
        0x1C,
        0x0A,
        0x01,
    ]
    assert fields("IA32_ENERGY_PERF_BIAS", 6)["POWER_POLICY"].text == "6 (normal)"


def test_amd_pstate_definitions() -> None:
    # PPR 17h/19h: CoreCOF = 200 * CpuFid / CpuDfsId MHz; DfsId 8 divides by 1, so FID 0x90 is 3600 MHz.
    assert decode.amd_pstate_mhz(0x90, 8) == 3600.0
    assert decode.amd_pstate_mhz(0x8C, 0x0A) == 2800.0
    assert decode.amd_pstate_mhz(0x90, 0) is None  # divisor 0: off
    assert decode.amd_pstate_mhz(750, 0, family=0x1A) == 3750.0  # family 1Ah: FID x 5 MHz, no divisor
    assert decode.amd_pstate_amps(30, 1) == 3.0 and decode.amd_pstate_amps(30, 3) is None
    value = 1 << 63 | 1 << 30 | 30 << 22 | 0x48 << 14 | 8 << 8 | 0x90
    f = fields("MSR_AMD_PSTATE_DEF0", value)
    assert (f["CPU_FID"].value, f["CPU_DFS_ID"].value, f["CPU_VID"].value) == (0x90, 8, 0x48)
    assert (f["CORE_FREQ"].value, f["CORE_FREQ"].unit) == (3600.0, "MHz")
    assert f["CORE_FREQ"].text == "3600 MHz (200 x FID 144 / DID 8)"
    assert (f["IDD"].value, f["IDD"].text) == (3.0, "3 A")
    assert f["PSTATE_EN"].value is True
    zen5 = fields("MSR_AMD_PSTATE_DEF1", 1 << 63 | 750, Context(amd_family=0x1A))
    assert zen5["CORE_FREQ"].value == 3750.0


def test_microcode_revision() -> None:
    f = fields("IA32_BIOS_SIGN_ID", 0xF0 << 32)  # Intel: revision in 63:32
    assert (f["MICROCODE_REV"].value, f["MICROCODE_REV"].text) == (0xF0, "0xf0")
    assert fields("MSR_AMD64_PATCH_LEVEL", 0x0A201016)["PATCH_LEVEL"].text == "0xa201016"


def test_energy_counters_and_residency() -> None:
    f = fields("MSR_PKG_ENERGY_STATUS", 16384, Context(rapl=rapl_units(SKL_UNITS)))["ENERGY"]
    assert (f.value, f.unit) == (1.0, "J")
    assert f.text == "1 J (counter; wraps at 262144 J)"
    res = fields("MSR_PKG_C6_RESIDENCY", 3_000_000_000, Context(tsc_hz=2.0e9))["COUNT"]
    assert (res.value, res.text) == (1.5, "1.5 s at 2000 MHz")
    assert fields("MSR_PKG_PERF_STATUS", 2048, Context(rapl=rapl_units(SKL_UNITS)))["THROTTLED_TIME"].value == 2.0


def test_apic_base_address() -> None:
    f = fields("IA32_APIC_BASE", 0xFEE00900)
    assert f["BSP"].value is True and f["EN"].value is True and f["EXTD"].value is False
    assert (f["BASE"].value, f["BASE"].text) == (0xFEE00000, "0xfee00000")


def test_a_zero_where_zero_is_impossible_is_not_a_measurement() -> None:
    reg = registers.lookup("MSR_RAPL_POWER_UNIT")
    assert decode.implausible(reg, 0) == "reads 0: not implemented here?"
    assert decode.implausible(reg, SKL_UNITS) == ""
    out = decode.decode(reg, 0)
    assert out and all(f.value is None and f.text.startswith("not decoded") for f in out)
    for name in ("MSR_PKG_ENERGY_STATUS", "MSR_AMD_PKG_ENERGY_STATUS", "IA32_MPERF", "MSR_PLATFORM_INFO"):
        assert decode.implausible(registers.lookup(name), 0)
    assert not decode.implausible(registers.lookup("IA32_APIC_BASE"), 0)


def test_context_from_registers() -> None:
    ctx = decode.from_register(Context(), "rapl", 0x606, SKL_UNITS)
    assert ctx.rapl == rapl_units(SKL_UNITS)
    ctx = decode.from_register(Context(), "rapl", 0x606, 0)
    assert ctx.rapl is None and ctx.missing == {"rapl": "MSR_RAPL_POWER_UNIT reads 0: not implemented here?"}
    assert decode.from_register(Context(), "tjmax", 0x1A2, 100 << 16).tjmax == 100
    assert "TjMax as 0" in decode.from_register(Context(), "tjmax", 0x1A2, 5 << 24).missing["tjmax"]
    assert decode.from_register(Context(), "tsc", 0xCE, 0x18 << 8).tsc_hz == 2.4e9
    assert decode.needs(registers.lookup("MSR_PKG_POWER_LIMIT")) == ["rapl"]
    assert decode.needs(registers.lookup("IA32_THERM_STATUS")) == ["tjmax"]
    assert decode.needs(registers.lookup("IA32_APIC_BASE")) == []
    assert decode.source("rapl", "amd") == 0xC0010299 and decode.source("rapl", "intel") == 0x606


def test_every_context_a_field_needs_has_a_register() -> None:
    for reg in registers.table():
        for key in decode.needs(reg):
            src = decode.source(key, reg.vendor)
            assert src is not None and registers.by_number(src) is not None, (reg.name, key)


def test_every_kind_has_a_decoder() -> None:
    assert set(decode.KINDS) == set(regschema.FIELD_KINDS)
    for reg in registers.table():
        out = decode.decode(reg, 0x5A5A5A5A5A5A5A5A, Context(rapl=rapl_units(SKL_UNITS), tjmax=100, tsc_hz=1e9))
        assert [f.name for f in out] == [f.name for f in reg.fields] + [d.name for d in reg.derived]
        for f in out:
            assert f.text and isinstance(f.as_dict(), dict)
            json.dumps(f.as_dict())


@pytest.mark.parametrize(
    ("v", "unit", "text"),
    [(0.125, "W", "125 mW"), (2**-14, "J", "61.04 uJ"), (2**-10, "s", "976.6 us"), (28.0, "s", "28 s"),
     (123456.7, "J", "123457 J"), (3.5e-9, "s", "3.5 ns"), (0.0, "W", "0 W"), (58, "C", "58 C")],
)  # fmt: skip
def test_quantity(v: float, unit: str, text: str) -> None:
    assert decode.quantity(v, unit) == text


# --- the table: the registers issue 13 names, and malformed entries fail -----------------

ISSUE_13 = {
    "MSR_PLATFORM_INFO": 0xCE,
    "MSR_TURBO_RATIO_LIMIT": 0x1AD,
    "MSR_TURBO_RATIO_LIMIT1": 0x1AE,
    "MSR_TURBO_RATIO_LIMIT2": 0x1AF,
    "IA32_BIOS_SIGN_ID": 0x8B,
    "IA32_ENERGY_PERF_BIAS": 0x1B0,
    "IA32_PM_ENABLE": 0x770,
    "IA32_HWP_CAPABILITIES": 0x771,
    "IA32_HWP_REQUEST_PKG": 0x772,
    "IA32_HWP_INTERRUPT": 0x773,
    "IA32_HWP_REQUEST": 0x774,
    "IA32_HWP_STATUS": 0x777,
    "MSR_PKG_PERF_STATUS": 0x613,
    "MSR_PKG_POWER_INFO": 0x614,
    "MSR_DRAM_POWER_LIMIT": 0x618,
    "MSR_DRAM_PERF_STATUS": 0x61B,
    "MSR_DRAM_POWER_INFO": 0x61C,
    "MSR_PP0_POWER_LIMIT": 0x638,
    "MSR_PP0_POLICY": 0x63A,
    "MSR_PP1_POWER_LIMIT": 0x640,
    "MSR_PP1_POLICY": 0x642,
    "MSR_PLATFORM_POWER_LIMIT": 0x65C,
    "PSYS_POWER_LIMIT": 0x65C,
    "MSR_CORE_PERF_LIMIT_REASONS": 0x64F,
    "MSR_CORE_PERF_LIMIT_REASONS_HSW": 0x690,
    "MSR_GFX_PERF_LIMIT_REASONS": 0x6B0,
    "MSR_RING_PERF_LIMIT_REASONS": 0x6B1,
    "IA32_THERM_INTERRUPT": 0x19B,
    "IA32_PACKAGE_THERM_INTERRUPT": 0x1B2,
    "MSR_CORE_C1_RES": 0x660,
    "MSR_CORE_C3_RESIDENCY": 0x3FC,
    "MSR_CORE_C6_RESIDENCY": 0x3FD,
    "MSR_CORE_C7_RESIDENCY": 0x3FE,
    "MSR_PKG_C2_RESIDENCY": 0x60D,
    "MSR_PKG_C3_RESIDENCY": 0x3F8,
    "MSR_PKG_C6_RESIDENCY": 0x3F9,
    "MSR_PKG_C7_RESIDENCY": 0x3FA,
    "MSR_PKG_C8_RESIDENCY": 0x630,
    "MSR_PKG_C9_RESIDENCY": 0x631,
    "MSR_PKG_C10_RESIDENCY": 0x632,
    "IA32_MCG_CAP": 0x179,
    "IA32_MCG_STATUS": 0x17A,
    "IA32_MCG_CTL": 0x17B,
    "MSR_IA32_UCODE_REV": 0x8B,
    "EPB": 0x1B0,
    "MSR_AMD_PSTATE_DEF7": 0xC001006B,
    "MSR_AMD_MPERF_READ_ONLY": 0xC00000E7,
    "MSR_AMD_APERF_READ_ONLY": 0xC00000E8,
    "RAPL_PWR_UNIT": 0xC0010299,
    "MSR_AMD_CPPC_REQ": 0xC00102B3,
}


@pytest.mark.parametrize(("name", "msr"), sorted(ISSUE_13.items()))
def test_issue_13_registers(name: str, msr: int) -> None:
    assert registers.lookup(name).msr == msr


def test_ratio_fields_of_perf_status_and_ctl() -> None:
    for name in ("IA32_PERF_STATUS", "IA32_PERF_CTL"):
        ratio = registers.lookup(name).field("RATIO")
        assert ratio is not None and (ratio.high, ratio.low, ratio.kind) == (15, 8, "ratio")


GOOD = {"name": "X", "msr": "0x10", "vendor": "intel", "description": "d"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"A": {"bits": "3:0", "kind": "watts"}}}, "field A: unknown kind 'watts'"),
        ({"fields": {"A": "64"}}, "field A: bits 64 are not within 63..0"),
        ({"fields": {"A": "3:7"}}, "field A: bits 3:7 are not within 63..0 with hi >= lo"),
        ({"fields": {"A": "3:0", "B": "4:3"}}, "field B overlaps another field"),
        ({"fields": {"A": {"bits": "3:0", "kind": "enum"}}}, "an enum needs 'values'"),
        ({"fields": {"A": {"bits": "1:0", "kind": "enum", "values": {"4": "x"}}}}, "enum value '4' is not a number"),
        ({"fields": {"A": {"bits": "1:0", "kind": "flag"}}}, "a flag is one bit"),
        ({"fields": {"A": {"bits": "7:0", "kind": "scaled", "scale": 2}}}, "a scaled field needs a 'unit'"),
        ({"fields": {"A": {"bits": "7:0", "kind": "int", "unit": "V"}}}, "'unit' belongs to kind scaled"),
        ({"fields": {"A": {"bits": "7:0", "kind": "rapl_window"}}}, "a rapl_window field is 7 bits wide"),
        ({"fields": {"A": {"bits": "6:0", "kind": "below_tjmax", "valid": "B"}}}, "'valid' must name a flag field"),
        ({"fields": {"A": {"bit": "6:0"}}}, "unknown key(s) bit"),
        ({"fields": {"a": "1"}}, "field name 'a' is not upper case"),
        ({"derived": [{"name": "F", "kind": "amd_pstate_freq"}]}, "derived F needs field(s) CPU_FID, CPU_DFS_ID"),
        ({"vendor": "via"}, "vendor 'via' is not one of"),
        ({"msr": "1b"}, "msr '1b' is not hex"),
        ({"zero": ""}, "'zero' must say what a 0 read means"),
        ({"count": 2}, "an entry with a count needs {n} in its name"),
        ({"colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_malformed_entries_fail(change: dict, message: str) -> None:
    with pytest.raises(TableError) as e:
        registers.expand({**GOOD, **change})
    assert str(e.value).startswith("entry 'X': ")
    assert message in str(e.value)


def test_a_key_given_twice_fails() -> None:
    text = '{"name": "X", "msr": "0x10", "fields": {"A": "1", "A": "2"}}'
    with pytest.raises(TableError, match="key 'A' appears twice"):
        json.loads(text, object_pairs_hook=regschema.no_duplicates)


def test_good_entry_and_shorthand() -> None:
    (reg,) = registers.expand({**GOOD, "fields": {"A": "0", "B": "7:4", "C": {"bits": "15:8", "kind": "ratio"}}})
    assert [(f.name, f.kind) for f in reg.fields] == [("A", "flag"), ("B", "int"), ("C", "ratio")]


def test_every_package_is_shipped() -> None:
    """A subpackage missing from pyproject.toml would be left out of the wheel and the .deb."""
    line = re.search(r"^packages = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert line is not None
    listed = set(re.findall(r'"([\w.]+)"', line.group(1)))
    found = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "msrctl").rglob("__init__.py")}
    assert found | {"msrctl.data", "msrctl.templates"} <= listed, found - listed
