"""Parsing of what users type: numbers, MSRs (number or name), CPU lists, bitfields.

Every failure is a UsageError saying what was wrong, why, and how to write it.
"""

from __future__ import annotations

import re

from ..errors import UsageError

MAX_CPUS = 65536  # bound on one list, so "0-4000000000" cannot exhaust memory
CPU_LIMIT = 0xFFFFFFFF  # msrdrv_op.cpu is 32 bits and 0xffffffff means "self"
_NUMBER_HELP = "write it as hex (0x1f or 1fh), decimal (31), binary (0b11111) or octal (0o37)"
_WIDTH_NOUN = {"MSR": "MSR numbers", "value": "MSR values", "mask": "MSR masks"}
_HEX_SUFFIX = re.compile(r"[0-9a-f][0-9a-f_]*h", re.IGNORECASE)


def parse_int(text: str, what: str = "value", bits: int = 64) -> int:
    """An unsigned number of at most `bits` bits: 0x.., ..h, decimal, 0b.., 0o..."""
    s = text.strip()
    if not s:
        raise UsageError(f"malformed {what} ''", "it is empty", _NUMBER_HELP)
    if s.startswith("-"):
        raise UsageError(
            f"malformed {what} '{text}'",
            "negative numbers are not register contents",
            f"give the {bits}-bit two's complement in hex instead",
        )
    try:
        if _HEX_SUFFIX.fullmatch(s):
            value = int(s[:-1], 16)
        elif len(s) > 1 and s[0] == "0" and s[1].isdigit() and s.strip("0_"):
            # C and msr-tools read a leading 0 as octal, Python rejects it: refuse to guess.
            raise UsageError(
                f"malformed {what} '{text}'",
                "a leading zero is octal in C but decimal elsewhere",
                f"write 0o{s.lstrip('0')} for octal or {s.lstrip('0')} for decimal",
            )
        else:
            value = int(s, 0)
    except ValueError:
        raise UsageError(f"malformed {what} '{text}'", "not a number", _NUMBER_HELP) from None
    if value >= 1 << bits:
        raise UsageError(
            f"{what} {text} is too large",
            f"it needs {value.bit_length()} bits but {_WIDTH_NOUN.get(what, what + 's')} have {bits}",
            f"give a value of at most {(1 << bits) - 1:#x}",
        )
    return value


def parse_value(text: str, what: str = "value") -> int:
    """A 64-bit register value."""
    return parse_int(text, what, 64)


def is_number(text: str) -> bool:
    """Whether text is meant as a number (starts with a digit) rather than a register name."""
    s = text.strip()
    return bool(s) and (s[0].isdigit() or s[0] == "-")


def parse_cpus(text: str) -> list[int]:
    """A CPU list like '0,2-5,7' (sorted, duplicates removed)."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo_text, dash, hi_text = part.partition("-")
        if not part or (dash and not (lo_text.strip() and hi_text.strip())):
            raise UsageError(
                f"malformed CPU list '{text}'",
                f"'{part}' is not a CPU number or range",
                "write CPUs like 0,2-5,7",
            )
        lo = _cpu_number(lo_text, text)
        hi = _cpu_number(hi_text, text) if dash else lo
        if hi < lo:
            raise UsageError(f"malformed CPU list '{text}'", f"range {part} runs backwards", f"write it as {hi}-{lo}")
        if hi - lo + 1 + len(cpus) > MAX_CPUS:
            raise UsageError(
                f"CPU list '{text}' is too long",
                f"it names more than {MAX_CPUS} CPUs",
                "name the CPUs that exist (see /sys/devices/system/cpu/online) or use -a",
            )
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def _cpu_number(text: str, whole: str) -> int:
    s = text.strip()
    # rdmsr reads -p with strtoul(.., 0): hex with 0x is a CPU number too.
    hexa = s[:2].lower() == "0x" and len(s) > 2 and all(c in "0123456789abcdefABCDEF" for c in s[2:])
    if not (s.isdigit() or hexa):
        raise UsageError(
            f"malformed CPU list '{whole}'", f"'{s}' is not a CPU number", "write CPUs as numbers like 0,2-5,7"
        )
    cpu = int(s, 16) if hexa else int(s)
    if cpu >= CPU_LIMIT:
        raise UsageError(f"no such CPU {cpu}", "CPU numbers are below 4294967295", "choose an existing CPU")
    return cpu


def parse_bitfield(text: str, register: object | None = None) -> tuple[int, int]:
    """'hi:lo' or 'n' (one bit), or a field name of `register` (a registers.Register)."""
    s = text.strip()
    m = re.fullmatch(r"(\d+)(?::(\d+))?", s)
    if m:
        high = int(m.group(1))
        low = int(m.group(2)) if m.group(2) is not None else high
        if high > 63 or low > high:
            raise UsageError(
                f"malformed bitfield '{text}'",
                "bits run from 63 down to 0 and hi must not be below lo",
                "write it as hi:lo, e.g. -f 15:8",
            )
        return high, low
    field = getattr(register, "field", lambda _name: None)(s) if s else None
    if field is not None:
        return field.high, field.low
    names = ", ".join(f.name for f in getattr(register, "fields", ()))
    fix = f"write it as hi:lo, e.g. -f 15:8{f', or use a field of this register: {names}' if names else ''}"
    raise UsageError(f"malformed bitfield '{text}'", "not hi:lo or a field of this register", fix)
