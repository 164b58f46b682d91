"""The root command group: a command's module is imported, and its click command built,
only when that command runs (or a help or completion listing names it), so that
`msrctl read` pays for read alone and not for every command's options and imports.

Built on typer's public API only: the group class goes in through `typer.Typer(cls=...)`
and each command is made by `typer.main.get_command` from a one-command Typer.
"""

import importlib
from types import SimpleNamespace
from typing import Any, ClassVar, NamedTuple, Optional

import typer
import typer.core
import typer.main

from . import help as cli_help


class Entry(NamedTuple):
    module: str  # the module that defines the command
    attr: str  # a function (one command) or a typer.Typer (a command group)
    settings: "dict[str, Any]"  # typer's command() keywords, for a function


def build(name: str, entry: Entry) -> Any:
    """The click command of one entry, named name."""
    target = getattr(importlib.import_module(entry.module), entry.attr)
    if not isinstance(target, typer.Typer):
        one = cli_help.Typer()
        one.command(name=name, **entry.settings)(target)
        target = one
    command = typer.main.get_command(target)
    command.name = name
    return command


class LazyGroup(typer.core.TyperGroup):
    """A TyperGroup whose commands are entries, built on first use and listed as typer lists them."""

    entries: ClassVar["dict[str, Entry]"] = {}  # set by a subclass

    def list_commands(self, ctx: Any) -> "list[str]":
        # In the order typer itself lists commands (sorted by typer 0.7, declared by later
        # ones), built or not: its own method, asked about every name.
        names = dict.fromkeys([*self.entries, *self.commands])
        return list(typer.core.TyperGroup.list_commands(SimpleNamespace(commands=names), ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Optional[Any]:
        if cmd_name not in self.commands and cmd_name in self.entries:
            self.add_command(build(cmd_name, self.entries[cmd_name]), cmd_name)
            # commands in declared order, as typer fills it (click-man lists them so)
            order = [*self.entries, *self.commands]
            self.commands = {n: self.commands[n] for n in dict.fromkeys(order) if n in self.commands}
        return super().get_command(ctx, cmd_name)
