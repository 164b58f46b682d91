"""Performance events by name, and the event-select encoding.

Intel: the architectural events of the SDM (Vol. 3B, "Architectural
Performance Monitoring", pre-defined events), encoded in IA32_PERFEVTSELx.
AMD: the equivalents Linux's perf uses for Zen cores, encoded in
PERF_CTLx (event select bits 11:8 live in bits 35:32).  Raw events are
written `event:umask` (hex), e.g. `0xc0:0x00`, optionally `:cmask=N`,
`:inv`, `:edge`, `:os` (count kernel mode too).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

# IA32_PERFEVTSELx / AMD PERF_CTLx bits
USR = 1 << 16
OS = 1 << 17
EDGE = 1 << 18
PC = 1 << 19
INT = 1 << 20
ANY = 1 << 21
EN = 1 << 22
INV = 1 << 23


@dataclass(frozen=True)
class Event:
    name: str
    event: int  # up to 8 bits on Intel, 12 on AMD
    umask: int = 0
    cmask: int = 0
    inv: bool = False
    edge: bool = False
    kernel: bool = False  # count ring 0 too (OS bit); user mode is always counted
    fixed: int | None = None  # Intel fixed counter that counts exactly this, if any
    description: str = ""


INTEL: dict[str, Event] = {
    e.name: e
    for e in (
        Event("cycles", 0x3C, 0x00, fixed=1, description="core cycles while not halted"),
        Event("instructions", 0xC0, 0x00, fixed=0, description="instructions retired"),
        Event("ref-cycles", 0x3C, 0x01, fixed=2, description="reference cycles (TSC rate) while not halted"),
        Event("llc-references", 0x2E, 0x4F, description="last-level cache references"),
        Event("llc-misses", 0x2E, 0x41, description="last-level cache misses"),
        Event("branches", 0xC4, 0x00, description="branch instructions retired"),
        Event("branch-misses", 0xC5, 0x00, description="mispredicted branches retired"),
    )
}

AMD: dict[str, Event] = {
    e.name: e
    for e in (
        Event("cycles", 0x76, 0x00, description="core clocks not halted"),
        Event("instructions", 0xC0, 0x00, description="instructions retired"),
        Event("llc-references", 0x60, 0xFF, description="L2 cache requests (perf's cache-references on Zen)"),
        Event("llc-misses", 0x64, 0x09, description="L2 misses from core requests (perf's cache-misses on Zen)"),
        Event("branches", 0xC2, 0x00, description="branch instructions retired"),
        Event("branch-misses", 0xC3, 0x00, description="mispredicted branches retired"),
    )
}

ALIASES = {"cpu-cycles": "cycles", "inst": "instructions", "cache-references": "llc-references",
           "cache-misses": "llc-misses", "branch-instructions": "branches"}  # fmt: skip


def table(vendor: str) -> dict[str, Event]:
    return AMD if vendor == "amd" else INTEL


_FLAGS = ("inv", "edge", "os")


def _hex(text: str, whole: str, what: str, limit: int) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise UsageError(
            f"malformed raw event '{whole}'", f"the {what} '{text}' is not hex", "write e.g. 0xc0:0x00"
        ) from None
    if value > limit:
        raise UsageError(
            f"raw event '{whole}' out of range", f"the {what} has {limit.bit_length()} bits", "check your CPU's tables"
        )
    return value


def _raw(text: str, vendor: str) -> Event:
    """event[:umask][:cmask=N][:inv][:edge][:os], hex codes."""
    parts = text.split(":")
    event = _hex(parts[0], text, "event code", 0xFFF if vendor == "amd" else 0xFF)
    rest = parts[1:]
    umask = 0
    if rest and rest[0] not in _FLAGS and "=" not in rest[0]:
        umask = _hex(rest.pop(0), text, "umask", 0xFF)
    cmask, flags = 0, set()
    for p in rest:
        if p.startswith("cmask="):
            cmask = _hex(p[6:], text, "cmask", 0xFF)
        elif p in _FLAGS:
            flags.add(p)
        else:
            raise UsageError(
                f"raw event '{text}': unknown modifier '{p}'", "modifiers are cmask=N, inv, edge and os", ""
            )
    return Event(text, event, umask, cmask, "inv" in flags, "edge" in flags, "os" in flags)


def parse(names: str, vendor: str | None = None) -> list[Event]:
    """A comma-separated event list: names from the table or raw event:umask.

    vendor ("intel" or "amd") picks the encodings; by default this machine's
    CPU vendor, so the same code programs the right events on either."""
    if vendor is None:
        from .pmu import cpu_vendor

        vendor = cpu_vendor()
    events = []
    known = table(vendor)
    for raw in (n.strip() for n in names.split(",")):
        if not raw:
            continue
        name = ALIASES.get(raw.lower(), raw.lower())
        if name in known:
            events.append(known[name])
        elif raw[:1].isdigit():
            events.append(_raw(raw, vendor))
        else:
            import difflib

            close = difflib.get_close_matches(name, list(known) + list(ALIASES), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(
                f"unknown event '{raw}'",
                f"not an event of this {vendor.upper()} CPU",
                f"{hint}the events are {', '.join(known)}, or give a raw event:umask like 0xc0:0x00",
            )
    if not events:
        raise UsageError("no events given", "-e needs at least one event", "write e.g. -e cycles,instructions")
    return events


def encode(ev: Event, vendor: str, enable: bool = True) -> int:
    """The event-select register value that counts ev in user mode (and kernel mode if ev.kernel)."""
    val = (ev.event & 0xFF) | (ev.umask << 8) | USR | (ev.cmask << 24)
    if vendor == "amd":
        val |= ((ev.event >> 8) & 0xF) << 32
    val |= OS if ev.kernel else 0
    val |= EDGE if ev.edge else 0
    val |= INV if ev.inv else 0
    val |= EN if enable else 0
    return val


def decode(value: int, vendor: str) -> dict[str, int | bool]:
    """The fields of an event-select value (for status and tests)."""
    event = value & 0xFF
    if vendor == "amd":
        event |= ((value >> 32) & 0xF) << 8
    return {
        "event": event,
        "umask": (value >> 8) & 0xFF,
        "usr": bool(value & USR),
        "os": bool(value & OS),
        "edge": bool(value & EDGE),
        "pc": bool(value & PC),
        "int": bool(value & INT),
        "any": bool(value & ANY),
        "en": bool(value & EN),
        "inv": bool(value & INV),
        "cmask": (value >> 24) & 0xFF,
    }
