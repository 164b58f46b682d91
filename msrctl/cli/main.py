"""The msrctl command line (typer): the root group, its core commands (read, write,
rdtsc, batch, registers, status, load, unload, generate) and the entry point.

Only typer and the small parsing/formatting modules load at start-up; the other
command modules, cffi (the device), jinja2 (templates) and the register table
load inside the commands that need them, and only the command that runs is built
(lazy.LazyGroup).  Annotations stay evaluable by typer 0.7 on Python
3.9, hence Optional/List rather than `X | None` and no __future__ import.
"""

import errno
import gc
import os
import re
import signal
import sys
from enum import Enum
from typing import Any, NoReturn, Optional

import typer

from .. import errors
from .._version import __version__
from ..device.cpus import targets as _targets
from ..device.ops import Op, Refusals, Result
from ..errors import DEFAULT_DEVICE, MsrctlError, UsageError
from ..registers.names import parse_msr
from ..registers.parse import is_number, parse_bitfield, parse_value
from . import help as cli_help
from .lazy import Entry, LazyGroup
from .output import Format, format_value, msr_label, record

# typer >= 0.2x vendors click privately and typer 0.7 uses click itself: find the
# classes through a public one instead of importing either.
_UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

HELP = (
    "Batched, fault-safe access to x86 MSRs through the msrdrv kernel module (/dev/msrdrv).\n\n"
    "MSRs are numbers (0x1b, 27, 1bh) or names from `msrctl registers` (IA32_APIC_BASE, apic_base). "
    "CPU lists look like 0,2-5; the default CPU is 0, -a means every online CPU."
)
# name -> where the command lives, in the order help lists them; the core commands
# below add themselves through _command().
COMMANDS: "dict[str, Entry]" = {}


class _Root(LazyGroup):
    entries = COMMANDS


def _command(**settings: Any) -> Any:
    """Register a function of this module as a command, built when it runs."""

    def register(func: Any) -> Any:
        COMMANDS[settings.pop("name", func.__name__)] = Entry(__name__, func.__name__, settings)
        return func

    return register


