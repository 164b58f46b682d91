"""An MSR as users type it, a number or a register name, to its number; the register
table loads only for names."""

from __future__ import annotations

import re

from ..errors import UsageError
from .parse import _NUMBER_HELP, is_number, parse_int


def parse_msr(text: str) -> int:
    """An MSR number (32 bits) or a register name from the bundled table."""
    if is_number(text):
        return parse_int(text, "MSR", 32)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", text.strip()):
        raise UsageError(
            f"malformed MSR '{text}'",
            "neither a number nor a register name",
            f"give a number ({_NUMBER_HELP}) or a name such as IA32_APIC_BASE",
        )
    from .table import lookup  # only names need the table

    return lookup(text).msr
