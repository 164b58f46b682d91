"""The CPU model table (data/models.json): per vendor, family and model, the quirks that
change what MSRs mean (energy units per RAPL domain, bus clock, C-state counters, turbo
buckets, TCC offset, package C-state limit names, APERF/MPERF scale, hybrid cores, AMD
P-state layout).  Code asks `lookup()` for a model and reads its quirks; no model
numbers appear anywhere else.  The file is checked as it loads: a table that code
trusts must not be wrong silently.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

_DATA = Path(__file__).parent.parent / "data" / "models.json"
VENDORS = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}
CPU_SPEC_HELP = "give it as VENDOR:FAMILY:MODEL[:STEPPING], e.g. intel:6:0x8f or amd:0x19:0x61"

_QUIRKS = {  # name -> the types a value may have
    "bclk_mhz": (float, int, str),
    "energy_unit": (str,),
    "dram_energy_unit_j": (float, type(None)),
    "psys_energy_unit_j": (float, type(None)),
    "rapl": (list,),
    "core_cstates": (list,),
    "pkg_cstates": (list,),
    "core_c6_msr": (str, type(None)),
    "pkg_cstate_limit": (str, type(None)),
    "turbo": (str,),
    "turbo_msrs": (list,),
    "tcc_offset_bits": (int,),
    "aperf_mperf_scale": (int,),
    "tsc_tweak": (bool,),
    "config_tdp": (bool,),
    "perf_limit_reasons": (list,),
    "atom_core_c6_includes_c7": (bool,),
    "amd_pstate": (str, type(None)),
}
_CHOICES = {
    "energy_unit": {"inverse", "microjoules"},
    "turbo": {"ratios", "core_counts", "atom", "knl", "none"},
    "amd_pstate": {"fid_did", "fid_5mhz", None},
    "rapl": {"pkg", "pp0", "pp1", "dram", "psys", "core"},
    "core_cstates": {"c1", "c3", "c6", "c7"},
    "pkg_cstates": {"pc2", "pc3", "pc6", "pc7", "pc8", "pc9", "pc10"},
    "perf_limit_reasons": {"core", "gfx", "ring"},
}
# The RAPL domain of each energy status register (Intel, then AMD): the model table gives
# units per domain, and DRAM and PSys may count in other units than the rest.
ENERGY_DOMAINS = {0x611: "pkg", 0x619: "dram", 0x639: "pp0", 0x641: "pp1", 0x64D: "psys",
                  0xC001029A: "core", 0xC001029B: "pkg"}  # fmt: skip
_LIMIT_NAMES = {
    "pc0",
    "pc1",
    "pc2",
    "pc3",
    "pc4",
    "pc6",
    "pc6n",
    "pc6r",
    "pc7",
    "pc7s",
    "pc8",
    "pc9",
    "pc10",
    "unlimited",
}


class ModelTableError(ValueError):
    """data/models.json is malformed (a bug in the shipped file, caught by its tests)."""


@dataclass(frozen=True)
class Model:
    """One CPU model and its quirks (data/models.json's "quirks" says what each one means)."""

    vendor: str  # "intel" or "amd"
    family: int
    model: int
    stepping: int | None
    name: str  # e.g. "Sapphire Rapids"; "" when the model is not in the table
    cls: str  # the quirk class; "" when not in the table
    known: bool  # in the table: its quirks are facts, not defaults
    hybrid: bool
    bclk_mhz: float | str  # a number, or "fsb_freq"
    energy_unit: str
    dram_energy_unit_j: float | None
    psys_energy_unit_j: float | None
    rapl: tuple[str, ...]
    core_cstates: tuple[str, ...]
    pkg_cstates: tuple[str, ...]
    core_c6_msr: int | None
    pkg_cstate_limit: str | None
    turbo: str
    turbo_msrs: tuple[int, ...]
    tcc_offset_bits: int
    aperf_mperf_scale: int
    tsc_tweak: bool
    config_tdp: bool
    perf_limit_reasons: tuple[str, ...]
    atom_core_c6_includes_c7: bool
    amd_pstate: str | None

    @property
    def spec(self) -> str:
        """intel:0x6:0x8f[:stepping], as --cpu takes it."""
        text = f"{self.vendor}:{self.family:#x}:{self.model:#x}"
        return text if self.stepping is None else f"{text}:{self.stepping}"

    def describe(self) -> str:
        what = self.name or "a model msrctl's table does not know"
        return f"{what} ({self.spec})"

    def pkg_cstate_limit_name(self, code: int) -> str | None:
        """The package C-state limit that MSR_PKG_CST_CONFIG_CONTROL bits 3:0 = code names
        on this model ("reserved" for an unused code), or None when unknown here."""
        if not self.pkg_cstate_limit:
            return None
        name = _table()["pkg_cstate_limits"][self.pkg_cstate_limit][code & 0xF]
        return str(name or "reserved")

    def rapl_energy_unit(self, domain: str, esu: int) -> float:
        """Joules per count of domain's energy counter, given the unit register's ESU
        field (bits 12:8): a fixed unit where the model has one, else the register's."""
        fixed = {"dram": self.dram_energy_unit_j, "psys": self.psys_energy_unit_j}.get(domain)
        if fixed:
            return fixed
        if self.energy_unit == "microjoules":
            return (1 << esu) * 1e-6
        return 1.0 / (1 << esu)


def _model(vendor: str, family: int, model: int, stepping: int | None, entry: dict[str, Any] | None,
           quirks: dict[str, Any]) -> Model:  # fmt: skip
    q = dict(quirks)
    for key in ("rapl", "core_cstates", "pkg_cstates", "perf_limit_reasons"):
        q[key] = tuple(q[key])
    q["turbo_msrs"] = tuple(int(m, 16) for m in q["turbo_msrs"])
    q["core_c6_msr"] = int(q["core_c6_msr"], 16) if q["core_c6_msr"] else None
    if not isinstance(q["bclk_mhz"], str):
        q["bclk_mhz"] = float(q["bclk_mhz"])  # the table may write 100 for 100.0; users test for float
    name, cls = (entry["name"], entry["class"]) if entry else ("", "")
    hybrid = bool(entry and entry.get("hybrid"))
    return Model(vendor, family, model, stepping, name, cls, entry is not None, hybrid, **q)


def _fail(where: str, why: str) -> ModelTableError:
    return ModelTableError(f"{_DATA.name}: {where}: {why}")


def _number(text: Any, where: str) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise _fail(where, f"{text!r} is not a number")
    try:
        return int(text, 0)
    except ValueError:
        raise _fail(where, f"{text!r} is not a number") from None


def _resolve(classes: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name not in classes:
        raise _fail(f"class {seen[-1] if seen else name}", f"based on unknown class {name!r}")
    if name in seen:
        raise _fail(f"class {name}", "based_on loops")
    entry = classes[name]
    base = _resolve(classes, entry["based_on"], (*seen, name)) if "based_on" in entry else {}
    return {**base, **{k: v for k, v in entry.items() if k not in ("based_on", "doc")}}


def _check_quirks(name: str, quirks: dict[str, Any], limits: dict[str, Any]) -> None:
    missing = set(_QUIRKS) - set(quirks)
    if missing:
        raise _fail(f"class {name}", f"lacks {', '.join(sorted(missing))}")
    for key, value in quirks.items():
        if key not in _QUIRKS:
            raise _fail(f"class {name}", f"unknown quirk {key!r}")
        if not isinstance(value, _QUIRKS[key]) or isinstance(value, bool) != (bool in _QUIRKS[key]):
            raise _fail(f"class {name}", f"{key} = {value!r} has the wrong type")
        allowed = _CHOICES.get(key)
        values = value if isinstance(value, list) else [value]
        if allowed is not None and not set(values) <= allowed:
            raise _fail(f"class {name}", f"{key} = {value!r}: not one of {sorted(map(str, allowed - {None}))}")
    if isinstance(quirks["bclk_mhz"], str) and quirks["bclk_mhz"] != "fsb_freq":
        raise _fail(f"class {name}", f"bclk_mhz {quirks['bclk_mhz']!r} is neither a number nor fsb_freq")
    if quirks["pkg_cstate_limit"] is not None and quirks["pkg_cstate_limit"] not in limits:
        raise _fail(f"class {name}", f"no pkg_cstate_limits table {quirks['pkg_cstate_limit']!r}")


def check(doc: dict[str, Any]) -> dict[str, Any]:
    """doc with every class resolved to its full quirks and every model's numbers parsed,
    or ModelTableError naming the first fault."""
    limits = doc.get("pkg_cstate_limits", {})
    for name, table in limits.items():
        if len(table) != 16 or not set(table) <= _LIMIT_NAMES | {None}:
            raise _fail(f"pkg_cstate_limits {name}", "needs 16 entries, each a C-state name or null")
    classes = {name: _resolve(doc["classes"], name) for name in doc["classes"]}
    models: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, int], str] = {}
    for i, m in enumerate(doc["models"]):
        where = f"models[{i}] ({m.get('name', '?')})"
        if m.get("vendor") not in VENDORS:
            raise _fail(where, f"vendor {m.get('vendor')!r} is not one of {sorted(VENDORS)}")
        if m.get("class") not in classes or m["class"] in ("intel_base", "amd_base"):
            raise _fail(where, f"unknown class {m.get('class')!r}")
        _check_quirks(m["class"], classes[m["class"]], limits)
        family = _number(m.get("family"), where)
        low, _, high = str(m.get("model")).partition("-")
        first, last = _number(low, where), _number(high or low, where)
        if not 0 <= first <= last <= 0xFF:
            raise _fail(where, f"model range {m.get('model')!r} is not within 0x00-0xff")
        for number in range(first, last + 1):
            key = (m["vendor"], family, number)
            if key in seen:
                raise _fail(where, f"model {number:#x} is also {seen[key]}")
            seen[key] = m["name"]
        models.append({**m, "family": family, "first": first, "last": last})
    return {"classes": classes, "models": models, "pkg_cstate_limits": limits}


