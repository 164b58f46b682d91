"""What a well-formed entry of data/registers.json is: keys, bit ranges and field kinds.

The register table is data that code trusts (decode turns its kinds into watts and
degrees), so every entry is checked when the table loads: a typo fails loudly here,
naming the entry and the field, instead of decoding a value wrongly.
"""

from __future__ import annotations

import re
from typing import Any

VENDORS = ("intel", "amd", "both")

# What each field kind means; msrctl.decode turns each into text and units.
FIELD_KINDS: dict[str, str] = {
    "int": "a number",
    "hex": "a number shown in hex (revisions, IDs)",
    "flag": "one bit: yes or no",
    "address": "an address: the field in place, the bits below it zero",
    "enum": "named values",
    "ratio": "a multiplier of the bus clock (100 MHz on Intel): MHz",
    "perf_level": "an abstract performance level (HWP, CPPC)",
    "power": "RAPL power units: W",
    "energy": "RAPL energy units: J",
    "rapl_time": "RAPL time units: s",
    "rapl_window": "RAPL time window 2^Y*(1+Z/4) time units (Y bits 4:0, Z bits 6:5): s",
    "power_unit": "RAPL power unit 1/2^n W",
    "energy_unit": "RAPL energy unit 1/2^n J",
    "time_unit": "RAPL time unit 1/2^n s",
    "celsius": "degrees Celsius",
    "below_tjmax": "degrees below TjMax (MSR_TEMPERATURE_TARGET): C",
    "scaled": "the number times a fixed scale, in a fixed unit",
    "tsc_count": "TSC ticks: s at the TSC frequency",
    "activity_window": "HWP activity window: mantissa (bits 6:0) x 10^exponent (bits 9:7) us",
    "rapl_max_window": "RAPL time units: s, 0 meaning not specified",
    "tcc_offset": "degrees below TjMax where the TCC activates; its width is the model's",
    "pkg_cstate_limit": "a package C-state limit code, named per model",
    "turbo_ratio": "a turbo bucket's ratio (MHz); its active-core count is the model's",
}
# The unit each kind's decoded value is in ("" for plain numbers, flags, enums).
UNITS: dict[str, str] = {
    "ratio": "MHz",
    "power": "W",
    "energy": "J",
    "rapl_time": "s",
    "rapl_window": "s",
    "power_unit": "W",
    "energy_unit": "J",
    "time_unit": "s",
    "celsius": "C",
    "below_tjmax": "C",
    "tsc_count": "s",
    "activity_window": "s",
    "rapl_max_window": "s",
    "tcc_offset": "C",
    "turbo_ratio": "MHz",
}
# Values computed from several fields of one register.
DERIVED_KINDS: dict[str, tuple[str, ...]] = {
    "amd_pstate_freq": ("CPU_FID", "CPU_DFS_ID"),  # the fields each one reads
    "amd_pstate_current": ("IDD_VALUE", "IDD_DIV"),
    "tcc_activation": ("TCC_ACTIVATION_TEMP", "TCC_OFFSET"),
}
_WIDTHS = {"rapl_window": 7, "activity_window": 10}
_ENTRY_KEYS = {"name", "msr", "vendor", "description", "aliases", "fields", "count", "stride", "zero", "derived"}
_FIELD_KEYS = {"bits", "kind", "doc", "unit", "scale", "values", "other", "valid"}
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class TableError(Exception):
    """A malformed entry in the register table."""


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.load's object_pairs_hook: a key given twice is an error, not a silent overwrite."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TableError(f"key '{key}' appears twice in one object")
        out[key] = value
    return out


def bits(text: object) -> tuple[int, int]:
    """'hi:lo' or 'n' as (high, low), checked to lie in 63..0."""
    if not isinstance(text, str) or not re.fullmatch(r"\d+(:\d+)?", text):
        raise TableError(f"bits {text!r} are not 'hi:lo' or 'n'")
    high, _, low = text.partition(":")
    hi, lo = int(high), int(low or high)
    if not 0 <= lo <= hi <= 63:
        raise TableError(f"bits {text} are not within 63..0 with hi >= lo")
    return hi, lo


def field_spec(spec: object) -> dict[str, Any]:
    """A field as a dict with at least bits and kind: "hi:lo" is shorthand for {"bits": "hi:lo"}."""
    data = {"bits": spec} if isinstance(spec, str) else spec
    if not isinstance(data, dict):
        raise TableError("a field is 'hi:lo' or an object with 'bits'")
    unknown = set(data) - _FIELD_KEYS
    if unknown:
        raise TableError(f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_FIELD_KEYS))})")
    hi, lo = bits(data.get("bits"))
    out = dict(data)
    out.setdefault("kind", "flag" if hi == lo else "int")
    _check_kind(out, hi, lo)
    return out


