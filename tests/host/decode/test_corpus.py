"""msrctl's decoding against real machines (tests/corpus/machines/): every raw register value
a public report showed, decoded for that machine's CPU model, must give each figure that an
independent decoder (turbostat, mostly) printed for it, to the precision it printed.

Where the decoder itself was wrong by the SDM or the PPR, the machine's file says so under
`wrong` with the manual's figures, and those are checked instead.  The oracle is the
other tool's output, never msrctl's own code run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from msrctl import decode
from msrctl.decode import DecodedField
from msrctl.decode.context import Context, for_model, from_register, needs, source
from msrctl.registers import models
from msrctl.registers import table as registers

CORPUS = Path(__file__).resolve().parents[3] / "tests" / "corpus" / "machines"
MACHINES = sorted(CORPUS.glob("*.json"))

Fields = dict[str, DecodedField]


def load(path: Path) -> dict[str, Any]:
    """A machine's file, its printed numbers kept as Decimals (their precision is the tolerance)."""
    return json.loads(path.read_text(), parse_float=Decimal, parse_int=Decimal)


def context(machine: dict[str, Any], reg: registers.Register) -> Context:
    """What decoding reg needs, taken from the machine's model and its other registers."""
    cpu = machine["cpu"]
    stepping = cpu.get("stepping")
    model = models.lookup(cpu["vendor"], int(cpu["family"]), int(cpu["model"]),
                          None if stepping is None else int(stepping))  # fmt: skip
    ctx = for_model(model)
    if "tjmax_c" in machine.get("assumed", {}):  # what the decoder said it guessed, given to msrctl too
        ctx = ctx.with_item("tjmax", int(machine["assumed"]["tjmax_c"]))
    for key in needs(reg, model):
        msr = source(key, reg.vendor)
        other = machine["registers"].get(f"{msr:#x}") if msr is not None else None
        if other and other.get("raw"):
            ctx = from_register(ctx, key, msr, int(other["raw"], 16))
    return ctx


def value(fields: Fields, name: str) -> Any:
    return fields[name].value


def raw(fields: Fields, name: str) -> Any:
    return fields[name].raw


def tcc_offset(fields: Fields, model: models.Model) -> Any:
    """The offset msrctl decodes; where MSR_PLATFORM_INFO was not shown (so whether it is in
    force is unknown), the offset bits as wide as the model says: what was printed."""
    f = fields["TCC_OFFSET"]
    if f.value is not None or f.needs != "tcc_prog":
        return f.value
    return f.raw & ((1 << model.tcc_offset_bits) - 1)


def turbo(fields: Fields, model: models.Model) -> dict[int, float]:
    """{active cores: MHz} of each bucket msrctl decoded (a bucket's label says its cores)."""
    out = {}
    for f in fields.values():
        if f.kind != "turbo_ratio" and not (f.kind == "ratio" and f.name.startswith("RATIO_")):
            continue
        if f.name.startswith("BUCKET"):  # Xeon Phi: the cores are in the text
            cores = int(f.text.split("up to ")[1].split()[0])
        elif "bucket" in f.doc:
            cores = int(f.doc.split("up to ")[1].split()[0])
        else:
            cores = int(f.name[len("RATIO_") : -1])
        if f.value:
            out.setdefault(cores, f.value)
    return out


def pl(prefix: str) -> dict[str, Callable[[Fields], Any]]:
    return {
        f"{prefix}_w": lambda f: value(f, prefix.upper()),
        f"{prefix}_s": lambda f: value(f, f"{prefix.upper()}_TIME"),
        f"{prefix}_enabled": lambda f: value(f, f"{prefix.upper()}_EN"),
        f"{prefix}_clamp": lambda f: value(f, f"{prefix.upper()}_CLAMP"),
    }


