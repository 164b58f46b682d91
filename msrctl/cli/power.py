"""`msrctl power show|set`: RAPL power limits per package in watts and seconds.

`show` reads every domain's registers on one CPU per package in one batch.
`set` reads them, checks the request against the package's power range and
lock bit (msrctl/telemetry/power.py), then writes every package in ONE batch of masked
writes, each followed by its read-back, so only the limit fields change and the
result printed is what the register holds afterwards.  Annotations stay
evaluable by typer 0.7 (no __future__).
"""

import re
import sys
from typing import Any, Optional

import typer

from .. import errors
from ..errors import MsrctlError, UsageError

app = typer.Typer(
    help="RAPL power limits (PL1/PL2, time windows) per package, in watts and seconds.",
    no_args_is_help=True,
    add_completion=False,  # built on its own (cli/lazy.py): no completion options, no rich, as the root
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_DOMAIN_HELP = "package, dram, pp0 (cores), pp1 (uncore/graphics) or psys (platform)."
_QUANTITY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-zµ]*)\s*", re.IGNORECASE)
_WATTS = {"": 1.0, "w": 1.0, "mw": 1e-3, "kw": 1e3}
_SECONDS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60.0, "min": 60.0}


def parse_quantity(text: str, what: str, scale: "dict[str, float]", example: str) -> float:
    """'95', '95W', '2.44ms' -> a float in the base unit (W or s)."""
    m = _QUANTITY.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in scale:
        units = ", ".join(u for u in scale if u)
        raise UsageError(f"malformed {what} '{text}'", f"not a number with a unit ({units})", f"write e.g. {example}")
    return float(m.group(1)) * scale[unit]


def _domains(names: "list[str]") -> "list[Any]":
    from ..telemetry.power import DOMAINS

    for name in names:
        if name not in DOMAINS:
            raise UsageError(f"unknown power domain '{name}'", f"the domains are {', '.join(DOMAINS)}", "give one")
    return [DOMAINS[n] for n in dict.fromkeys(names)]


def _packages(spec: Optional[str]) -> "dict[int, int]":
    """package -> the first online CPU in it, for the packages asked (all by default)."""
    from ..registers.parse import parse_cpus
    from ..telemetry import topology

    have = dict(sorted((c.package, c.cpu) for c in topology.read().packages()))
    if spec is None:
        return have
    want = parse_cpus(spec)
    missing = [p for p in want if p not in have]
    if missing:
        raise MsrctlError(
            f"no package {missing[0]}",
            f"this machine's packages are {', '.join(map(str, have))}",
            "give one of those with --package",
            code=errors.NO_CPU,
        )
    return {p: have[p] for p in want}


def _read(ctx: typer.Context, packages: "dict[int, int]", domains: "list[Any]") -> "dict[tuple[int, int], Any]":
    """(cpu, msr) -> Result for every register the domains need, one batch."""
    from ..admin.execute import execute
    from ..device.ops import Op

    ops = list(dict.fromkeys(Op("read", cpu, msr) for cpu in packages.values() for d in domains for msr in d.reads))
    results, _ = execute(str(ctx.find_root().obj), ops)
    return {(r.op.cpu, r.op.msr): r for r in results}


def _state(domain: Any, cpu: int, got: "dict[tuple[int, int], Any]") -> Any:
    """The domain's State, or a PowerError saying why it is absent."""
    from ..registers.table import name_of
    from ..telemetry.power import RAPL_POWER_UNIT, PowerError, state

    for msr in domain.reads:
        r = got[(cpu, msr)]
        if r.err:
            from ..admin.execute import failure

            err = failure(r, name_of(msr))
            if err.code != errors.IO_ERROR:
                raise err  # permission, offline CPU: the whole command fails with its reason
            return PowerError(f"{domain.name}: absent", f"{name_of(msr) or hex(msr)} faults", "not on this CPU")
    unit = got[(cpu, RAPL_POWER_UNIT)].value
    info = got[(cpu, domain.info_msr)].value if domain.info_msr is not None else None
    try:
        return state(domain, unit, got[(cpu, domain.limit_msr)].value, info)
    except PowerError as e:
        return e


