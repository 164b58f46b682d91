"""`msrctl allowlist`: show, load, clear and render the msrdrv allowlist."""

from typing import Any, Optional

import typer

from ..errors import LOAD_TELEMETRY, UsageError
from . import help as cli_help

app = cli_help.Typer(
    help="The allowlist: which MSRs members of group msr (no CAP_SYS_RAWIO) may read, and which bits they may write. "
    "With no list loaded they may read and write nothing.",
    no_args_is_help=True,
)

_PROFILE_HELP = "A shipped profile (see `msrctl allowlist profiles`); repeat to merge several."


def _open(ctx: typer.Context, write: Optional[bool] = None, feature: str = "the allowlist") -> Any:
    """msrdrv's device; a clear refusal when the backend in use is the kernel's msr driver."""
    from .. import errors
    from ..admin import diagnose
    from ..device import backend
    from ..device.msrdrv import Device, DeviceError
    from ..errors import MsrctlError

    path = str(ctx.find_root().obj)
    if backend.choose(path) == backend.MSR:
        raise MsrctlError(
            f"{feature} needs msrdrv",
            "the backend in use is the kernel's msr driver (msrdrv is not loaded, or --backend msr), which has none",
            "load msrdrv: sudo msrctl load",
            errors.NOT_LOADED,
        )
    try:
        return Device(path, write)
    except DeviceError as e:
        raise diagnose.open_error(path, e.errno, fallback=None) from None


def _source_text(source: str) -> "tuple[str, str]":
    """(text, name) of a profile name, a file, or - for stdin."""
    from ..admin import allowlist

    if source in allowlist.profiles():
        return allowlist.render_profile(source), f"profile {source}"
    if source == "-":
        import sys

        return sys.stdin.read(), "<stdin>"
    try:
        with open(source, encoding="utf-8") as f:
            return f.read(), source
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UsageError(
            f"cannot read {source}",
            why,
            f"give an allowlist file, - for stdin, or a profile ({', '.join(allowlist.profiles())})",
        ) from None


def _profile_names(names: list[str]) -> list[str]:
    from ..admin import allowlist

    for name in names:
        if name not in allowlist.profiles():
            raise allowlist._unknown_profile(name)
    return names


@app.command()
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the allowlist in force (in the format `load` takes)."""
    from ..admin import allowlist

    with _open(ctx, write=False) as dev:
        entries = allowlist.current(dev.fd)
    if as_json:
        import json

        typer.echo(
            json.dumps([{"msr": f"{e.msr:#x}", "read": e.read, "write_mask": f"{e.write_mask:#x}"} for e in entries])
        )
    elif not entries:
        typer.echo(f"# no allowlist loaded: group msr may read and write nothing; an admin runs: {LOAD_TELEMETRY}")
    else:
        typer.echo(allowlist.format_entries(entries), nl=False)


@app.command()
def load(
    ctx: typer.Context,
    source: Optional[str] = typer.Argument(
        None, metavar="[FILE|PROFILE|-]", help="An allowlist file, - for stdin, or a profile."
    ),
    profile: list[str] = typer.Option([], "--profile", "-P", metavar="NAME", help=_PROFILE_HELP),  # noqa: B008 (typer idiom)
    drop_protected: bool = typer.Option(
        False,
        "--drop-protected",
        help="Drop the lines msrdrv would refuse (kernel-address MSRs; write masks on kernel-control MSRs, "
        "which stay readable), naming each, instead of refusing the list: for lists made for msr-safe.",
    ),
) -> None:
    """Replace the allowlist with a file's and/or profiles' entries (merged); needs root.

    When it returns, no op checked against the old list is still running.  Lines msrdrv
    would refuse are all named at once (or dropped, with --drop-protected).
    """
    from ..admin import allowlist

    sources = [_source_text(source)] if source is not None else []
    sources += [(allowlist.render_profile(p), f"profile {p}") for p in dict.fromkeys(_profile_names(profile))]
    if not sources:
        raise UsageError("nothing to load", "give a file, - for stdin, or --profile NAME", f"e.g. {LOAD_TELEMETRY}")
    parsed = [allowlist.parse_dropping(text, name, drop_protected) for text, name in sources]
    for _, dropped in parsed:
        for note in dropped:
            typer.echo(f"msrctl: allowlist: dropped {note}", err=True)
    entries = allowlist.merge(e for e, _ in parsed)
    names = " + ".join(name for _, name in sources)
    if not entries:
        raise UsageError(
            f"{names}: no entries", "it holds only comments", "use `msrctl allowlist clear` to remove the list"
        )
    entries = allowlist.validate(entries, names)
    from ..admin import sticky

    for warning in sticky.hazards(entries):
        typer.echo(f"msrctl: allowlist: warning: {warning}", err=True)
    with _open(ctx) as dev:
        allowlist.load(dev.fd, entries)
    typer.echo(f"allowlist loaded: {len(entries)} entries from {names}")


@app.command()
def clear(ctx: typer.Context) -> None:
    """Remove the allowlist; needs root."""
    from ..admin import allowlist

    with _open(ctx) as dev:
        allowlist.clear(dev.fd)
    typer.echo("allowlist cleared")


@app.command()
def render(
    names: Optional[list[str]] = typer.Argument(None, metavar="[PROFILE]...", help="Profile names."),  # noqa: B008 (typer idiom)
    profile: list[str] = typer.Option([], "--profile", "-P", metavar="NAME", help=_PROFILE_HELP),  # noqa: B008 (typer idiom)
    vendor: str = typer.Option("both", "--vendor", metavar="VENDOR", help="intel, amd or both."),
    gp_counters: int = typer.Option(
        8,
        "--gp-counters",
        metavar="N",
        min=1,
        max=8,
        help="perfmon: general counters (Intel numbers at most 8: past them 0xc1+N and 0x186+N are other registers).",
    ),
    fixed_counters: int = typer.Option(
        3, "--fixed-counters", metavar="N", min=0, max=16, help="perfmon: fixed counters."
    ),
    output: str = typer.Option("-", "-o", "--output", metavar="FILE", help="Write here instead of stdout."),
) -> None:
    """Print shipped profiles as one allowlist file (several are merged, each MSR once)."""
    from ..admin import allowlist

    chosen = _profile_names([*(names or []), *profile])
    if not chosen:
        raise UsageError(
            "no profile given", f"the profiles are {', '.join(allowlist.profiles())}", "name one or more of them"
        )
    if vendor not in ("intel", "amd", "both"):
        raise UsageError(f"unknown vendor '{vendor}'", "it is intel, amd or both", "")
    text = allowlist.render_profiles(chosen, vendor=vendor, gp_counters=gp_counters, fixed_counters=fixed_counters)
    from .textout import emit

    emit(text, output)


@app.command()
def profiles() -> None:
    """List the shipped profiles."""
    from ..admin import allowlist

    for name in allowlist.profiles():
        typer.echo(name)
