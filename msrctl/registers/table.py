"""The bundled register table (data/registers.json): names, vendors, bitfields.

Loaded on first use only, so commands given plain MSR numbers never read it.
Each entry is checked as it loads (schema.py); fields carry a kind (ratio,
power, temperature, ...) that msrctl.decode turns into physical units.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from . import schema as regschema
from .parse import is_number, parse_int

_DATA = Path(__file__).parent.parent / "data" / "registers.json"
# Longest first, so MSR_IA32_TSC loses both prefixes.
_PREFIXES = ("MSR_IA32_", "IA32_", "MSR_")
VENDORS = regschema.VENDORS


@dataclass(frozen=True)
class Field:
    name: str
    high: int
    low: int
    kind: str = "int"  # one of regschema.FIELD_KINDS
    doc: str = ""  # what the field means, briefly
    values: tuple[tuple[int, str], ...] = ()  # enum: value -> meaning
    other: str = ""  # enum: the meaning of values not listed
    scale: float = 1.0  # scaled: physical value per unit of the field
    unit: str = ""  # scaled: the unit
    valid: str = ""  # below_tjmax: the flag field that says the reading is valid

    @property
    def bits(self) -> str:
        return str(self.low) if self.high == self.low else f"{self.high}:{self.low}"

    @property
    def width(self) -> int:
        return self.high - self.low + 1

    def extract(self, value: int) -> int:
        """This field's bits of a register value, shifted down."""
        return (value >> self.low) & ((1 << self.width) - 1)


@dataclass(frozen=True)
class Derived:
    """A value computed from several fields (e.g. an AMD P-state's frequency)."""

    name: str
    kind: str  # one of regschema.DERIVED_KINDS


@dataclass(frozen=True)
class Register:
    name: str
    msr: int
    vendor: str
    description: str
    aliases: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    zero: str = ""  # if set, 0 is not a plausible value: what a 0 read likely means
    derived: tuple[Derived, ...] = ()

    def field(self, name: str) -> Field | None:
        key = name.strip().upper()
        return next((f for f in self.fields if f.name == key), None)


def normalize(name: str) -> str:
    """The lookup key: case-insensitive, '-' as '_', without MSR_/IA32_ prefixes."""
    key = name.strip().upper().replace("-", "_")
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :]
    return key


def _field(name: str, raw: object) -> Field:
    spec = regschema.field_spec(raw)
    values = tuple(sorted((int(k), v) for k, v in spec.get("values", {}).items()))
    return Field(
        name,
        *regschema.bits(spec["bits"]),
        kind=spec["kind"],
        doc=spec.get("doc", ""),
        values=values,
        other=spec.get("other", ""),
        scale=float(spec.get("scale", 1.0)),
        unit=spec.get("unit", ""),
        valid=spec.get("valid", ""),
    )


def expand(entry: dict) -> list[Register]:
    """The registers one JSON entry describes (several with count); TableError if malformed."""
    regschema.check_entry(entry)
    count = int(entry.get("count", 1))
    stride = int(entry.get("stride", 1))
    fields = tuple(_field(k, v) for k, v in entry.get("fields", {}).items())
    derived = tuple(Derived(d["name"], d["kind"]) for d in entry.get("derived", ()))
    out = []
    for n in range(count):

        def sub(text: str, n: int = n) -> str:
            return text.replace("{n}", str(n))

        out.append(
            Register(
                name=sub(entry["name"]),
                msr=int(entry["msr"], 16) + n * stride,
                vendor=entry["vendor"],
                description=sub(entry["description"]),
                aliases=tuple(sub(a) for a in entry.get("aliases", ())),
                fields=fields,
                zero=entry.get("zero", ""),
                derived=derived,
            )
        )
    return out


@functools.cache
def table() -> tuple[Register, ...]:
    """Every register, sorted by number."""
    with _DATA.open(encoding="utf-8") as f:
        data = json.load(f, object_pairs_hook=regschema.no_duplicates)
    regs = [r for entry in data["registers"] for r in expand(entry)]
    return tuple(sorted(regs, key=lambda r: r.msr))


@functools.cache
def _index() -> dict[str, Register]:
    index: dict[str, Register] = {}
    for reg in table():
        for name in (reg.name, *reg.aliases):
            index.setdefault(normalize(name), reg)
    return index


@functools.cache
def _by_number() -> dict[int, Register]:
    return {r.msr: r for r in table()}


def by_number(msr: int) -> Register | None:
    return _by_number().get(msr)


def name_of(msr: int) -> str | None:
    reg = by_number(msr)
    return reg.name if reg else None


def suggest(name: str, n: int = 3) -> list[str]:
    """Canonical names close to a misspelt one."""
    index = _index()
    found: list[str] = []
    for key in difflib.get_close_matches(normalize(name), list(index), n=n * 3, cutoff=0.6):
        canonical = index[key].name
        if canonical not in found:
            found.append(canonical)
    return found[:n]


def lookup(name: str) -> Register:
    """The register called name (any case, prefix optional); UsageError with suggestions if none."""
    reg = _index().get(normalize(name))
    if reg is not None:
        return reg
    close = suggest(name)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(
        f"unknown register '{name}'",
        "not in the bundled register table",
        f"{hint}(`msrctl registers` lists the names; or give the MSR as a number such as 0x1b)",
    )


def _number(text: str) -> int | None:
    """pattern as an MSR number (0x1b, 1bh, 27), or None."""
    if not is_number(text):
        return None
    try:
        return parse_int(text, "MSR", 32)
    except UsageError:
        return None


def matcher(pattern: str) -> Callable[[Register], bool]:
    """A test for registers that pattern names: pattern as a number is the register's
    number; as text it is contained (any case, '-' as '_') in a name, an alias, a name
    without its MSR_/IA32_ prefix, or the description.  The pattern is parsed once."""
    number = _number(pattern)
    if number is not None:
        return lambda reg: reg.msr == number
    key = pattern.strip().upper().replace("-", "_")
    short = normalize(pattern)
    words = pattern.strip().lower()

    def test(reg: Register) -> bool:
        names = (reg.name, *reg.aliases)
        return any(key in n.upper() or (short and short in normalize(n)) for n in names) or (
            words in reg.description.lower()
        )

    return test


def select(vendor: str | None = None, pattern: str | None = None) -> list[Register]:
    """Registers for a vendor (shared ones included) that match pattern (see matcher())."""
    regs = list(table())
    if vendor:
        regs = [r for r in regs if r.vendor in (vendor, "both")]
    if pattern:
        wanted = matcher(pattern)
        regs = [r for r in regs if wanted(r)]
    return regs