def _limit_text(name: str, lim: Any) -> str:
    from ..decode import quantity

    window = f" over {quantity(lim.seconds, 's')}" if lim.seconds is not None else " (window chosen by the CPU)"
    flags = "enabled" if lim.enabled else "disabled"
    return f"{name} {quantity(lim.watts, 'W')}{window}, {flags}, clamp {'on' if lim.clamp else 'off'}"


def _text(package: int, cpu: int, st: Any) -> "list[str]":
    from ..decode import quantity
    from ..telemetry.power import PowerError

    if isinstance(st, PowerError):
        return [f"package {package} (CPU {cpu}): {st.what}: {st.why}"]
    lock = ", LOCKED until reset" if st.locked else ""
    lines = [f"package {package} (CPU {cpu}) {st.domain.name}: {st.domain.what} = {st.raw:#018x}{lock}"]
    lines.append("  " + _limit_text("PL1", st.pl1))
    if st.pl2 is not None:
        lines.append("  " + _limit_text("PL2", st.pl2))
    r = st.range
    if r is not None:
        parts = [
            f"{k} {quantity(v, u)}"
            for k, v, u in (("TDP", r.tdp, "W"), ("min", r.min_watts, "W"), ("max", r.max_watts, "W"))
            if v is not None
        ]
        if r.max_seconds is not None:
            parts.append(f"window up to {quantity(r.max_seconds, 's')}")
        lines.append("  range: " + (", ".join(parts) or "not specified"))
    return lines


def _record(package: int, cpu: int, st: Any) -> "dict[str, Any]":
    from dataclasses import asdict

    from ..telemetry.power import PowerError

    if isinstance(st, PowerError):
        return {"package": package, "cpu": cpu, "absent": st.why}
    rec: dict[str, Any] = {"package": package, "cpu": cpu, "domain": st.domain.name, "msr": hex(st.domain.limit_msr)}
    rec.update(raw=hex(st.raw), locked=st.locked, pl1=asdict(st.pl1), pl2=asdict(st.pl2) if st.pl2 else None)
    rec["range"] = asdict(st.range) if st.range else None
    return rec


