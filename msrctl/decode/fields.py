"""Decode one register value into its named fields, each with a meaning in physical units.

Driven by the kinds the register table gives each field (see regschema.FIELD_KINDS);
a field whose meaning needs another register (RAPL units, TjMax, the TSC rate) takes
it from the Context, or says what it lacks.  A register read as 0 where 0 cannot be
right is flagged and not decoded: a zero from a register the machine does not
implement must never pass for a measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from ..registers.table import Derived, Field, Register
from . import units
from .context import WHAT, Context

Number = Union[int, float, bool, None]


@dataclass(frozen=True)
class DecodedField:
    """One field of one value: raw bits, the physical value (None if unknown) and its text."""

    name: str
    bits: str
    raw: int
    kind: str
    value: Number  # in unit; None when it cannot be computed (missing context, invalid, flagged)
    unit: str
    text: str  # the meaning, human readable, unit included
    doc: str = ""  # what the field is
    needs: str = ""  # the context item it lacked ("rapl", "tjmax", "tsc"), if any

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bits": self.bits,
            "raw": self.raw,
            "kind": self.kind,
            "value": self.value,
            "unit": self.unit,
            "text": self.text,
            "doc": self.doc,
            "needs": self.needs or None,
        }


def implausible(reg: Register, value: int) -> str:
    """Why value cannot be a real reading of reg ("" when it can): a 0 where 0 is impossible."""
    return f"reads 0: {reg.zero}" if reg.zero and value == 0 else ""


def number(v: float) -> str:
    """A value with a sensible number of digits: 80, 0.125, 976.6, 7536."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1e4:
        return f"{v:.0f}"
    return f"{v:.4g}"


_PREFIXES = ((1e-3, "m"), (1e-6, "u"), (1e-9, "n"))


def quantity(v: float, unit: str) -> str:
    """v in unit, with m/u/n prefixes for small values of W, J and s: 976.6 us."""
    if unit in ("W", "J", "s") and 0 < abs(v) < 1:
        for scale, prefix in _PREFIXES:
            if abs(v) >= scale:
                return f"{number(v / scale)} {prefix}{unit}"
    return f"{number(v)} {unit}".rstrip()


def _out(f: Field, raw: int, value: Number, unit: str, text: str, needs: str = "") -> DecodedField:
    return DecodedField(f.name, f.bits, raw, f.kind, value, unit, text, f.doc, needs)


def _missing(f: Field, raw: int, key: str, ctx: Context, unit: str) -> DecodedField:
    return _out(f, raw, None, unit, f"needs {WHAT[key]}", key)  # why: in ctx.missing


