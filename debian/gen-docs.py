#!/usr/bin/python3
"""Generate msrctl's man pages and bash completion from its own command tree.

Run at package build time against the freshly installed msrctl (PYTHONPATH
pointing at it), so both follow the CLI without anyone editing them:

    PYTHONPATH=<dist-packages> python3 -P gen-docs.py --version 0.2.0 --outdir debian/generated
        -> debian/generated/man/msrctl.1, msrctl-read.1, ... (one per command)
           debian/generated/bash-completion/msrctl

The man pages are click-man's (python3-click-man), with the exit codes and
the files msrctl uses added to msrctl.1.  click-man runs on click itself,
hence on Debian 12's typer 0.7, not on later typers' private copy of click.

The completion is static (a table of commands, options and choices) rather
than typer's dynamic one: msrctl turns typer's completion options off, and
with typer 0.7 (Debian 12) the dynamic script that click then emits calls back
with an instruction typer does not accept, so it would never complete.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer
import typer.main

try:  # newer typer releases carry a private copy of click; use theirs
    from typer._click import Context
except ImportError:  # typer 0.7 (Debian 12) uses click itself
    from click import Context

# Parameters and commands are looked at by their attributes, not their
# classes, so that click's and typer's private copy of it both do.
Command = Any
Param = Any

PROG = "msrctl"


def command_tree() -> Command:
    """msrctl's click command with every subcommand built (its root group builds a command
    only when asked for it by name: ask for each, as a help listing does)."""
    from msrctl.cli import main as cli

    app = getattr(cli, "app", None)
    if not isinstance(app, typer.Typer):
        sys.exit("gen-docs.py: msrctl.cli.main.app is not a typer.Typer")
    root = typer.main.get_command(app)
    build_all(root)
    return root


def build_all(cmd: Command) -> None:
    if hasattr(cmd, "list_commands"):
        ctx = Context(cmd)
        for name in cmd.list_commands(ctx):
            build_all(cmd.get_command(ctx, name))


def subcommands(cmd: Command) -> list[tuple[str, Command]]:
    if not isinstance(getattr(cmd, "commands", None), dict):
        return []
    return [(name, sub) for name, sub in sorted(cmd.commands.items()) if not getattr(sub, "hidden", False)]


def walk(cmd: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    """(path, command) for the root and every visible subcommand, depth first."""
    yield path, cmd
    for name, sub in subcommands(cmd):
        yield from walk(sub, (*path, name))


def params(cmd: Command, ctx: Context) -> list[Param]:
    found = [p for p in cmd.params if not getattr(p, "hidden", False)]
    help_opt = cmd.get_help_option(ctx)
    if help_opt is not None:
        found.append(help_opt)
    return found


def metavar(p: Param, ctx: Context) -> str:
    try:
        return p.make_metavar()
    except TypeError:  # click >= 8.2 takes the context
        return p.make_metavar(ctx)


def is_argument(p: Param) -> bool:
    return p.param_type_name == "argument"


def is_option(p: Param) -> bool:
    return p.param_type_name == "option"


def takes_value(p: Param) -> bool:
    return is_option(p) and not p.is_flag and not p.count


def choices(p: Param) -> list[str] | None:
    found = getattr(p.type, "choices", None)
    return [str(c) for c in found] if found else None


def names_a_file(p: Param, ctx: Context) -> bool:
    return type(p.type).__name__ in ("Path", "File") or metavar(p, ctx) in ("PATH", "FILE", "DIR")


def context(cmd: Command, name: str, parent: Context | None = None) -> Context:
    """A context with the command's own settings (help option names: -h, --help)."""
    settings = dict(cmd.context_settings or {})
    return Context(cmd, info_name=name, parent=parent, **settings)


# --- man pages ----------------------------------------------------------------------


def roff(text: str) -> str:
    """Escape running text for roff: backslashes and minus signs (one line, no requests)."""
    text = " ".join(text.split()).replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


# What click-man has no field for, appended to the top page: the exit codes
# (the root command's epilog) and the files msrctl works with.
TOP_PAGE_TAIL = """.SH FILES
.TP
\\fI/dev/msrdrv\\fR
The msrdrv device node (package msrdrv\\-dkms); group msr, mode 0660.
.TP
\\fI/usr/lib/udev/rules.d/60\\-msrdrv.rules\\fR
The udev rule that gives the node its group and mode.
.SH SEE ALSO
\\fBdkms\\fR(8), \\fBmodprobe\\fR(8), \\fBudev\\fR(7)
"""


