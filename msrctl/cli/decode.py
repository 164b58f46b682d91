"""`msrctl decode`: every named field of a register value, in physical units.

Without VALUE it reads REG live, and with it every register some field needs
(RAPL units, TjMax, the TSC rate), for all CPUs asked in one batch.  With VALUE
it decodes that number; what it needs from other registers comes from options,
else from this machine's registers when the device is there, else the field
says what it lacks.  What depends on the CPU model (energy units per domain, bus
clock, turbo buckets, C-state limit names, TCC offset, P-state layout) comes
from --model, else from this machine's CPU, which a given value is then said to
assume.  Annotations stay evaluable by typer 0.7 (no __future__).
"""

import errno
import sys
from typing import Any, Optional

import typer

from ..errors import MsrctlError, UsageError

_OPTION = {"rapl": "--units", "tjmax": "--tjmax", "tsc": "--tsc-mhz"}  # else --with MSR=VALUE
_ERRNO_TEXT = {
    errno.EIO: "faulted (not implemented here?)",
    errno.EACCES: "refused: not in the allowlist",
    errno.EPERM: "refused",
    errno.ENXIO: "the CPU is offline",
}


def decode(
    ctx: typer.Context,
    reg_arg: str = typer.Argument(..., metavar="REG", help="Register: name (MSR_PKG_POWER_LIMIT) or number."),
    value_arg: Optional[str] = typer.Argument(
        None, metavar="VALUE", help="Decode this value instead of reading REG (0x.., decimal, 0b..)."
    ),
    all_cpus: bool = typer.Option(False, "-a", "--all", help="All online CPUs (one ioctl for all)."),
    cpus: Optional[str] = typer.Option(
        None, "-p", "--cpu", "--processor", metavar="CPUS", help="CPU list, e.g. 0,2-5 (default 0)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records (cpu, value, context, fields)."),
    units: Optional[str] = typer.Option(
        None, "--units", metavar="RAW", help="RAPL units as the raw MSR_RAPL_POWER_UNIT value (e.g. 0xa0e03)."
    ),
    tjmax: Optional[int] = typer.Option(None, "--tjmax", metavar="C", min=1, max=255, help="TjMax in degrees C."),
    tsc_mhz: Optional[float] = typer.Option(
        None, "--tsc-mhz", metavar="MHZ", min=1, help="TSC frequency, for C-state residency counters."
    ),
    bclk: Optional[float] = typer.Option(
        None, "--bclk", metavar="MHZ", min=1, help="Bus clock for ratios (default: the model's, else 100 MHz)."
    ),
    given: "Optional[list[str]]" = typer.Option(  # noqa: B008 (typer idiom)
        None, "--with", metavar="MSR=VALUE", help="Another register's value for the context (repeatable)."
    ),
    model_spec: Optional[str] = typer.Option(
        None,
        "--model",
        "--cpu-model",
        metavar="VENDOR:FAMILY:MODEL[:STEPPING]",
        help="The CPU the value comes from, e.g. intel:6:0x8f or amd:0x19:0x61 (default: this machine's).",
    ),
) -> None:
    """Decode every named field of a register into physical units (W, J, s, MHz, C, ...).

    Without VALUE, read REG live on CPU 0 (or -p/-a), with the registers its fields need
    (RAPL units, TjMax, TSC rate) in the same batch.  With VALUE, decode that number; what
    it needs comes from --units/--tjmax/--tsc-mhz, else from this machine's registers.
    Model-dependent meanings (energy units, bus clock, turbo buckets, C-state limits,
    TCC offset, AMD P-states) follow --model, else this machine's CPU."""
    from ..decode.context import for_model, from_register
    from ..device.cpus import targets as cpu_targets
    from ..registers import table as registers
    from ..registers.names import parse_msr
    from ..registers.parse import parse_value

    number = parse_msr(reg_arg)
    reg = registers.by_number(number)
    value = parse_value(value_arg) if value_arg is not None else None
    if value is not None and all_cpus:
        raise UsageError(
            "-a does not apply with VALUE", "a given value is decoded once", "leave out -a, or VALUE to read live"
        )
    targets = cpu_targets(all_cpus, cpus)
    if value is not None and len(targets) > 1:
        raise UsageError(
            f"-p {cpus} names several CPUs", "with VALUE, -p picks the one CPU to read context from", "give one CPU"
        )
    base = for_model(_model(model_spec), bclk, assumed=model_spec is None and value is not None)
    if units is not None:
        raw = parse_value(units, "--units value")
        if raw == 0:
            raise UsageError(
                "--units 0 is not a RAPL unit value",
                "a real MSR_RAPL_POWER_UNIT is never 0",
                "give the register's value, e.g. --units 0xa0e03",
            )
        base = from_register(base, "rapl", 0x606, raw)
    base = _with(base, reg, given or [])
    if tjmax is not None:
        base = base.with_item("tjmax", tjmax)
    if tsc_mhz is not None:
        base = base.with_item("tsc", tsc_mhz * 1e6)
    reads = _Reads(str(ctx.find_root().obj), number, reg, base, targets, live=value is None)
    rows = reads.rows(value)
    if as_json:
        import json

        typer.echo(json.dumps([_record(reg, number, row) for row in rows], indent=2))
    else:
        for block in _blocks(reg, number, rows, given=value is not None):
            typer.echo(block)
    failures = [row["error"] for row in rows if "error" in row]
    for f in failures:  # one line per CPU that failed, as `msrctl read` does
        sys.stderr.write(f"msrctl: error: {f.message}\n")
    if failures:
        raise typer.Exit(failures[0].code)


