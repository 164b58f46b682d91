"""One help layout on every typer: classic click text, as Debian 12's typer 0.7 prints it.

typer >= 0.2x writes required arguments as {MSR}, types as <bool> or
<list[str]>, and (with rich) boxes that cut long option names; msrctl's
commands use this Command class instead, whose usage line and option table
read the same on both stacks.
"""

from typing import Any

import typer
import typer.core


def _arg_name(param: Any) -> str:
    return str(param.metavar or param.name.upper())


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


class Command(typer.core.TyperCommand):
    """A typer command whose help names arguments plainly: MSR, [PATTERN], VALUE..."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not _is_argument(param):
                continue
            name = _arg_name(param)
            if not param.required:
                name = f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 and not name.endswith("...") else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if _is_argument(param):
                args.append((_arg_name(param), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Typer(typer.Typer):
    """typer.Typer whose commands are Commands (help as above) and plain text (no rich), with
    no completion options (debian/gen-docs.py writes a static completion)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