@app.command()
def show(
    ctx: typer.Context,
    package: Optional[str] = typer.Option(None, "--package", "-P", metavar="LIST", help="Packages (default all)."),
    domain: "list[str]" = typer.Option(  # noqa: B008 (typer idiom)
        [], "--domain", "-d", metavar="NAME", help="Domains to show (repeat; default all): " + _DOMAIN_HELP
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """Show the RAPL power limits of each package: PL1/PL2 in watts, windows in seconds, lock."""
    from ..telemetry.power import DOMAINS, PowerError

    domains = _domains(domain or list(DOMAINS))
    packages = _packages(package)
    got = _read(ctx, packages, domains)
    states = [(p, cpu, _state(d, cpu, got)) for p, cpu in packages.items() for d in domains]
    # Absent RAPL: say it once per package, not once per domain.
    shown, seen = [], set()
    for p, cpu, st in states:
        if isinstance(st, PowerError) and st.what == "RAPL absent":
            if p in seen:
                continue
            seen.add(p)
        shown.append((p, cpu, st))
    if as_json:
        import json

        typer.echo(json.dumps([_record(*row) for row in shown], indent=2))
    else:
        for row in shown:
            typer.echo("\n".join(_text(*row)))
    if all(isinstance(st, PowerError) for _, _, st in states):
        sys.stderr.write("msrctl: error: no RAPL power limit could be read (see above)\n")
        raise typer.Exit(errors.IO_ERROR)


@app.command("set")
def set_limits(
    ctx: typer.Context,
    pl1: Optional[str] = typer.Option(None, "--pl1", metavar="WATTS", help="Long-term limit, e.g. 95 or 95W."),
    pl1_window: Optional[str] = typer.Option(None, "--pl1-window", metavar="TIME", help="PL1 window, e.g. 28s."),
    pl2: Optional[str] = typer.Option(None, "--pl2", metavar="WATTS", help="Short-term limit, e.g. 120W."),
    pl2_window: Optional[str] = typer.Option(None, "--pl2-window", metavar="TIME", help="PL2 window, e.g. 2.44ms."),
    enable: Optional[bool] = typer.Option(None, "--enable/--disable", help="Enforce the limits, or stop."),
    clamp: Optional[bool] = typer.Option(None, "--clamp/--no-clamp", help="Allow going below the requested P-state."),
    domain: str = typer.Option("package", "--domain", "-d", metavar="NAME", help=_DOMAIN_HELP),
    package: Optional[str] = typer.Option(None, "--package", "-P", metavar="LIST", help="Packages (default all)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the masked writes; write nothing."),
) -> None:
    """Set RAPL power limits with one masked write per package (the lock bit is never touched).

    Refuses limits outside the package's power range (MSR_PKG_POWER_INFO), windows
    longer than its maximum, PL2 below PL1, and locked registers.  Prints the limits
    read back after the write."""
    from ..admin.execute import execute, failure
    from ..device.ops import Op
    from ..telemetry.power import PowerError, Request, apply, plan, with_raw

    req = Request(
        pl1=parse_quantity(pl1, "--pl1", _WATTS, "95 or 95W") if pl1 is not None else None,
        pl1_window=parse_quantity(pl1_window, "--pl1-window", _SECONDS, "28s") if pl1_window is not None else None,
        pl2=parse_quantity(pl2, "--pl2", _WATTS, "120W") if pl2 is not None else None,
        pl2_window=parse_quantity(pl2_window, "--pl2-window", _SECONDS, "2.44ms") if pl2_window is not None else None,
        enable=enable,
        clamp=clamp,
    )
    if req.empty():
        raise UsageError("nothing to set", "no limit, window, enable or clamp given", "give e.g. --pl1 95")
    (dom,) = _domains([domain])
    packages = _packages(package)
    got = _read(ctx, packages, [dom])
    writes = []
    for p, cpu in packages.items():
        st = _state(dom, cpu, got)
        try:
            if isinstance(st, PowerError):
                raise st
            value, mask = plan(st, req)
        except PowerError as e:
            code = errors.USAGE if e.what.split()[0] in ("PL1", "PL2", "--pl2-window") else errors.IO_ERROR
            raise MsrctlError(f"package {p}: {e.what}", e.why, e.todo, code=code) from None
        writes.append((p, cpu, st, value, mask))
    if dry_run:
        for p, cpu, st, value, mask in writes:
            after = apply(st.raw, value, mask)
            typer.echo(f"package {p} (CPU {cpu}): write {dom.limit_msr:#x} value {value:#018x} mask {mask:#018x}")
            typer.echo("\n".join("  " + line for line in _text(p, cpu, with_raw(st, after))[1:]))
        return
    ops = []
    for _, cpu, _, value, mask in writes:
        ops += [Op("write", cpu, dom.limit_msr, value, mask), Op("read", cpu, dom.limit_msr)]
    results, refusals = execute(str(ctx.find_root().obj), ops)
    from ..registers.table import name_of

    bad = [failure(r, name_of(r.op.msr), refusals) for r in results if r.err]
    if bad:
        raise bad[0]
    for (p, cpu, st, value, mask), back in zip(writes, results[1::2]):
        typer.echo("\n".join(_text(p, cpu, with_raw(st, back.value))))
        if back.value != apply(st.raw, value, mask):
            sys.stderr.write(
                f"msrctl: warning: package {p}: {dom.what} reads back {back.value:#x}, "
                f"not {apply(st.raw, value, mask):#x}: the processor adjusted the request\n"
            )