def _plain(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    if f.kind == "hex":
        return _out(f, raw, raw, "", f"{raw:#x}")
    if f.kind == "flag":
        return _out(f, raw, bool(raw), "", "yes" if raw else "no")
    if f.kind == "address":
        return _out(f, raw, raw << f.low, "", f"{raw << f.low:#x}")
    if f.kind == "enum":
        meaning = dict(f.values).get(raw) or f.other or "reserved"
        return _out(f, raw, raw, "", f"{raw} ({meaning})")
    if f.kind == "celsius":
        return _out(f, raw, raw, "C", f"{raw} C")
    if f.kind == "scaled":
        v = raw * f.scale
        return _out(f, raw, v, f.unit, quantity(v, f.unit))
    return _out(f, raw, raw, "", str(raw))


def _ratio(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    mhz = units.ratio_mhz(raw, ctx.bus_mhz)
    if raw == 0:
        return _out(f, raw, 0.0, "MHz", "0 (none)")
    return _out(f, raw, mhz, "MHz", f"{raw} x {number(ctx.bus_mhz)} MHz = {number(mhz)} MHz")


def _perf_level(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    if reg.vendor == "intel" and raw:
        # HWP levels equal bus ratios on non-hybrid parts; hybrid P-cores scale them.
        hint = f" (~{number(units.ratio_mhz(raw, ctx.bus_mhz))} MHz where levels are bus ratios)"
        return _out(f, raw, raw, "", f"{raw}{hint}")
    return _out(f, raw, raw, "", str(raw))


def _rapl(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    unit = {"power": "W", "energy": "J"}.get(f.kind, "s")
    if ctx.rapl is None:
        return _missing(f, raw, "rapl", ctx, unit)
    if f.kind == "power":
        v = raw * ctx.rapl.watts
        return _out(f, raw, v, unit, quantity(v, unit))
    if f.kind == "energy":
        joules = ctx.energy_unit(reg.msr) or ctx.rapl.joules
        v = raw * joules
        wrap = quantity((1 << f.width) * joules, "J")
        fixed = f"; {quantity(joules, 'J')} per count on this model" if joules != ctx.rapl.joules else ""
        return _out(f, raw, v, unit, f"{quantity(v, unit)} (counter; wraps at {wrap}{fixed})")
    if f.kind == "rapl_time":
        v = raw * ctx.rapl.seconds
        return _out(f, raw, v, unit, quantity(v, unit))
    if f.kind == "rapl_max_window":
        if raw == 0:
            return _out(f, raw, None, unit, "0 (not specified)")
        v = raw * ctx.rapl.seconds
        return _out(f, raw, v, unit, f"{quantity(v, unit)} ({raw} time units)")
    v = units.rapl_window(raw, ctx.rapl.seconds)
    return _out(f, raw, v, unit, f"{quantity(v, unit)} (2^{raw & 0x1F} x {1 + (raw >> 5) / 4:g} time units)")


def _rapl_unit(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    """1/2^n of the unit; on models where the model table says otherwise, what it says:
    2^ESU uJ on Silvermont, and a time unit of 0 read as 10 (976.6 us) on Intel (turbostat)."""
    unit = {"power_unit": "W", "energy_unit": "J", "time_unit": "s"}[f.kind]
    model = ctx.model
    if f.kind == "energy_unit" and model is not None and model.energy_unit == "microjoules":
        v = model.rapl_energy_unit("pkg", raw)
        return _out(f, raw, v, unit, f"2^{raw} uJ = {quantity(v, unit)} (on {_model_word(ctx)})")
    if f.kind == "time_unit" and raw == 0 and model is not None and model.vendor == "intel":
        v = 1.0 / (1 << 10)
        return _out(f, raw, v, unit, f"0, read as 1/2^10 s = {quantity(v, unit)} (the default, as turbostat does)")
    v = 1.0 / (1 << raw)
    return _out(f, raw, v, unit, f"1/2^{raw} {unit} = {quantity(v, unit)}")


def _below_tjmax(f: Field, raw: int, reg: Register, ctx: Context, value: int) -> DecodedField:
    valid = reg.field(f.valid) if f.valid else None
    if valid is not None and not valid.extract(value):
        return _out(f, raw, None, "C", f"{raw} below TjMax, but the reading is not valid ({valid.name}=0)")
    if ctx.tjmax is None:
        return _missing(f, raw, "tjmax", ctx, "C")
    t = units.temperature(ctx.tjmax, raw)
    return _out(f, raw, t, "C", f"{t} C ({raw} below TjMax {ctx.tjmax} C)")


def _model_word(ctx: Context) -> str:
    return f"{ctx.model.describe()}{', assumed' if ctx.model_assumed else ''}" if ctx.model else ""


def _tcc_offset(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    """The TCC activation offset: as wide as the model says, in force only where
    MSR_PLATFORM_INFO bit 30 says it is programmable (turbostat does the same)."""
    if ctx.model is None:
        return _out(f, raw, None, "C", f"{raw} (its width depends on the CPU model; give --model)")
    bits = ctx.model.tcc_offset_bits
    if not bits:
        return _out(f, raw, None, "C", f"no TCC offset on {_model_word(ctx)}")
    offset = raw & ((1 << bits) - 1)
    if ctx.tcc_prog is False:
        return _out(f, raw, 0, "C", f"0 C: not programmable here (MSR_PLATFORM_INFO bit 30 clear; bits hold {offset})")
    if ctx.tcc_prog is None:
        return _missing(f, raw, "tcc_prog", ctx, "C")
    return _out(f, raw, offset, "C", f"{offset} C ({bits} bits on {_model_word(ctx)})")


def _pkg_cstate_limit(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    name = ctx.model.pkg_cstate_limit_name(raw) if ctx.model else None
    if name is None:
        why = "model-specific; give --model" if ctx.model is None else f"not named for {_model_word(ctx)}"
        return _out(f, raw, None, "", f"{raw} ({why})")
    return _out(f, raw, raw, "", f"{raw} ({name})")


def _turbo_ratio(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    """One bucket of MSR_TURBO_RATIO_LIMIT(1): its ratio, and how many active cores it is
    for: byte n holds n+1 cores (n+9 in LIMIT1), except where the model says LIMIT1 holds
    each bucket's core count (Skylake-SP and later Xeons, Goldmont, ...)."""
    mhz = units.ratio_mhz(raw, ctx.bus_mhz)
    index = f.low // 8
    doc = f.doc
    if ctx.model is not None and ctx.model.turbo == "core_counts":
        if ctx.trl_counts is None:
            return _missing(f, raw, "trl_counts", ctx, "MHz")
        cores = ctx.trl_counts >> (8 * index) & 0xFF
        doc = f"bucket {index}: up to {cores} active cores"
    text = "0 (none)" if raw == 0 else f"{raw} x {number(ctx.bus_mhz)} MHz = {number(mhz)} MHz"
    return DecodedField(f.name, f.bits, raw, f.kind, mhz if raw else 0.0, "MHz", text, doc)


def _tsc_count(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    if ctx.tsc_hz is None:
        return _missing(f, raw, "tsc", ctx, "s")
    v = units.tsc_seconds(raw, ctx.tsc_hz)
    return _out(f, raw, v, "s", f"{quantity(v, 's')} at {number(ctx.tsc_hz / 1e6)} MHz")


def _activity_window(f: Field, raw: int, reg: Register, ctx: Context) -> DecodedField:
    us = units.hwp_activity_window_us(raw)
    if us is None:
        return _out(f, raw, None, "s", "0 (the hardware chooses)")
    v = us * 1e-6
    return _out(f, raw, v, "s", f"{quantity(v, 's')} ({raw & 0x7F} x 10^{raw >> 7} us)")


_KINDS: dict[str, Callable[[Field, int, Register, Context], DecodedField]] = {
    **dict.fromkeys(("int", "hex", "flag", "address", "enum", "celsius", "scaled"), _plain),
    "ratio": _ratio,
    "perf_level": _perf_level,
    **dict.fromkeys(("power", "energy", "rapl_time", "rapl_window", "rapl_max_window"), _rapl),
    "tcc_offset": _tcc_offset,
    "pkg_cstate_limit": _pkg_cstate_limit,
    "turbo_ratio": _turbo_ratio,
    **dict.fromkeys(("power_unit", "energy_unit", "time_unit"), _rapl_unit),
    "tsc_count": _tsc_count,
    "activity_window": _activity_window,
}
KINDS = (*_KINDS, "below_tjmax")  # every field kind decode handles


def _derived(d: Derived, reg: Register, value: int, ctx: Context) -> DecodedField:
    def get(name: str) -> int:
        f = reg.field(name)
        return f.extract(value) if f else 0

    if d.kind == "amd_pstate_freq":
        family = ctx.amd_family or 0x17
        if family >= 0x1A:
            fid = value & 0xFFF
            mhz = units.amd_pstate_mhz(fid, 0, family)
            return DecodedField(d.name, "11:0", fid, d.kind, mhz, "MHz", f"{number(mhz or 0)} MHz (FID {fid} x 5 MHz)")
        fid, did = get("CPU_FID"), get("CPU_DFS_ID")
        mhz = units.amd_pstate_mhz(fid, did, family)
        text = f"{number(mhz)} MHz (200 x FID {fid} / DID {did})" if mhz is not None else "off (CPU_DFS_ID 0)"
        return DecodedField(d.name, "13:0", value & 0x3FFF, d.kind, mhz, "MHz", text)
    if d.kind == "tcc_activation":
        offset = next(f for f in (decode_field(x, reg, value, ctx) for x in reg.fields) if f.kind == "tcc_offset")
        tjmax = get("TCC_ACTIVATION_TEMP")
        if offset.value is None or not tjmax:
            return DecodedField(d.name, "", tjmax, d.kind, None, "C", "TjMax less the offset: the offset is unknown")
        t = tjmax - int(offset.value)
        return DecodedField(d.name, "", t, d.kind, t, "C", f"{t} C (TjMax {tjmax} C - offset {offset.value} C)",
                            "where thermal throttling starts")  # fmt: skip
    amps = units.amd_pstate_amps(get("IDD_VALUE"), get("IDD_DIV"))
    text = f"{number(amps)} A" if amps is not None else "reserved divisor"
    return DecodedField(d.name, "31:22", value >> 22 & 0x3FF, d.kind, amps, "A", text)


def decode_field(f: Field, reg: Register, value: int, ctx: Context | None = None) -> DecodedField:
    """One field of value, decoded."""
    ctx = ctx or Context()
    raw = f.extract(value)
    if f.kind == "below_tjmax":
        return _below_tjmax(f, raw, reg, ctx, value)
    return _KINDS[f.kind](f, raw, reg, ctx)


def decode(reg: Register, value: int, ctx: Context | None = None) -> list[DecodedField]:
    """Every named field of value (then the derived values), in table order.

    A value implausible() for reg is not decoded: each field keeps its raw bits,
    with no value and a text that says so."""
    ctx = ctx or Context()
    if implausible(reg, value):
        return [
            DecodedField(f.name, f.bits, 0, f.kind, None, "", "not decoded: the register reads 0", f.doc)
            for f in reg.fields
        ]
    if reg.msr == 0x1AE and ctx.model is not None and ctx.model.turbo == "core_counts":
        return _core_counts(value, ctx)
    if reg.msr == 0x1AD and ctx.model is not None and ctx.model.turbo == "knl":
        return _knl_turbo(value, ctx)
    out = [decode_field(f, reg, value, ctx) for f in reg.fields]
    if (ctx.amd_family or 0) >= 0x1A and any(d.kind == "amd_pstate_freq" for d in reg.derived):
        out = _fam1ah_pstate(out, value)
    return out + [_derived(d, reg, value, ctx) for d in reg.derived]


def _fam1ah_pstate(fields: list[DecodedField], value: int) -> list[DecodedField]:
    """Family 1Ah's P-state definition: CpuFid is bits 11:0 and there is no divisor (PPR for
    family 1Ah); the other fields keep their 17h places."""
    fid = value & 0xFFF
    own = DecodedField("CPU_FID", "11:0", fid, "int", fid, "", str(fid), "core frequency ID (x 5 MHz)")
    rest = [f for f in fields if f.name not in ("CPU_FID", "CPU_DFS_ID")]
    return [own, *rest]


def _knl_turbo(value: int, ctx: Context) -> list[DecodedField]:
    """Xeon Phi's MSR_TURBO_RATIO_LIMIT (SDM vol. 4, Knights Landing; turbostat's
    dump_knl_turbo_ratio_limits): bucket 0's active cores in bits 7:1 and ratio in 15:8,
    then per bucket a core-count increase (5 bits) and a ratio decrease (3 bits)."""
    cores, ratio = (value & 0xFF) >> 1, value >> 8 & 0xFF
    buckets = [(cores, ratio)]
    for shift in range(16, 64, 8):
        cores += value >> shift & 0x1F
        ratio -= value >> (shift + 5) & 0x7
        buckets.append((cores, ratio))
    out = []
    for i, (c, r) in enumerate(buckets):
        mhz = units.ratio_mhz(r, ctx.bus_mhz)
        text = f"up to {c} active cores: {r} x {number(ctx.bus_mhz)} MHz = {number(mhz)} MHz"
        out.append(
            DecodedField(f"BUCKET{i}", "", r, "turbo_ratio", mhz, "MHz", text, f"bucket {i} (Xeon Phi encoding)")
        )
    return out


def _core_counts(value: int, ctx: Context) -> list[DecodedField]:
    """MSR_TURBO_RATIO_LIMIT1 where the model makes it the active-core count of each bucket
    of MSR_TURBO_RATIO_LIMIT (SDM vol. 4, Skylake-SP and later; turbostat TRL_CORECOUNT)."""
    out = []
    for i in range(8):
        cores = value >> (8 * i) & 0xFF
        bits = f"{8 * i + 7}:{8 * i}"
        doc = f"bucket {i} of MSR_TURBO_RATIO_LIMIT (core counts on {_model_word(ctx)})"
        out.append(DecodedField(f"BUCKET{i}_CORES", bits, cores, "int", cores, "", f"up to {cores} active cores", doc))
    return out