app = cli_help.Typer(
    name="msrctl",
    cls=_Root,
    help=HELP,
    epilog=errors.exit_codes_help(),
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _say_error(message: str) -> None:
    sys.stderr.write(f"msrctl: error: {message}\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"msrctl {__version__}")
        raise typer.Exit()


class Backend(str, Enum):
    auto = "auto"
    msrdrv = "msrdrv"
    msr = "msr"


@app.callback()
def _root(
    ctx: typer.Context,
    device: str = typer.Option(
        DEFAULT_DEVICE, "--device", envvar="MSRCTL_DEVICE", metavar="PATH", help="Device node to use."
    ),
    backend: Backend = typer.Option(  # noqa: B008 (typer idiom)
        "auto",
        "--backend",
        envvar="MSRCTL_BACKEND",
        metavar="BACKEND",
        help="auto (msrdrv if loaded, else the kernel's msr driver, /dev/cpu/N/msr), msrdrv, or msr.",
    ),
    version: bool = typer.Option(
        False, "-V", "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    from ..device import backend as backends

    backends.preferred = Backend(backend).value  # read by ops.execute, status and the msrdrv-only commands
    ctx.obj = device


# --- helpers shared by read/write/rdtsc/batch ---------------------------------


def _name(msr: int) -> Optional[str]:
    from ..registers.table import name_of  # the table loads only for output that shows names

    return name_of(msr)


def _run(ctx: typer.Context, ops: list[Op]) -> "tuple[list[Result], Refusals]":
    from ..admin.execute import execute

    return execute(str(ctx.obj), ops)


def _failures(results: list[Result], reason: Refusals) -> list[MsrctlError]:
    from ..admin.execute import failure
    from ..device.cpus import online_cpus

    bad = [r for r in results if r.ran and r.err]
    online = online_cpus() if bad else []
    out = []
    for r in bad:
        err = failure(r, _name(r.op.msr) if r.op.kind in ("read", "write") else None, reason, online)
        out.append(err.at(r.op.where) if r.op.where else err)
    return out


def _finish(failures: list[MsrctlError]) -> None:
    """Report every failed op on stderr; exit with the first one's code."""
    for f in failures:
        _say_error(f.message)
    if failures:
        raise typer.Exit(failures[0].code)


def _json_out(data: Any) -> None:
    import json

    typer.echo(json.dumps(data, indent=2))


def _error_fields(rec: dict, r: Result, failures: list[MsrctlError], bad: list[Result]) -> None:
    if r in bad:
        rec["error"] = failures[bad.index(r)].message
        rec["errno"] = r.err
        rec.pop("value", None)
        rec.pop("hex", None)


def _records(results: list[Result], failures: list[MsrctlError], high: int = 63, low: int = 0) -> list[dict]:
    from .output import extract

    bad = [r for r in results if r.ran and r.err]
    recs = []
    for r in results:
        named = r.op.kind in ("read", "write")
        value = extract(r.value, high, low) if r.op.kind == "read" else r.value
        rec = record(r.op.cpu, r.op.msr if named else None, _name(r.op.msr) if named else None, value, r.op.kind)
        if (high, low) != (63, 0) and r.op.kind == "read":
            rec["bits"] = f"{high}:{low}"
        if r.op.where:
            rec["where"] = r.op.where
        if not r.ran:
            rec["ran"] = False
            rec.pop("value", None)
            rec.pop("hex", None)
        _error_fields(rec, r, failures, bad)
        recs.append(rec)
    return recs


_ALL_HELP = "All online CPUs (one ioctl for all)."
_VERSION_HELP = "Print the version and exit (as rdmsr -V)."
# Long spellings of read's base options, for rdmsr's last-one-wins rule.
_BASE_LONG = {
    "x": ("--hexadecimal",),
    "X": ("--capital-hexadecimal", "--capital-hex"),
    "d": ("--decimal", "--signed-decimal"),
    "u": ("--unsigned-decimal", "--unsigned"),
    "o": ("--octal",),
    "r": ("--raw",),
}
_ARGV: list[str] = []  # main()'s arguments, for the order of options where it matters


def _last_flag(args: list[str], wanted: dict[str, tuple[str, ...]], takes_value: str = "") -> Optional[str]:
    """Which of wanted's options (short letter -> long spellings) comes last in args.

    Short options may be clustered (-xd); takes_value lists the short options
    whose value may follow in the same word (-p1), which ends the cluster."""
    last = None
    for word in args:
        if word == "--":
            break
        if word.startswith("--"):
            last = next((k for k, longs in wanted.items() if word.split("=")[0] in longs), last)
        elif word.startswith("-") and len(word) > 1:
            for ch in word[1:]:
                if ch in wanted:
                    last = ch
                if ch in takes_value:
                    break
    return last


_CPU_HELP = "CPU list, e.g. 0,2-5 (default 0)."
_JSON_HELP = "Print JSON records (cpu, msr, name, value)."


# --- commands -------------------------------------------------------------------


@_command()
def read(
    ctx: typer.Context,
    msr: str = typer.Argument(..., metavar="MSR", help="Register: number (0x1b, 27) or name (IA32_APIC_BASE)."),
    all_cpus: bool = typer.Option(False, "-a", "--all", help=_ALL_HELP),
    cpus: Optional[str] = typer.Option(None, "-p", "--cpu", "--processor", metavar="CPUS", help=_CPU_HELP),
    bitfield: Optional[str] = typer.Option(
        None, "-f", "--bitfield", metavar="HI:LO", help="Print bits HI..LO only (or a field name of the register)."
    ),
    hexa: bool = typer.Option(False, "-x", "--hexadecimal", help="Hex, lower case (the default)."),
    capital: bool = typer.Option(False, "-X", "--capital-hexadecimal", "--capital-hex", help="Hex, upper case."),
    signed: bool = typer.Option(False, "-d", "--decimal", "--signed-decimal", help="Signed decimal."),
    unsigned: bool = typer.Option(False, "-u", "--unsigned-decimal", "--unsigned", help="Unsigned decimal."),
    octal: bool = typer.Option(False, "-o", "--octal", help="Octal."),
    raw: bool = typer.Option(False, "-r", "--raw", help="Raw 8 bytes, little endian."),
    c_lang: bool = typer.Option(False, "-c", "--c-language", help="As a C constant (0x.., 0.., ..U)."),
    zero: bool = typer.Option(False, "-0", "--zero-pad", "--zero-fill", help="Pad with zeroes to the field width."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
    version: bool = typer.Option(False, "-V", "--version", callback=_version, is_eager=True, help=_VERSION_HELP),
) -> None:
    """Read an MSR on one or more CPUs (like rdmsr): one value per line, in CPU order."""
    chosen = [m for m, on in zip("xXduor", (hexa, capital, signed, unsigned, octal, raw)) if on]
    if as_json and (chosen or c_lang or zero):
        given = [f"-{m}" for m in chosen] + ["-c"] * c_lang + ["-0"] * zero
        raise UsageError(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply with --json",
            "JSON carries the value as a number and as hex",
            "leave out the output options, or --json",
        )
    if len(chosen) > 1:  # as rdmsr: the last base option given wins
        chosen = [_last_flag(_ARGV, {m: _BASE_LONG[m] for m in chosen}, takes_value="pf") or chosen[-1]]
    number = parse_msr(msr)
    high, low = 63, 0
    if bitfield is not None:
        register = None
        if not is_number(bitfield.split(":")[0]):
            from ..registers.table import by_number

            register = by_number(number)
        high, low = parse_bitfield(bitfield, register)
    fmt = Format(chosen[0] if chosen else "x", c_lang, zero, high, low)
    results, reason = _run(ctx, [Op("read", cpu, number) for cpu in _targets(all_cpus, cpus)])
    failures = _failures(results, reason)
    if as_json:
        _json_out(_records(results, failures, high, low))
    else:
        for r in results:
            if r.ok:
                text = format_value(r.value, fmt)
                if isinstance(text, bytes):
                    sys.stdout.flush()
                    sys.stdout.buffer.write(text)
                    sys.stdout.buffer.flush()
                else:
                    typer.echo(text)
    _finish(failures)


@_command()
def write(
    ctx: typer.Context,
    msr: str = typer.Argument(..., metavar="MSR", help="Register: number or name."),
    values: list[str] = typer.Argument(  # noqa: B008 (typer idiom)
        ..., metavar="VALUE", help="64-bit value(s): 0x.., decimal, 0b.., 0o..; several are written in turn."
    ),
    all_cpus: bool = typer.Option(False, "-a", "--all", help=_ALL_HELP),
    cpus: Optional[str] = typer.Option(None, "-p", "--cpu", "--processor", metavar="CPUS", help=_CPU_HELP),
    mask: Optional[str] = typer.Option(
        None, "-m", "--mask", metavar="MASK", help="Change only these bits (atomic read-modify-write)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records with the value written."),
    version: bool = typer.Option(False, "-V", "--version", callback=_version, is_eager=True, help=_VERSION_HELP),
) -> None:
    """Write an MSR on one or more CPUs (like wrmsr); silent on success.

    Several VALUEs are written one after the other on each CPU, in one ioctl, as wrmsr does."""
    number = parse_msr(msr)
    data = [parse_value(v) for v in values]
    bits = parse_value(mask, "mask") if mask is not None else None
    ops = [Op("write", cpu, number, v, bits) for cpu in _targets(all_cpus, cpus) for v in data]
    results, reason = _run(ctx, ops)
    failures = _failures(results, reason)
    if as_json:
        _json_out(_records(results, failures))
    _finish(failures)


@_command()
def rdtsc(
    ctx: typer.Context,
    all_cpus: bool = typer.Option(False, "-a", "--all", help=_ALL_HELP),
    cpus: Optional[str] = typer.Option(None, "-p", "--cpu", "--processor", metavar="CPUS", help=_CPU_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records (cpu, value)."),
) -> None:
    """Read the time-stamp counter on CPUs (decimal, one per line)."""
    results, reason = _run(ctx, [Op("rdtsc", cpu) for cpu in _targets(all_cpus, cpus)])
    failures = _failures(results, reason)
    if as_json:
        _json_out(_records(results, failures))
    else:
        for r in results:
            if r.ok:
                typer.echo(str(r.value))
    _finish(failures)


def _batch_line(r: Result) -> str:
    op = r.op
    if op.kind in ("nop", "stop"):
        head = f"- {op.kind}"
    elif op.kind == "rdtsc":
        head = f"{op.cpu} rdtsc"
    else:
        head = f"{op.cpu} {op.kind} {msr_label(op.msr, _name(op.msr))}"
    if not r.ran:
        return f"{head} not-run"
    if r.err:
        import errno as errno_mod

        return f"{head} error:{errno_mod.errorcode.get(r.err, r.err)}"
    if op.kind == "rdtsc":
        return f"{head} {r.value}"
    if op.kind in ("read", "write"):
        return f"{head} {r.value:#x}"
    return head


@_command()
def batch(
    ctx: typer.Context,
    file: str = typer.Argument("-", metavar="FILE", help="Ops file; - (the default) reads stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records instead of lines."),
) -> None:
    """Run many ops from a file or stdin in ONE ioctl.

    Text format, one op per line (# comments; CPU LIST like 0,2-5 or all; default CPU 0):
    read MSR (cpu LIST) / write MSR VALUE (mask M) (cpu LIST) / rdtsc (cpu LIST) / nop / stop.
    JSON: a list of objects like {"op": "read", "msr": "0x1b", "cpu": 0}.
    Output: one line per op: CPU OP MSR(NAME) VALUE.
    """
    from ..device.cpus import online_cpus
    from .batchfile import parse

    source = "<stdin>" if file == "-" else file
    try:
        if file == "-":
            text = sys.stdin.read()
        else:
            with open(file, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UsageError(
            f"cannot read {source}", why, "give a readable text or JSON ops file, or - for stdin"
        ) from None
    ops = parse(text, source, online_cpus)
    results, reason = _run(ctx, ops)
    failures = _failures(results, reason)
    if as_json:
        _json_out(_records(results, failures))
    else:
        for r in results:
            typer.echo(_batch_line(r))
    _finish(failures)


class Vendor(str, Enum):
    intel = "intel"
    amd = "amd"


def _field_unit(f: Any) -> str:
    from ..registers.schema import UNITS

    return str(f.unit or UNITS.get(f.kind, ""))


def _field_text(f: Any) -> str:
    """NAME bits, with the unit or kind where the field has a meaning beyond its number."""
    unit = _field_unit(f)
    extra = unit or (f.kind if f.kind in ("enum", "perf_level") else "")
    return f"{f.name} {f.bits}" + (f" [{extra}]" if extra else "")


@_command()
def registers(
    pattern: Optional[str] = typer.Argument(
        None, metavar="PATTERN", help="A number (0x1b), or text found in a name or description."
    ),
    vendor: Optional[Vendor] = typer.Option(  # noqa: B008 (typer idiom)
        None, "--vendor", metavar="VENDOR", help="intel or amd: only its (and shared) registers."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the bundled register names (with bitfields when a PATTERN is given)."""
    from ..registers.table import select

    regs = select(vendor.value if vendor else None, pattern)
    if as_json:
        _json_out(
            [
                {
                    "name": r.name,
                    "msr": f"{r.msr:#x}",
                    "vendor": r.vendor,
                    "description": r.description,
                    "aliases": list(r.aliases),
                    "fields": {f.name: f.bits for f in r.fields},
                    "kinds": {f.name: f.kind for f in r.fields},
                    "units": {f.name: _field_unit(f) for f in r.fields if _field_unit(f)},
                }
                for r in regs
            ]
        )
        return
    if not regs:
        raise UsageError(f"no register matches '{pattern}'", "not in the bundled table", "run `msrctl registers`")
    for r in regs:
        typer.echo(f"{r.msr:#010x}  {r.name:<28} {r.vendor:<5}  {r.description}")
        if pattern and r.fields:
            typer.echo(" " * 12 + "fields: " + ", ".join(_field_text(f) for f in r.fields))


@_command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Report module, device node, permissions, dkms and lockdown state, and how to fix problems."""
    from ..admin.status import exit_code, report

    rep = report(str(ctx.obj))
    if as_json:
        _json_out(rep)
    else:
        from ..admin.render import status_text

        typer.echo(status_text(rep), nl=False)
    raise typer.Exit(exit_code(rep))


@_command()
def load(
    ctx: typer.Context,
    ko: Optional[str] = typer.Option(None, "--ko", metavar="PATH", help="insmod this msrdrv.ko instead of modprobe."),
    max_ops: Optional[int] = typer.Option(
        None, "--max-ops", metavar="N", min=1, max=65536, help="Module parameter max_ops."
    ),
    timeout: float = typer.Option(
        10.0, "--timeout", metavar="SECONDS", min=0, help="Seconds to wait for the device node."
    ),
) -> None:
    """Load msrdrv (modprobe, or insmod --ko) and wait for /dev/msrdrv."""
    from ..admin.modtool import load as do_load

    for line in do_load(ko, max_ops, str(ctx.obj), timeout):
        typer.echo(line)


@_command()
def unload() -> None:
    """Unload msrdrv; refuses while /dev/msrdrv is open."""
    from ..admin.modtool import unload as do_unload

    for line in do_unload():
        typer.echo(line)


class Generated(str, Enum):
    udev_rule = "udev-rule"
    modprobe = "modprobe"


@_command()
def generate(
    what: Generated = typer.Argument(..., help="udev-rule (60-msrdrv.rules) or modprobe (msrdrv.conf)."),  # noqa: B008 (typer idiom)
    group: Optional[str] = typer.Option(
        None, "--group", metavar="GROUP", help="udev rule: group owning /dev/msrdrv (default msr)."
    ),
    mode: Optional[str] = typer.Option(
        None,
        "--mode",
        metavar="MODE",
        help="udev rule: node mode (default 0660); 0640 makes the group read-only (no writes).",
    ),
    max_ops: Optional[int] = typer.Option(None, "--max-ops", metavar="N", min=1, max=65536, help="modprobe: max_ops."),
    max_ops_user: Optional[int] = typer.Option(
        None,
        "--max-ops-user",
        metavar="N",
        min=1,
        max=65536,
        help="modprobe: max_ops_user (openers without CAP_SYS_RAWIO).",
    ),
    section_ops: Optional[int] = typer.Option(
        None,
        "--section-ops",
        metavar="N",
        min=1,
        max=4096,
        help="modprobe: section_ops (ops per interrupts-off section).",
    ),
    allow_writes: Optional[bool] = typer.Option(
        None, "--allow-writes/--no-allow-writes", help="modprobe: allow_writes."
    ),
    output: str = typer.Option("-", "-o", "--output", metavar="FILE", help="Write here instead of stdout."),
) -> None:
    """Render a configuration file from its template."""
    from ..admin import render

    udev = {"--group": group, "--mode": mode}
    modprobe = {
        "--max-ops": max_ops,
        "--max-ops-user": max_ops_user,
        "--section-ops": section_ops,
        "--allow-writes": allow_writes,
    }
    other = modprobe if what == Generated.udev_rule else udev
    stray = [name for name, value in other.items() if value is not None]
    if stray:
        raise UsageError(
            f"{', '.join(stray)} {'does' if len(stray) == 1 else 'do'} not apply to {what.value}",
            f"{'they shape' if len(stray) > 1 else 'it shapes'} the "
            f"{'modprobe file' if what == Generated.udev_rule else 'udev rule'}",
            "leave it out, or generate that file",
        )
    if what == Generated.udev_rule:
        mode = "0660" if mode is None else mode
        if not (len(mode) == 4 and all(c in "01234567" for c in mode)):
            raise UsageError(f"malformed mode '{mode}'", "expected four octal digits", "write it like 0660")
        group = "msr" if group is None else group
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", group):
            raise UsageError(
                f"malformed group name '{group}'",
                "a group name is 1-32 lower-case letters, digits, _ or -, not starting with a digit or -",
                "give an existing group, e.g. --group msr",
            )
        text = render.udev_rule(group, mode)
    else:
        text = render.modprobe_conf(max_ops, allow_writes, max_ops_user, section_ops)
    from .textout import emit

    emit(text, output)


# The stat, decode, record, top, exporter, allowlist and power commands live in their own modules (one job each).
_NO_INTERSPERSED = {"context_settings": {"allow_interspersed_args": False}}
COMMANDS.update(
    stat=Entry("msrctl.cli.stat", "stat", _NO_INTERSPERSED),
    decode=Entry("msrctl.cli.decode", "decode", {}),
    record=Entry("msrctl.cli.record", "record", _NO_INTERSPERSED),
    top=Entry("msrctl.cli.top", "top", {}),
    exporter=Entry("msrctl.cli.exporter", "exporter", {}),
    allowlist=Entry("msrctl.cli.allowlist", "app", {}),
    power=Entry("msrctl.cli.power", "app", {}),
)


# --- entry point -----------------------------------------------------------------


def _usage_message(e: Any) -> str:
    where = e.ctx.command_path if e.ctx else "msrctl"
    return f"{where}: {e.format_message().rstrip('.')}; see `{where} --help`"


def main(argv: Optional[list[str]] = None) -> int:
    """Run msrctl; every failure becomes one stderr line and an exit code (see errors.py)."""
    args = sys.argv[1:] if argv is None else list(argv)
    # What exists now (modules, classes, typer's objects) lives until exit: keep the
    # cyclic collector from walking it at every collection and once more at exit, which
    # cost a short command about 6 ms (bench/results/startup.md).
    gc.freeze()
    _ARGV[:] = args
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `msrctl read -a ... | head` ends quietly
    try:
        code = app(args=args, prog_name="msrctl", standalone_mode=False)
        sys.stdout.flush()  # here, so that a full disk is reported like any other failure
    except OSError as e:
        if e.errno not in _OUTPUT_ERRNOS:
            return _internal_error(e)
        _discard_stdout()
        _say_error(f"cannot write the output: {e.strerror}; free space, or send the output elsewhere")
        return errors.FAILURE
    except MsrctlError as e:
        _say_error(e.message)
        return e.code
    except _UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:
            typer.echo(e.ctx.get_help())  # click >= 8.2 signals no-args help as an error
            return errors.OK
        _say_error(_usage_message(e))
        return errors.USAGE
    except _ClickException as e:
        _say_error(e.format_message())
        return errors.FAILURE
    except (typer.Abort, KeyboardInterrupt):
        _say_error("interrupted")
        return 130
    except Exception as e:  # a bug: still one line, unless debugging
        return _internal_error(e)
    return code if isinstance(code, int) else errors.OK


# Failures of writing stdout itself (file, pipe or terminal), not of msrctl's work.
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null, so the unwritten rest does not fail again at exit."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def _internal_error(e: Exception) -> int:
    if os.environ.get("MSRCTL_DEBUG"):
        raise e
    _say_error(f"internal error: {type(e).__name__}: {e}; rerun with MSRCTL_DEBUG=1 and report the traceback")
    return errors.FAILURE


def _exit(code: int) -> NoReturn:
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
