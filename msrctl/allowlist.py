"""The msrdrv allowlist: what openers without CAP_SYS_RAWIO may touch.

Text format (the one LLNL's msr-safe uses, so its lists load unchanged): one
MSR per line, its number (or a register name) and a write mask; '#' starts a
comment.  Every listed MSR is readable; bits set in the mask are writable.

    0x10               0x0000000000000000   # TSC: read only
    IA32_PERFEVTSEL0   0x00000000ffefffff   # event select, no APIC interrupt

Profiles are jinja2 templates (templates/allowlist-<name>.j2) rendered to
that format.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import abi
from .errors import PERMISSION, USAGE, MsrctlError, UsageError
from .parse import parse_int, parse_msr

MAX_ENTRIES = abi.ALLOWLIST_MAX
TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Entry:
    msr: int
    write_mask: int = 0
    read: bool = True


def parse(text: str, source: str = "<allowlist>") -> list[Entry]:
    """Entries sorted by MSR; any bad line raises UsageError naming `source:line`."""
    seen: dict[int, int] = {}
    entries: list[Entry] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        fields = line.split()
        if len(fields) != 2:
            raise UsageError(
                f"{where}: malformed allowlist line '{line}'",
                f"expected 2 fields (MSR and write mask), found {len(fields)}",
                "write e.g. '0x10 0x0' (read only) or 'IA32_PERFEVTSEL0 0xffefffff'",
            )
        try:
            msr = parse_msr(fields[0])
            mask = parse_int(fields[1], "mask", 64)
        except UsageError as e:
            raise e.at(where) from None
        if msr in seen:
            raise UsageError(
                f"{where}: MSR {msr:#x} listed twice",
                f"line {seen[msr]} lists it already",
                "keep one line per MSR",
            )
        seen[msr] = lineno
        entries.append(Entry(msr, mask))
    if len(entries) > MAX_ENTRIES:
        raise UsageError(
            f"{source}: {len(entries)} entries", f"msrdrv takes at most {MAX_ENTRIES}", "split off what is not needed"
        )
    return sorted(entries, key=lambda e: e.msr)


def format_entries(entries: list[Entry]) -> str:
    """The text form, with register names as comments where known."""
    from . import registers

    lines = []
    for e in entries:
        name = registers.name_of(e.msr)
        line = f"{e.msr:#010x} {e.write_mask:#018x}"
        lines.append(f"{line}  # {name}" if name else line)
    return "\n".join(lines) + ("\n" if lines else "")


def profiles() -> list[str]:
    return sorted(p.name[len("allowlist-") : -len(".j2")] for p in TEMPLATES.glob("allowlist-*.j2"))


def render_profile(name: str, **params: Any) -> str:
    """A shipped profile as allowlist text; params override the template's defaults."""
    if name not in profiles():
        raise UsageError(
            f"unknown allowlist profile '{name}'",
            f"the profiles are {', '.join(profiles())}",
            "pick one of them or give a file",
        )
    from .render import render

    context = {"vendor": "both", "gp_counters": 8, "fixed_counters": 3, **params}
    return render(f"allowlist-{name}.j2", profile=name, **context)


def _check(ret: int, action: str) -> None:
    if ret == 0:
        return
    err = -ret
    if err == errno.EPERM:
        raise MsrctlError(action, "it needs CAP_SYS_ADMIN", "run it as root (sudo)", PERMISSION)
    if err == errno.ENOTTY:
        raise MsrctlError(action, "this msrdrv module has no allowlist support", "install msrdrv 0.1.0 or newer")
    if err in (errno.EINVAL, errno.E2BIG):
        raise MsrctlError(action, f"the module rejected the list ({errno.errorcode[err]})", "check the file", USAGE)
    raise MsrctlError(action, errno.errorcode.get(err, str(err)))


def load(fd: int, entries: list[Entry]) -> None:
    """Replace the list in force (atomically); an empty list removes it."""
    arr: Any = abi.ffi.new("struct msrdrv_allow_entry[]", max(1, len(entries)))
    for i, e in enumerate(sorted(entries, key=lambda e: e.msr)):
        arr[i].msr = e.msr
        arr[i].flags = abi.ALLOW_READ if e.read else 0
        arr[i].write_mask = e.write_mask
    hdr: Any = abi.ffi.new("struct msrdrv_allowlist *")
    hdr.abi_version = abi.ABI_VERSION
    hdr.nentries = len(entries)
    hdr.entries = abi.address(arr)
    _check(abi.ioctl(fd, abi.IOC_SET_ALLOWLIST, hdr), "loading the allowlist")


def clear(fd: int) -> None:
    load(fd, [])


def current(fd: int) -> list[Entry]:
    """The list in force ([] when none is loaded)."""
    arr: Any = abi.ffi.new("struct msrdrv_allow_entry[]", MAX_ENTRIES)
    hdr: Any = abi.ffi.new("struct msrdrv_allowlist *")
    hdr.abi_version = abi.ABI_VERSION
    hdr.nentries = MAX_ENTRIES
    hdr.entries = abi.address(arr)
    _check(abi.ioctl(fd, abi.IOC_GET_ALLOWLIST, hdr), "reading the allowlist")
    n = min(int(hdr.nentries), MAX_ENTRIES)
    return [Entry(int(arr[i].msr), int(arr[i].write_mask), bool(arr[i].flags & abi.ALLOW_READ)) for i in range(n)]