UNITS = {
    "power_unit_w": lambda f: value(f, "POWER_UNITS"),
    "energy_unit_j": lambda f: value(f, "ENERGY_UNITS"),
    "time_unit_s": lambda f: value(f, "TIME_UNITS"),
}
POWER_INFO = {
    "tdp_w": lambda f: value(f, "THERMAL_SPEC_POWER"),
    "min_w": lambda f: value(f, "MIN_POWER"),
    "max_w": lambda f: value(f, "MAX_POWER"),
    "max_window_s": lambda f: value(f, "MAX_TIME_WINDOW") or 0.0,  # 0: not specified (turbostat prints 0 s)
}
ONE_LIMIT = {
    "locked": lambda f: value(f, "LOCK"),
    "limit_w": lambda f: value(f, "LIMIT"),
    "window_s": lambda f: value(f, "TIME"),
    "enabled": lambda f: value(f, "ENABLE"),
    "clamp": lambda f: value(f, "CLAMP"),
}
TDP_LEVEL = {
    "ratio": lambda f: raw(f, "TDP_RATIO"),
    "tdp_units": lambda f: raw(f, "PKG_TDP"),
    "min_units": lambda f: raw(f, "PKG_MIN_PWR"),
    "max_units": lambda f: raw(f, "PKG_MAX_PWR"),
}
PSTATE = {
    "enabled": lambda f: value(f, "PSTATE_EN"),
    "mhz": lambda f: value(f, "CORE_FREQ"),
    "fid": lambda f: raw(f, "CPU_FID"),
    "did": lambda f: raw(f, "CPU_DFS_ID"),
    "vid": lambda f: raw(f, "CPU_VID"),
}
# Per MSR, each printed figure's name -> the same figure from msrctl's decoded fields.
FIGURES: dict[int, dict[str, Callable[[Fields], Any]]] = {
    0x606: UNITS,
    0xC0010299: UNITS,
    0x610: {"locked": lambda f: value(f, "LOCK"), **pl("pl1"), **pl("pl2")},
    0x65C: {"locked": lambda f: value(f, "LOCK"), **pl("pl1"), **pl("pl2")},
    0x614: POWER_INFO,
    0x61C: POWER_INFO,
    0x618: ONE_LIMIT,
    0x638: ONE_LIMIT,
    0x640: ONE_LIMIT,
    0x1A2: {
        "tjmax_c": lambda f: value(f, "TCC_ACTIVATION_TEMP"),
        "target_c": lambda f: value(f, "TCC_ACTIVATION"),
    },
    0xCE: {
        "base_ratio": lambda f: raw(f, "MAX_NON_TURBO_RATIO"),
        "base_mhz": lambda f: value(f, "MAX_NON_TURBO_RATIO"),
        "max_efficiency_ratio": lambda f: raw(f, "MAX_EFFICIENCY_RATIO"),
        "max_efficiency_mhz": lambda f: value(f, "MAX_EFFICIENCY_RATIO"),
    },
    0xE2: {
        "pkg_cstate_limit": lambda f: raw(f, "PKG_CSTATE_LIMIT"),
        "pkg_cstate_limit_name": lambda f: f["PKG_CSTATE_LIMIT"].text.split("(")[-1].rstrip(")"),
        "locked": lambda f: value(f, "CFG_LOCK"),
    },
    0x19C: {"core_temp_c": lambda f: value(f, "DIGITAL_READOUT")},
    0x1B1: {"pkg_temp_c": lambda f: value(f, "DIGITAL_READOUT")},
    0x1B0: {"epb": lambda f: raw(f, "POWER_POLICY")},
    0x771: {
        "highest": lambda f: raw(f, "HIGHEST_PERF"),
        "guaranteed": lambda f: raw(f, "GUARANTEED_PERF"),
        "efficient": lambda f: raw(f, "MOST_EFFICIENT_PERF"),
        "lowest": lambda f: raw(f, "LOWEST_PERF"),
    },
    0x774: {
        "min": lambda f: raw(f, "MIN_PERF"),
        "max": lambda f: raw(f, "MAX_PERF"),
        "desired": lambda f: raw(f, "DESIRED_PERF"),
        "epp": lambda f: raw(f, "EPP"),
        "window": lambda f: raw(f, "ACTIVITY_WINDOW"),
        "package_control": lambda f: raw(f, "PACKAGE_CONTROL"),
    },
    0x648: {"base_ratio": lambda f: raw(f, "BASE_RATIO")},
    0x649: TDP_LEVEL,
    0x64A: TDP_LEVEL,
    0x64B: {"level": lambda f: raw(f, "TDP_LEVEL"), "locked": lambda f: value(f, "LOCK")},
    0x64C: {"ratio": lambda f: raw(f, "MAX_NON_TURBO_RATIO"), "locked": lambda f: value(f, "LOCK")},
    0x601: {"pl4_a": lambda f: value(f, "CURRENT_LIMIT"), "locked": lambda f: value(f, "LOCK")},
    0x1FC: {"c1e_autopromote": lambda f: value(f, "C1E_ENABLE")},
    0x620: {"min_mhz": lambda f: value(f, "MIN_RATIO"), "max_mhz": lambda f: value(f, "MAX_RATIO")},
    0x621: {"mhz": lambda f: value(f, "CURRENT_RATIO")},
    **{0xC0010064 + i: PSTATE for i in range(8)},
    0xC00102B0: {
        "highest": lambda f: raw(f, "HIGHEST_PERF"),
        "nominal": lambda f: raw(f, "NOMINAL_PERF"),
        "lowest_nonlinear": lambda f: raw(f, "LOWNONLIN_PERF"),
        "lowest": lambda f: raw(f, "LOWEST_PERF"),
    },
    0xC0010015: {"boost_disabled": lambda f: value(f, "CPB_DIS")},
}
TURBO_MSRS = {0x1AD, 0x1AE, 0x1AF, 0x650}


def tolerance(printed: Decimal) -> float:
    """Half a unit of the last digit the decoder printed (it rounds; 15 W is 14.5-15.5)."""
    exponent = printed.as_tuple().exponent
    return 0.5 * 10.0 ** int(exponent) if isinstance(exponent, int) else 0.0