def _check_kind(spec: dict[str, Any], hi: int, lo: int) -> None:
    kind = spec["kind"]
    width = hi - lo + 1
    if kind not in FIELD_KINDS:
        raise TableError(f"unknown kind {kind!r} (known: {', '.join(FIELD_KINDS)})")
    if kind == "flag" and width != 1:
        raise TableError("a flag is one bit")
    if kind in _WIDTHS and width != _WIDTHS[kind]:
        raise TableError(f"a {kind} field is {_WIDTHS[kind]} bits wide")
    for key, owner in (("values", "enum"), ("other", "enum"), ("scale", "scaled"), ("unit", "scaled")):
        if key in spec and kind != owner:
            raise TableError(f"'{key}' belongs to kind {owner}, not {kind}")
    if "valid" in spec and kind != "below_tjmax":
        raise TableError(f"'valid' belongs to kind below_tjmax, not {kind}")
    if kind == "enum":
        values = spec.get("values")
        if not isinstance(values, dict) or not values:
            raise TableError('an enum needs \'values\': {"number": "meaning", ...}')
        for key, text in values.items():
            if not re.fullmatch(r"\d+", key) or int(key) >= 1 << width:
                raise TableError(f"enum value {key!r} is not a number that fits in {width} bits")
            if not isinstance(text, str) or not text:
                raise TableError(f"enum value {key} needs a meaning")
    if kind == "scaled":
        scale = spec.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise TableError("a scaled field needs a positive 'scale'")
        if not isinstance(spec.get("unit"), str) or not spec["unit"]:
            raise TableError("a scaled field needs a 'unit'")
    for key in ("doc", "other"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key]):
            raise TableError(f"'{key}' must be a non-empty string")


def check_entry(entry: object) -> None:
    """Raise TableError, naming the entry and what is wrong, unless entry is well-formed."""
    if not isinstance(entry, dict):
        raise TableError("an entry is a JSON object")
    label = f"entry {entry.get('name', '?')!r}"
    try:
        _check(entry)
    except TableError as e:
        raise TableError(f"{label}: {e}") from None


def _check(entry: dict[str, Any]) -> None:
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise TableError(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "msr", "vendor", "description"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise TableError(f"'{key}' is missing or not a string")
    if not re.fullmatch(r"0x[0-9a-fA-F]{1,8}", entry["msr"]):
        raise TableError(f"msr {entry['msr']!r} is not hex like 0x1b")
    if entry["vendor"] not in VENDORS:
        raise TableError(f"vendor {entry['vendor']!r} is not one of {', '.join(VENDORS)}")
    for key in ("count", "stride"):
        if key in entry and (not isinstance(entry[key], int) or isinstance(entry[key], bool) or entry[key] < 1):
            raise TableError(f"'{key}' must be a positive integer")
    if "count" in entry and "{n}" not in entry["name"]:
        raise TableError("an entry with a count needs {n} in its name")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise TableError("'aliases' must be a list of names")
    if "zero" in entry and (not isinstance(entry["zero"], str) or not entry["zero"]):
        raise TableError("'zero' must say what a 0 read means")
    fields = entry.get("fields", {})
    if not isinstance(fields, dict):
        raise TableError("'fields' must be an object")
    specs: dict[str, dict[str, Any]] = {}
    taken: set[int] = set()
    for name, raw in fields.items():
        if not _FIELD_NAME.fullmatch(name):
            raise TableError(f"field name {name!r} is not upper case letters, digits and _")
        try:
            spec = field_spec(raw)
        except TableError as e:
            raise TableError(f"field {name}: {e}") from None
        hi, lo = bits(spec["bits"])
        span = set(range(lo, hi + 1))
        if span & taken:
            raise TableError(f"field {name} overlaps another field")
        taken |= span
        specs[name] = spec
    for name, spec in specs.items():
        valid = spec.get("valid")
        if valid is not None and (valid not in specs or specs[valid]["kind"] != "flag"):
            raise TableError(f"field {name}: 'valid' must name a flag field of this register")
    _check_derived(entry.get("derived", []), specs)


def _check_derived(derived: object, specs: dict[str, dict[str, Any]]) -> None:
    if not isinstance(derived, list):
        raise TableError("'derived' must be a list")
    for item in derived:
        if not isinstance(item, dict) or set(item) != {"name", "kind"}:
            raise TableError('a derived value is {"name": ..., "kind": ...}')
        if item["kind"] not in DERIVED_KINDS:
            raise TableError(f"unknown derived kind {item['kind']!r} (known: {', '.join(DERIVED_KINDS)})")
        missing = [f for f in DERIVED_KINDS[item["kind"]] if f not in specs]
        if missing:
            raise TableError(f"derived {item['name']} needs field(s) {', '.join(missing)}")
        if not isinstance(item["name"], str) or not _FIELD_NAME.fullmatch(item["name"]) or item["name"] in specs:
            raise TableError(f"derived name {item['name']!r} must be a new upper-case name")
