"""Writes a benchmark's table into a docs page between its two marker comments."""

from __future__ import annotations

from pathlib import Path


def replace_between(page: Path, start: str, end: str, table: str) -> None:
    """The text between start and end in page becomes table; a page without both markers is left as it is."""
    text = page.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        page.write_text(f"{head}{start}\n{table}{end}{tail}")