def agrees(ours: Any, printed: Any) -> bool:
    if isinstance(printed, bool) or isinstance(printed, str):
        return ours == printed
    if ours is None or isinstance(ours, str):
        return False
    return abs(float(ours) - float(printed)) <= tolerance(printed) + 1e-9 * abs(float(printed))


def checks(path: Path) -> list[tuple[str, Any, Any, bool]]:
    """(what, msrctl's figure, the printed one, agree?) for every printed figure of a machine."""
    machine = load(path)
    cpu = machine["cpu"]
    model = models.lookup(cpu["vendor"], int(cpu["family"]), int(cpu["model"]))
    out = []
    for key, entry in machine["registers"].items():
        msr = int(key, 16)
        reg = registers.by_number(msr)
        assert reg is not None, f"{path.name}: {key} is not in msrctl's register table"
        if entry.get("raw") is None:
            continue  # a figure with no raw value checks nothing
        fields = {f.name: f for f in decode.decode(reg, int(entry["raw"], 16), context(machine, reg))}
        printed = dict(entry.get("printed", {}))
        printed.update(machine.get("wrong", {}).get(key, {}).get("sdm", {}))  # the manual, where the tool erred
        for name, figure in printed.items():
            what = f"{key} {name}"
            if name == "turbo_mhz":
                ours = turbo(fields, model)
                for cores, mhz in figure.items():
                    out.append((f"{what}[{cores}]", ours.get(int(cores)), mhz, agrees(ours.get(int(cores)), mhz)))
            elif msr == 0x1A2 and name == "tcc_offset_c":
                ours = tcc_offset(fields, model)
                out.append((what, ours, figure, agrees(ours, figure)))
            elif name == "core_counts":
                ours = [f.value for f in fields.values()]
                out.append((what, ours, figure, ours == [int(c) for c in figure]))
            else:
                assert msr in FIGURES and name in FIGURES[msr], f"{path.name}: no mapping for {what}"
                ours = FIGURES[msr][name](fields)
                out.append((what, ours, figure, agrees(ours, figure)))
    return out


@pytest.mark.parametrize("path", MACHINES, ids=lambda p: p.stem)
def test_every_printed_figure_agrees(path: Path) -> None:
    bad = [f"{what}: msrctl {ours}, printed {printed}" for what, ours, printed, ok in checks(path) if not ok]
    assert not bad, bad


@pytest.mark.parametrize("path", MACHINES, ids=lambda p: p.stem)
def test_every_machine_cites_its_source_and_model(path: Path) -> None:
    machine = json.loads(path.read_text())
    assert machine["source"]["url"].startswith("https://") and machine["source"]["what"]
    cpu = machine["cpu"]
    model = models.lookup(cpu["vendor"], cpu["family"], cpu["model"])
    assert model.known, f"{path.name}: {model.describe()}"
    assert any(r.get("raw") and r.get("printed") for r in machine["registers"].values())


def test_the_corpus_covers_what_issue_27_asks() -> None:
    """At least 25 machines: 8 Intel client and server generations, an Atom, a hybrid part, a
    Xeon with turbo-bucket core counts, 3 AMD Zen generations."""
    machines = [json.loads(p.read_text()) for p in MACHINES]
    entries = [models.lookup(m["cpu"]["vendor"], m["cpu"]["family"], m["cpu"]["model"]) for m in machines]
    intel = {e.cls for e in entries if e.vendor == "intel"}
    assert len(machines) >= 25
    assert len(intel - {"slv", "slvd", "amt", "gmt", "gmtd", "gmtp", "tmt", "tmtd", "knl"}) >= 8, intel
    assert intel & {"slv", "slvd", "amt", "gmt", "gmtd", "gmtp", "tmt", "tmtd"}  # an Atom
    assert any(e.hybrid for e in entries)
    assert any(e.turbo == "core_counts" and "0x1ae" in m["registers"] for e, m in zip(entries, machines))
    zen = {e.name.split(" (")[0] for e in entries if e.vendor == "amd"}
    assert len(zen) >= 3, zen


def test_the_comparison_catches_a_wrong_figure(tmp_path: Path) -> None:
    """The check itself: a machine whose printed TDP is off by one watt fails."""
    good = load(CORPUS / "intel-client-kabylake-i7-7500u.json")
    assert all(ok for *_, ok in checks(CORPUS / "intel-client-kabylake-i7-7500u.json"))
    text = (CORPUS / "intel-client-kabylake-i7-7500u.json").read_text().replace('"tdp_w": 15', '"tdp_w": 16')
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    failed = [what for what, _, _, ok in checks(bad) if not ok]
    assert failed == ["0x614 tdp_w"] and good["registers"]["0x614"]["printed"]["tdp_w"] == 15
    assert agrees(15.0, Decimal("15")) and not agrees(15.6, Decimal("15")) and agrees(0.000061, Decimal("0.000061"))
