"""Render the generated text files from the jinja2 templates in msrctl/templates/."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent.parent / "templates"
UDEV_RULE_FILE = "60-msrdrv.rules"


@functools.cache
def _env() -> Any:
    import jinja2  # only commands that render need it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain-text config files, not HTML
    )


def render(template: str, **context: Any) -> str:
    return str(_env().get_template(template).render(**context))


def udev_rule(group: str = "msr", mode: str = "0660") -> str:
    return render("udev.rules.j2", group=group, mode=mode, rule_file=UDEV_RULE_FILE)


def modprobe_conf(
    max_ops: int | None = None,
    allow_writes: bool | None = None,
    max_ops_user: int | None = None,
    section_ops: int | None = None,
) -> str:
    options = []
    if max_ops is not None:
        options.append(f"max_ops={max_ops}")
    if max_ops_user is not None:
        options.append(f"max_ops_user={max_ops_user}")
    if section_ops is not None:
        options.append(f"section_ops={section_ops}")
    if allow_writes is not None:
        options.append(f"allow_writes={int(allow_writes)}")
    return render("modprobe.conf.j2", options=options)


def status_text(report: dict[str, Any]) -> str:
    return render("status.txt.j2", **report)
