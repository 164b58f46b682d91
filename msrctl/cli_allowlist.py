"""`msrctl allowlist`: show, load, clear and render the msrdrv allowlist."""

from typing import Any

import typer

from .errors import UsageError

app = typer.Typer(
    help="The allowlist: which MSRs members of group msr (no CAP_SYS_RAWIO) may read, and which bits they may write.",
    no_args_is_help=True,
)


def _open(ctx: typer.Context) -> Any:
    from . import diagnose
    from .device import Device, DeviceError

    path = str(ctx.find_root().obj)
    try:
        return Device(path)
    except DeviceError as e:
        raise diagnose.open_error(path, e.errno) from None


def _source_text(source: str) -> "tuple[str, str]":
    """(text, name) of a profile name, a file, or - for stdin."""
    from . import allowlist

    if source in allowlist.profiles():
        return allowlist.render_profile(source), f"profile {source}"
    if source == "-":
        import sys

        return sys.stdin.read(), "<stdin>"
    try:
        with open(source, encoding="utf-8") as f:
            return f.read(), source
    except OSError as e:
        raise UsageError(
            f"cannot read {source}",
            e.strerror or str(e),
            f"give an allowlist file, - for stdin, or a profile ({', '.join(allowlist.profiles())})",
        ) from None


@app.command()
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the allowlist in force (in the format `load` takes)."""
    from . import allowlist

    with _open(ctx) as dev:
        entries = allowlist.current(dev.fd)
    if as_json:
        import json

        typer.echo(
            json.dumps([{"msr": f"{e.msr:#x}", "read": e.read, "write_mask": f"{e.write_mask:#x}"} for e in entries])
        )
    elif not entries:
        typer.echo("# no allowlist loaded: group msr may read every MSR (unless read_without_allowlist=N), write none")
    else:
        typer.echo(allowlist.format_entries(entries), nl=False)


@app.command()
def load(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="FILE|PROFILE|-", help="An allowlist file, - for stdin, or a profile."),
) -> None:
    """Replace the allowlist (atomically) with a file's or a profile's; needs root."""
    from . import allowlist

    text, name = _source_text(source)
    entries = allowlist.parse(text, name)
    if not entries:
        raise UsageError(
            f"{name}: no entries", "it holds only comments", "use `msrctl allowlist clear` to remove the list"
        )
    with _open(ctx) as dev:
        allowlist.load(dev.fd, entries)
    typer.echo(f"allowlist loaded: {len(entries)} entries from {name}")


@app.command()
def clear(ctx: typer.Context) -> None:
    """Remove the allowlist; needs root."""
    from . import allowlist

    with _open(ctx) as dev:
        allowlist.clear(dev.fd)
    typer.echo("allowlist cleared")


@app.command()
def render(
    profile: str = typer.Argument(..., help="Profile name: see `msrctl allowlist profiles`."),
    vendor: str = typer.Option("both", "--vendor", help="intel, amd or both."),
    gp_counters: int = typer.Option(8, "--gp-counters", min=1, max=32, help="perfmon: general counters."),
    fixed_counters: int = typer.Option(3, "--fixed-counters", min=0, max=16, help="perfmon: fixed counters."),
    output: str = typer.Option("-", "-o", "--output", metavar="FILE", help="Write here instead of stdout."),
) -> None:
    """Print a shipped profile as an allowlist file (jinja2 template)."""
    from . import allowlist

    if vendor not in ("intel", "amd", "both"):
        raise UsageError(f"unknown vendor '{vendor}'", "it is intel, amd or both", "")
    text = allowlist.render_profile(profile, vendor=vendor, gp_counters=gp_counters, fixed_counters=fixed_counters)
    from .textout import emit

    emit(text, output)


@app.command()
def profiles() -> None:
    """List the shipped profiles."""
    from . import allowlist

    for name in allowlist.profiles():
        typer.echo(name)
