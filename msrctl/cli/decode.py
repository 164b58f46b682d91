"""`msrctl decode`: every named field of a register value, in physical units.

Without VALUE it reads REG live, and with it every register some field needs
(RAPL units, TjMax, the TSC rate), for all CPUs asked in one batch.  With VALUE
it decodes that number; what it needs from other registers comes from options,
else from this machine's registers when the device is there, else the field
says what it lacks.  Annotations stay evaluable by typer 0.7 (no __future__).
"""

import errno
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import MsrctlError, UsageError

_OPTION = {"rapl": "--units", "tjmax": "--tjmax", "tsc": "--tsc-mhz"}
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
    bclk: float = typer.Option(100.0, "--bclk", metavar="MHZ", min=1, help="Bus clock for ratios."),
) -> None:
    """Decode every named field of a register into physical units (W, J, s, MHz, C, ...).

    Without VALUE, read REG live on CPU 0 (or -p/-a), with the registers its fields need
    (RAPL units, TjMax, TSC rate) in the same batch.  With VALUE, decode that number; what
    it needs comes from --units/--tjmax/--tsc-mhz, else from this machine's registers."""
    from ..decode import Context, rapl_units
    from ..registers import table as registers
    from ..registers.names import parse_msr
    from ..registers.parse import parse_cpus, parse_value

    number = parse_msr(reg_arg)
    reg = registers.by_number(number)
    value = parse_value(value_arg) if value_arg is not None else None
    if value is not None and all_cpus:
        raise UsageError(
            "-a does not apply with VALUE", "a given value is decoded once", "leave out -a, or VALUE to read live"
        )
    if all_cpus and cpus is not None:
        raise UsageError("-a and -p conflict", "-a already means every online CPU", "give one of them")
    base = Context(bus_mhz=bclk, amd_family=_amd_family() if reg is not None and reg.derived else None)
    if units is not None:
        raw = parse_value(units, "--units value")
        if raw == 0:
            raise UsageError(
                "--units 0 is not a RAPL unit value",
                "a real MSR_RAPL_POWER_UNIT is never 0",
                "give the register's value, e.g. --units 0xa0e03",
            )
        base = base.with_item("rapl", rapl_units(raw))
    if tjmax is not None:
        base = base.with_item("tjmax", tjmax)
    if tsc_mhz is not None:
        base = base.with_item("tsc", tsc_mhz * 1e6)
    if all_cpus:
        from ..device.cpus import online_cpus

        targets = online_cpus()
    else:
        targets = parse_cpus(cpus if cpus is not None else "0")
        if value is not None and len(targets) > 1:
            raise UsageError(
                f"-p {cpus} names several CPUs", "with VALUE, -p picks the one CPU to read context from", "give one CPU"
            )
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
        wanted = [k for k in (needs(reg) if reg is not None else []) if not base.has(k)]
        self.context = [(k, source(k, reg.vendor)) for k in wanted]

    def _hint(self, key: str, why: str) -> str:
        return f"{why}; give {_OPTION[key]}"

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


def _amd_family() -> Optional[int]:
    """This machine's CPU family if it is AMD (or Hygon), for the P-state layout; else None."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    info = dict(line.split(":", 1) for line in text.splitlines()[:20] if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    if info.get("vendor_id") not in ("AuthenticAMD", "HygonGenuine"):
        return None
    try:
        return int(info.get("cpu family", ""))
    except ValueError:
        return None


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
        group = groups.setdefault(key, {"value": row["value"], "fields": fields, "cpus": [], "lacking": lacking})
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
        "missing": ctx.missing,
    }
    rec["fields"] = [f.as_dict() for f in decode(reg, value, ctx)] if reg is not None else []
    return rec
