"""Value formatting with rdmsr's (msr-tools) semantics, and the JSON record shape.

rdmsr prints lowercase hex without 0x by default.  -x/-X/-d/-u/-o/-r pick the
base (the last one wins in rdmsr; msrctl refuses two), -c makes a C constant
(0x prefix for hex, 0 prefix for octal, U suffix for unsigned), -0 pads with
zeroes to the width of the (bit)field.  Like rdmsr, -c turns padding off for
-d and -u.  One deliberate difference: -d prints the two's complement value of
the field (rdmsr clears the sign bit and negates, which is off for most values).
"""

from __future__ import annotations

from typing import Any, NamedTuple

MODES = ("x", "X", "d", "u", "o", "r")


class Format(NamedTuple):  # not a dataclass: cheaper to create at start-up (device/ops.py)
    mode: str = "x"
    c: bool = False
    zero: bool = False
    high: int = 63
    low: int = 0

    @property
    def bits(self) -> int:
        return self.high - self.low + 1


def extract(value: int, high: int = 63, low: int = 0) -> int:
    """Bits high..low of value, shifted down."""
    return (value >> low) & ((1 << (high - low + 1)) - 1)


def _decdigits(bits: int) -> int:
    """Decimal digits of the largest unsigned number of `bits` bits (rdmsr's table)."""
    return len(str((1 << bits) - 1)) if bits > 0 else 1


_DEFAULT = Format()


def format_value(value: int, fmt: Format = _DEFAULT) -> str | bytes:
    """One value as rdmsr prints it (without the newline); bytes for -r without -c."""
    if fmt.mode not in MODES:
        raise ValueError(f"unknown output mode {fmt.mode!r}")
    bits = fmt.bits
    data = extract(value, fmt.high, fmt.low)
    if fmt.mode == "r":
        raw = data.to_bytes(8, "little")
        return "{" + ",".join(f"0x{b:02x}" for b in raw) + "}" if fmt.c else raw
    if fmt.mode in ("x", "X"):
        digits = f"{data:0{(bits + 3) // 4 if fmt.zero else 1}{fmt.mode}}"
        return "0x" + digits if fmt.c else digits
    if fmt.mode == "o":
        digits = f"{data:0{(bits + 2) // 3 if fmt.zero else 1}o}"
        return "0" + digits if fmt.c else digits
    if fmt.mode == "u":
        if fmt.c:
            return f"{data}U"
        return f"{data:0{_decdigits(bits) if fmt.zero else 1}d}"
    signed = data - (1 << bits) if data >> (bits - 1) else data
    width = _decdigits(bits - 1) + 1 if fmt.zero and not fmt.c else 1
    return f"{signed:0{width}d}"


def record(cpu: int, msr: int | None, name: str | None, value: int | None, op: str = "read") -> dict[str, Any]:
    """One op's result for --json output."""
    rec: dict[str, Any] = {"op": op, "cpu": cpu}
    if msr is not None:
        rec["msr"] = f"{msr:#x}"
        rec["name"] = name
    if value is not None:
        rec["value"] = value
        rec["hex"] = f"{value:#x}"
    return rec


def msr_label(msr: int, name: str | None) -> str:
    """0x1b(IA32_APIC_BASE), or 0x1b alone for MSRs outside the table."""
    return f"{msr:#x}({name})" if name else f"{msr:#x}"