class _Reads:
    """REG and its context registers for each target CPU, read in one batch."""

    def __init__(self, path: str, number: int, reg: Any, base: Any, targets: "list[int]", live: bool) -> None:
        from ..decode import needs, source

        self.path, self.number, self.reg, self.base, self.targets, self.live = path, number, reg, base, targets, live
        given = set(base.missing)  # given through an option, though unusable: not read again
        wanted = [k for k in (needs(reg, base.model) if reg is not None else []) if not base.has(k) and k not in given]
        self.context = [(k, source(k, reg.vendor)) for k in wanted]

    def _hint(self, key: str, why: str) -> str:
        from ..decode import source

        msr = source(key, self.reg.vendor)
        return f"{why}; give {_OPTION.get(key) or f'--with {msr:#x}=VALUE'}"

    def rows(self, value: Optional[int]) -> "list[dict[str, Any]]":
        """One dict per CPU: cpu, value and ctx (a decode Context), or error (an MsrctlError)."""
        from ..admin.execute import execute, failure
        from ..device.ops import Op

        ops = []
        for cpu in self.targets:
            if self.live:
                ops.append(Op("read", cpu, self.number))
            ops += [Op("read", cpu, msr) for _, msr in self.context if msr is not None and msr != self.number]
        results: list[Any] = []
        refusals = None
        down = ""
        if ops:
            try:
                results, refusals = execute(self.path, ops)
            except MsrctlError as e:
                if self.live:
                    raise
                down = e.why  # only context was wanted: decode without it
        by_op = {(r.op.cpu, r.op.msr): r for r in results}
        rows = []
        for cpu in self.targets[:1] if not self.live else self.targets:
            row: dict[str, Any] = {"cpu": cpu if self.live else None}
            if self.live:
                r = by_op[(cpu, self.number)]
                if r.err:
                    from ..device.cpus import online_cpus

                    name = self.reg.name if self.reg is not None else None
                    row["error"] = failure(r, name, refusals, online_cpus())
                    row["errno"] = r.err
                    rows.append(row)
                    continue
                row["value"] = r.value
            else:
                row["value"] = value
            row["ctx"] = self._context(cpu, row["value"], by_op, down)
            rows.append(row)
        return rows

    def _context(self, cpu: int, value: int, by_op: "dict[Any, Any]", down: str) -> Any:
        from ..decode import from_register

        ctx = self.base
        for key, msr in self.context:
            if msr is None:
                ctx = ctx.without(key, self._hint(key, "no register gives it for this vendor"))
            elif msr == self.number:
                ctx = from_register(ctx, key, msr, value)
            elif (cpu, msr) not in by_op:
                ctx = ctx.without(key, self._hint(key, f"{_name(msr)} not read: {down}"))
            else:
                r = by_op[(cpu, msr)]
                if r.err:
                    why = _ERRNO_TEXT.get(r.err, errno.errorcode.get(r.err, str(r.err)))
                    ctx = ctx.without(key, self._hint(key, f"{_name(msr)} {why}"))
                else:
                    ctx = from_register(ctx, key, msr, r.value)
                    if key in ctx.missing:
                        ctx = ctx.without(key, self._hint(key, ctx.missing[key]))
        return ctx


def _name(msr: int) -> str:
    from ..registers.table import name_of

    return name_of(msr) or f"MSR {msr:#x}"


def _with(base: Any, reg: Any, given: "list[str]") -> Any:
    """base with the context items that --with MSR=VALUE registers hold."""
    from ..decode import from_register, source
    from ..decode.context import WHAT
    from ..registers.names import parse_msr
    from ..registers.parse import parse_value

    for text in given:
        name, sep, raw = text.partition("=")
        if not sep:
            raise UsageError(f"malformed --with '{text}'", "it needs MSR=VALUE", "e.g. --with 0x1ae=0x1c1a18120e0a0604")
        msr, value = parse_msr(name), parse_value(raw, "--with value")
        keys = [k for k in WHAT if reg is not None and source(k, reg.vendor) == msr]
        if not keys:
            raise UsageError(
                f"--with {name}: nothing to take from it",
                f"decoding {reg.name if reg is not None else 'this register'} needs nothing from {_name(msr)}",
                "leave it out",
            )
        for key in keys:
            base = from_register(base, key, msr, value)
    return base


