"""The CPU model table (msrctl/data/models.json through msrctl/registers/models.py).

The expectations here are written out from the sources, not read from the table:
turbostat's model list (turbostat_pdata[] in the kernel's
tools/power/x86/turbostat/turbostat.c, 2025) and the quirks of each of its
platform_features sets, and the AMD PPRs' P-state layouts.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from msrctl.errors import UsageError
from msrctl.registers import models
from msrctl.registers.models import ModelTableError

DATA = Path(models.__file__).parent.parent / "data" / "models.json"

# turbostat_pdata[]: family 6 model -> the platform_features set turbostat uses for it.
TURBOSTAT = {
    0x1E: "nhm", 0x1F: "nhm", 0x1A: "nhm", 0x2E: "nhx", 0x25: "nhm", 0x2C: "nhm", 0x2F: "nhx",
    0x2A: "snb", 0x2D: "snx", 0x3A: "ivb", 0x3E: "ivx",
    0x3C: "hsw", 0x3F: "hsx", 0x45: "hswl", 0x46: "hswg", 0x3D: "bdw", 0x47: "bdwg", 0x4F: "bdx", 0x56: "bdx",
    0x4E: "skl", 0x5E: "skl", 0x55: "skx", 0x8E: "skl", 0x9E: "skl", 0xA5: "skl", 0xA6: "skl",
    0x66: "cnl", 0x6A: "icx", 0x6C: "icx", 0x7E: "cnl", 0x9D: "cnl", 0xA7: "cnl", 0x8C: "cnl", 0x8D: "cnl",
    0x8F: "spr", 0xCF: "spr", 0xAD: "spr", 0xAE: "spr", 0x8A: "cnl",
    0x97: "adl", 0x9A: "adl", 0xB7: "adl", 0xBA: "adl", 0xBF: "adl", 0xAC: "adl", 0xAA: "adl",
    0xC5: "adl", 0xB5: "adl", 0xC6: "adl", 0xBD: "lnl", 0xCC: "lnl",
    0x37: "slv", 0x4D: "slvd", 0x4C: "amt", 0x5C: "gmt", 0x5F: "gmtd", 0x7A: "gmtp",
    0x86: "tmtd", 0x96: "tmt", 0x9C: "tmt", 0xBE: "adl", 0xAF: "srf", 0xB6: "grr", 0xDD: "srf",
    0x57: "knl", 0x85: "knl",
}  # fmt: skip
# The quirks of those feature sets that change a figure (turbostat's field in brackets):
# the bus clock [bclk_freq], DRAM energy in 15.3 uJ [has_fixed_rapl_unit], PSys energy in
# 1 J [has_fixed_rapl_psys_unit], 2^ESU uJ energy units [has_rapl_divisor], the active-core
# counts in TURBO_RATIO_LIMIT1 [TRL_CORECOUNT], the TCC offset's width [tcc_offset_bits],
# APERF/MPERF in units of 1024 [need_perf_multiplier], core C6 at 0x3FF
# [has_msr_knl_core_c6_residency], Busy% against the base rate [enable_tsc_tweak].
BCLK = {"nhm": 133.33, "nhx": 133.33, "amt": 133.33, "slv": "fsb_freq", "slvd": "fsb_freq"}
FIXED_DRAM = {"hsx", "bdx", "skx", "icx", "knl"}
FIXED_PSYS = {"spr"}
MICROJOULES = {"slv"}
CORE_COUNTS = {"skx", "icx", "spr", "srf", "grr", "gmt", "gmtd", "tmtd"}
TCC_BITS = {"skl": 6, "cnl": 6, "adl": 6, "lnl": 6}
SCALE_1024 = {"knl"}
TSC_TWEAK = {"skl", "cnl", "adl", "lnl", "tmt"}
# CST_LIMIT_* of each set, and the name of code 2 and 7 in that table.
CST = {"nhm": ("pc3", "unlimited"), "snb": ("pc6n", "unlimited"), "hsw": ("pc3", "pc9"),
       "skx": ("pc6n", "unlimited"), "icx": ("pc6", "unlimited"), "slv": ("reserved", "pc7"),
       "amt": ("pc2", "pc7"), "knl": ("pc6n", "unlimited"), "gmt": ("pc3", "pc9")}  # fmt: skip
CST_OF = {
    **dict.fromkeys(("nhm", "nhx"), "nhm"), **dict.fromkeys(("snb", "snx", "ivb", "ivx"), "snb"),
    **dict.fromkeys(("hsw", "hsx", "hswl", "hswg", "bdw", "bdwg", "bdx", "skl", "cnl", "adl", "lnl"), "hsw"),
    **dict.fromkeys(("skx", "spr", "srf", "grr"), "skx"), "icx": "icx", "slv": "slv", "slvd": "slv", "amt": "amt",
    **dict.fromkeys(("gmt", "gmtd", "gmtp", "tmt", "tmtd"), "gmt"), "knl": "knl",
}  # fmt: skip


@pytest.mark.parametrize("model", sorted(TURBOSTAT), ids=hex)
def test_every_model_turbostat_knows_has_its_quirks(model: int) -> None:
    feat = TURBOSTAT[model]
    m = models.lookup("intel", 6, model)
    assert m.known, f"{model:#x} missing from the table"
    assert m.bclk_mhz == BCLK.get(feat, 100.0)
    assert (m.dram_energy_unit_j == 15.3e-6) == (feat in FIXED_DRAM)
    assert (m.psys_energy_unit_j == 1.0) == (feat in FIXED_PSYS)
    assert (m.energy_unit == "microjoules") == (feat in MICROJOULES)
    assert (m.turbo == "core_counts") == (feat in CORE_COUNTS)
    assert m.tcc_offset_bits == TCC_BITS.get(feat, 0)
    assert m.aperf_mperf_scale == (1024 if feat in SCALE_1024 else 1)
    assert (m.core_c6_msr == 0x3FF) == (feat == "knl")
    assert m.tsc_tweak == (feat in TSC_TWEAK)
    code2, code7 = CST[CST_OF[feat]]
    assert (m.pkg_cstate_limit_name(2), m.pkg_cstate_limit_name(7)) == (code2, code7)


def test_hybrid_models_are_the_ones_with_two_core_types() -> None:
    hybrid = {e["first"] for e in models.models() if e.get("hybrid")}
    # Lakefield, Alder/Raptor/Meteor/Arrow/Lunar/Panther Lake; not Alder Lake-N (all E-cores).
    assert hybrid == {0x8A, 0x97, 0x9A, 0xB7, 0xBA, 0xBF, 0xAA, 0xAC, 0xC5, 0xC6, 0xB5, 0xBD, 0xCC}
    assert not models.lookup("intel", 6, 0xBE).hybrid


@pytest.mark.parametrize(
    ("family", "model", "layout", "name"),
    [
        (0x17, 0x01, "fid_did", "Zen"), (0x17, 0x71, "fid_did", "Zen 2"), (0x19, 0x21, "fid_did", "Zen 3"),
        (0x19, 0x61, "fid_did", "Zen 4"), (0x1A, 0x44, "fid_5mhz", "Zen 5"), (0x18, 0x00, "fid_did", "Hygon"),
    ],
)  # fmt: skip
def test_amd_families_take_their_ppr_pstate_layout(family: int, model: int, layout: str, name: str) -> None:
    m = models.lookup("amd", family, model)
    assert m.known and m.amd_pstate == layout and name in m.name
    assert m.rapl == ("core", "pkg") and m.pkg_cstate_limit_name(0) is None


def test_energy_units_per_domain() -> None:
    esu = 14  # 2^-14 J, the usual client value
    spr = models.lookup("intel", 6, 0x8F)
    assert spr.rapl_energy_unit("dram", esu) == 2**-14  # the unit register's, since 2022's intel_rapl
    assert spr.rapl_energy_unit("psys", esu) == 1.0
    assert models.lookup("intel", 6, 0x55).rapl_energy_unit("dram", esu) == 15.3e-6
    assert models.lookup("intel", 6, 0x37).rapl_energy_unit("pkg", 5) == 32e-6  # Silvermont: 2^ESU uJ


def test_a_model_the_table_lacks_is_marked_unknown() -> None:
    m = models.lookup("intel", 6, 0xEE)
    assert not m.known and m.describe() == "a model msrctl's table does not know (intel:0x6:0xee)"
    assert m.bclk_mhz == 100.0 and m.dram_energy_unit_j is None and m.pkg_cstate_limit_name(1) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("intel:6:0x8f", ("intel", 6, 0x8F, None)),
        ("GenuineIntel:0x6:143:8", ("intel", 6, 0x8F, 8)),
        ("amd:0x19:0x61", ("amd", 0x19, 0x61, None)),
        (" AuthenticAMD : 25 : 97 ", ("amd", 0x19, 0x61, None)),
        ("hygongenuine:0x18:0", ("amd", 0x18, 0, None)),
    ],
)
def test_cpu_specs(text: str, expected: tuple[object, ...]) -> None:
    assert models.parse_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intel:6", "malformed CPU 'intel:6'"),
        ("via:6:0x0f", "unknown CPU vendor 'via'"),
        ("intel:six:0x8f", "malformed CPU family 'six'"),
        ("intel:6:0x8g", "malformed CPU model '0x8g'"),
        ("intel:6:0x100", "CPU 'intel:6:0x100' is out of range"),
        ("intel:6:0x8f:16", "CPU 'intel:6:0x8f:16' is out of range"),
    ],
)
def test_bad_cpu_specs_say_what_and_how(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        models.parse_spec(text)
    assert e.value.message.startswith(message) and "VENDOR:FAMILY:MODEL" in e.value.message


def _doc() -> dict:
    return json.loads(DATA.read_text())


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d["classes"]["skl"].update(bogus=1), "unknown quirk 'bogus'"),
        (lambda d: d["classes"]["skl"].update(tcc_offset_bits="6"), "tcc_offset_bits = '6' has the wrong type"),
        (lambda d: d["classes"]["skl"].update(turbo="buckets"), "turbo = 'buckets': not one of"),
        (lambda d: d["classes"]["skl"].update(bclk_mhz="fast"), "bclk_mhz 'fast' is neither"),
        (lambda d: d["classes"]["nhm"].update(based_on="nhx"), "based_on loops"),
        (lambda d: d["classes"]["skl"].update(based_on="nope"), "based on unknown class 'nope'"),
        (lambda d: d["classes"]["intel_base"].pop("tsc_tweak"), "lacks tsc_tweak"),
        (lambda d: d["models"].append({**d["models"][0]}), "model 0x1a is also Nehalem-EP"),
        (lambda d: d["models"].append({"vendor": "via", "family": "6", "model": "1", "class": "skl"}), "vendor 'via'"),
        (lambda d: d["models"][0].update(model="0x30-0x20"), "model range '0x30-0x20'"),
        (lambda d: d["models"][0].update({"class": "intel_base"}), "unknown class 'intel_base'"),
        (lambda d: d["pkg_cstate_limits"]["nhm"].pop(), "needs 16 entries"),
        (lambda d: d["classes"]["nhm"].update(pkg_cstate_limit="xyz"), "no pkg_cstate_limits table 'xyz'"),
    ],
)
def test_a_broken_table_is_refused_with_the_place(mutate, why: str) -> None:
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(ModelTableError, match=why):
        models.check(doc)


def test_the_shipped_table_checks() -> None:
    checked = models.check(_doc())
    assert len(checked["models"]) >= 80
    covered = {(m["vendor"], m["family"]) for m in checked["models"]}
    assert covered == {("intel", 6), ("amd", 0x17), ("amd", 0x18), ("amd", 0x19), ("amd", 0x1A)}