def man_pages(root: Command, version: str, outdir: Path) -> None:
    """One page per command by click-man: msrctl.1, msrctl-read.1, msrctl-allowlist-load.1, ...

    click-man dates the pages by SOURCE_DATE_EPOCH itself, walks commands in
    their declared order and prints each option's names as declared (it leaves
    out the help option, whose names click keeps in a set), so the pages do not
    depend on the clock or on PYTHONHASHSEED.
    """
    from click_man.core import write_man_pages

    outdir.mkdir(parents=True, exist_ok=True)
    # .TH's footer reads "msrctl 0.2.0", the package and its version.
    write_man_pages(PROG, root, version=f"{PROG} {version}", target_dir=str(outdir))
    for page in sorted(outdir.glob("*.1")):
        text = page.read_text()
        # click-man names a nested command's page "msrctl allowlist-load(1)";
        # the page it wrote is msrctl-allowlist-load(1).
        text = re.sub(r"\\fB([^\\]+)\(1\)\\fP", lambda m: f"\\fB{m[1].replace(' ', '-')}\\fP(1)", text)
        if page.name == f"{PROG}.1":
            if root.epilog:
                text += f".SH EXIT STATUS\n{roff(root.epilog)}\n"
            text += TOP_PAGE_TAIL
        page.write_text(text)


# --- bash completion ----------------------------------------------------------------


def words(items: Iterable[str]) -> str:
    return " ".join(sorted(set(items)))


def completion(root: Command) -> str:
    files = 'compopt -o filenames; COMPREPLY=($(compgen -f -- "$cur"))'
    scan, values, complete = [], [], []
    contexts = {(): context(root, PROG)}
    for path, cmd in walk(root):
        key = " ".join(path)
        c = contexts[path] if not path else context(cmd, path[-1], contexts[path[:-1]])
        contexts[path] = c
        ps = params(cmd, c)
        # While scanning the line: subcommand names extend the path, and the
        # word after an option that takes a value is that value.
        for name, _ in subcommands(cmd):
            scan.append(f'\t\t\t"{key}:{name}") path=${{path:+$path }}{name} ;;')
        valued = [o for p in ps if takes_value(p) for o in p.opts]
        if valued:
            scan.append("\t\t\t" + "|".join(f'"{key}:{o}"' for o in valued) + ") skip=1 ;;")
        # The value being typed after such an option: its choices, file
        # names where it names a file, else nothing to offer.
        for p in ps:
            if not takes_value(p):
                continue
            pats = "|".join(f'"{key}:{o}"' for o in p.opts)
            if choices(p):
                action = f'COMPREPLY=($(compgen -W "{words(choices(p))}" -- "$cur"))'
            elif names_a_file(p, c):
                action = files
            else:
                action = "COMPREPLY=()"
            values.append(f"\t\t{pats}) {action}; return ;;")
        # Options, subcommands, or what a positional argument takes.
        opts = words(o for p in ps if is_option(p) for o in (*p.opts, *p.secondary_opts))
        args = [p for p in cmd.params if is_argument(p)]
        if subcommands(cmd):
            rest = f'COMPREPLY=($(compgen -W "{words(n for n, _ in subcommands(cmd))}" -- "$cur"))'
        elif args and choices(args[0]):
            rest = f'COMPREPLY=($(compgen -W "{words(choices(args[0]))}" -- "$cur"))'
        elif any(names_a_file(p, c) for p in args):
            rest = files
        else:
            rest = "COMPREPLY=()"
        complete.append(
            f'\t\t"{key}")\n'
            f'\t\t\tif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "{opts}" -- "$cur")); else {rest}; fi ;;'
        )
    return f"""# bash completion for {PROG}
# Generated by debian/gen-docs.py from {PROG}'s command tree; do not edit.

_{PROG}()
{{
	local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD - 1]}}
	local path="" skip=0 i
	for ((i = 1; i < COMP_CWORD; i++)); do
		if ((skip)); then
			skip=0
			continue
		fi
		case "$path:${{COMP_WORDS[i]}}" in
{chr(10).join(scan)}
		esac
	done
	if ((skip)); then
		case "$path:$prev" in
{chr(10).join(values)}
		esac
	fi
	case "$path" in
{chr(10).join(complete)}
	esac
}} &&
	complete -F _{PROG} {PROG}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", required=True)
    ap.add_argument("--outdir", type=Path, required=True)
    args = ap.parse_args()
    root = command_tree()
    man_pages(root, args.version, args.outdir / "man")
    (args.outdir / "bash-completion").mkdir(parents=True, exist_ok=True)
    (args.outdir / "bash-completion" / PROG).write_text(completion(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