def _model(spec: Optional[str]) -> Any:
    """The model table's entry for --model, or for this machine's CPU."""
    from ..registers import models

    if spec is not None:
        return models.from_spec(spec)
    from ..telemetry import cpu

    return cpu.read().model_entry()


# Field kinds whose meaning the CPU model changes (and MSR_TURBO_RATIO_LIMIT1 as a whole).
_MODEL_KINDS = {"energy", "ratio", "perf_level", "tcc_offset", "pkg_cstate_limit", "turbo_ratio"}


def _model_note(reg: Any, ctx: Any) -> Optional[str]:
    """Which model the decoding took, where the register's meaning depends on it."""
    depends = reg.msr == 0x1AE or reg.derived or any(f.kind in _MODEL_KINDS for f in reg.fields)
    if not depends or ctx.model is None:
        return None
    if ctx.model_assumed:
        return f"model: {ctx.model.describe()}, assumed (this machine's); give --model VENDOR:FAMILY:MODEL for another"
    if not ctx.model.known:
        return f"model: {ctx.model.describe()}: its quirks are assumed; give --model if it is another"
    return f"model: {ctx.model.describe()}"


def _label(reg: Any, number: int) -> str:
    return f"{reg.name} ({number:#x})" if reg is not None else f"MSR {number:#x}"


def _blocks(reg: Any, number: int, rows: "list[dict[str, Any]]", given: bool) -> "list[str]":
    """Text, one block per group of CPUs whose value and decoding are the same."""
    from ..decode import decode, implausible
    from ..decode.context import WHAT
    from ..device.cpus import cpu_list_text

    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if "error" in row:
            continue
        fields = decode(reg, row["value"], row["ctx"]) if reg is not None else []
        lacking = {f.needs: row["ctx"].missing.get(f.needs, "not given") for f in fields if f.needs}
        key = (row["value"], tuple(f.text for f in fields), tuple(lacking.items()))
        group = groups.setdefault(
            key, {"value": row["value"], "fields": fields, "cpus": [], "lacking": lacking, "ctx": row["ctx"]}
        )
        group["cpus"].append(row["cpu"])
    out = []
    for group in groups.values():
        value, fields, cpus = group["value"], group["fields"], group["cpus"]
        if given:
            out.append(f"{_label(reg, number)} = {value:#x}")
        else:
            word = "CPU" if len(cpus) == 1 else "CPUs"
            out.append(f"{_label(reg, number)} on {word} {cpu_list_text(cpus)} = {value:#x}")
        if reg is None:
            out.append("  not in the register table: no fields to decode")
        elif implausible(reg, value):
            out.append(f"  {implausible(reg, value)} (0 is not a plausible value of this register; not decoded)")
        elif not fields:
            out.append("  no fields in the register table: the raw value is all there is")
        else:
            out.extend(_lines(fields))
            out.extend(f"  ({WHAT[k]}: {why})" for k, why in group["lacking"].items())
            note = _model_note(reg, group["ctx"])
            if note:
                out.append(f"  ({note})")
    return out


def _lines(fields: "list[Any]") -> "list[str]":
    raws = [str(f.raw) if ":" not in f.bits else f"{f.raw:#x}" for f in fields]
    nw = max(len(f.name) for f in fields)
    bw = max(len(f.bits) for f in fields)
    rw = max(len(r) for r in raws)
    lines = []
    for f, raw in zip(fields, raws):
        meaning = f"{f.doc}: {f.text}" if f.doc else f.text
        lines.append(f"  {f.name:<{nw}}  {f.bits:>{bw}}  {raw:<{rw}}  {meaning}")
    return lines


def _record(reg: Any, number: int, row: "dict[str, Any]") -> "dict[str, Any]":
    from ..decode import decode, implausible

    rec: dict[str, Any] = {"cpu": row["cpu"], "msr": f"{number:#x}", "name": reg.name if reg is not None else None}
    if "error" in row:
        rec.update(error=row["error"].message, errno=row["errno"])
        return rec
    value = row["value"]
    rec.update(value=value, hex=f"{value:#x}")
    ctx = row["ctx"]
    rec["implausible"] = (implausible(reg, value) or None) if reg is not None else None
    rec["context"] = {
        "rapl": None
        if ctx.rapl is None
        else {"watts": ctx.rapl.watts, "joules": ctx.rapl.joules, "seconds": ctx.rapl.seconds},
        "tjmax": ctx.tjmax,
        "tsc_hz": ctx.tsc_hz,
        "bus_mhz": ctx.bus_mhz,
        "model": None
        if ctx.model is None
        else {
            "cpu": ctx.model.spec,
            "name": ctx.model.name or None,
            "known": ctx.model.known,
            "assumed": ctx.model_assumed,
        },
        "missing": ctx.missing,
    }
    rec["fields"] = [f.as_dict() for f in decode(reg, value, ctx)] if reg is not None else []
    return rec