@functools.cache
def _table() -> dict[str, Any]:
    with _DATA.open(encoding="utf-8") as f:
        return check(json.load(f))


@functools.lru_cache(maxsize=64)
def lookup(vendor: str, family: int, model: int, stepping: int | None = None) -> Model:
    """The model's entry; a model the table lacks gets its vendor's base quirks with
    known=False, so that callers can say a figure rests on an assumption."""
    t = _table()
    for m in t["models"]:
        if m["vendor"] == vendor and m["family"] == family and m["first"] <= model <= m["last"]:
            return _model(vendor, family, model, stepping, m, t["classes"][m["class"]])
    base = {"intel": "intel_base", "amd": "amd_base"}.get(vendor, "intel_base")
    return _model(vendor, family, model, stepping, None, t["classes"][base])


def models() -> list[dict[str, Any]]:
    """Every table entry: vendor, family, model range (first, last), name, class."""
    return list(_table()["models"])


def parse_spec(text: str) -> tuple[str, int, int, int | None]:
    """VENDOR:FAMILY:MODEL[:STEPPING] (numbers in hex or decimal, vendor intel, amd,
    GenuineIntel or AuthenticAMD) -> (vendor, family, model, stepping)."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (3, 4):
        raise UsageError(f"malformed CPU '{text}'", "it needs a vendor, a family and a model", CPU_SPEC_HELP)
    vendor = parts[0].lower()
    vendor = {"genuineintel": "intel", "authenticamd": "amd", "hygongenuine": "amd"}.get(vendor, vendor)
    if vendor not in VENDORS:
        raise UsageError(f"unknown CPU vendor '{parts[0]}'", "msrctl knows intel and amd", CPU_SPEC_HELP)
    numbers = []
    for what, part in zip(("family", "model", "stepping"), parts[1:]):
        try:
            numbers.append(int(part, 0))
        except ValueError:
            raise UsageError(f"malformed CPU {what} '{part}'", "not a number", CPU_SPEC_HELP) from None
    if not (0 < numbers[0] <= 0x10F and 0 <= numbers[1] <= 0xFF and (len(numbers) < 3 or 0 <= numbers[2] <= 0xF)):
        raise UsageError(f"CPU '{text}' is out of range", "family 1-0x10f, model 0-0xff, stepping 0-15", CPU_SPEC_HELP)
    return vendor, numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else None


def from_spec(text: str) -> Model:
    return lookup(*parse_spec(text))
