"""Parse a sampling interval such as 100ms, 1s, 0.5s or 2m into nanoseconds."""

from __future__ import annotations

import re

from ..errors import UsageError

UNITS_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
MIN_NS = 1_000_000  # 1 ms: below that the sample itself (an IPI to every CPU) is the interval
MAX_NS = 3_600_000_000_000  # 1 h
_FIX = "write it like 100ms, 1s, 0.5s or 2m (units us, ms, s, m, h; a bare number is seconds)"


def parse_interval(text: str) -> int:
    """Nanoseconds in an interval like '100ms', '1s', '0.5s', '2m' or '2' (seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h)?\s*", text)
    if not m:
        raise UsageError(f"malformed interval '{text}'", "expected a number and a unit", _FIX)
    number, unit = m.group(1), m.group(2) or "s"
    whole, _, frac = number.partition(".")
    scale = UNITS_NS[unit]
    # exact decimal arithmetic: 0.1s is 100000000 ns, not a float's neighbour
    ns = int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
    if ns < MIN_NS:
        raise UsageError(
            f"interval '{text}' is too short", "the shortest is 1ms (a sample sends an IPI to every CPU)", _FIX
        )
    if ns > MAX_NS:
        raise UsageError(f"interval '{text}' is too long", "the longest is 1h", _FIX)
    return ns


def format_interval(ns: int) -> str:
    """100000000 -> '100 ms', 1500000000 -> '1.5 s', for messages."""
    return f"{ns / 1e9:g} s" if ns >= UNITS_NS["s"] else f"{ns / 1e6:g} ms"
