"""The msrdrv allowlist: what openers without CAP_SYS_RAWIO may touch.

Text format (the one LLNL's msr-safe uses, so its lists load unchanged): one
MSR per line, its number (or a register name) and a write mask; '#' starts a
comment.  A listed MSR is readable and the bits set in its mask writable; an
optional third field `write-only` (our extension) makes it unreadable, for
MSRs whose value must not reach users (write-only MSRs take mask ~0).

    0x10               0x0000000000000000   # TSC: read only
    IA32_PERFEVTSEL0   0x00000000ffcdffff   # event select: no OS, INT, AnyThread
    0xc0000103         0x000000000000ff00  write-only

MSRs that hold kernel addresses (protected.py) are refused, as the kernel
refuses them, and so is a write mask on an MSR that steers the kernel (a
list may make those readable only).  Every refused line is named at once;
with drop=True they are dropped (a kernel-control MSR keeps its read) and
each drop is named instead.  Profiles are jinja2 templates
(templates/allowlist-<name>.j2) rendered to that format; several merge into
one list.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device import abi
from ..errors import PERMISSION, USAGE, MsrctlError, UsageError
from ..registers.names import parse_msr
from ..registers.parse import parse_int

MAX_ENTRIES = abi.ALLOWLIST_MAX
TEMPLATES = Path(__file__).parent.parent / "templates"
NO_READ = "write-only"  # the optional third field
PROTECTED_WHY = "msrdrv never lets group members read or write it"
PROTECTED_FIX = "remove the line (root reaches it without a list)"
CONTROL_WHY = "a list may let group members read it, never write it"
CONTROL_FIX = "make the line read-only (write mask 0); root writes it without a list"
DROP_FIX = "remove those lines, or load with --drop-protected to drop them (each one is named)"


@dataclass(frozen=True)
class Entry:
    msr: int
    write_mask: int = 0
    read: bool = True


def _name(msr: int) -> str | None:
    from ..registers import table as registers

    return registers.name_of(msr)


def refusal(entry: Entry, pkrs: bool = False) -> str | None:
    """Why msrdrv refuses the entry ('MSR 0x174 (IA32_SYSENTER_CS) holds kernel addresses (...)'), or None.

    PKRS is left to the kernel unless pkrs (the kernel refused the list): it refuses PKRS
    writes only while it uses supervisor protection keys (CR4.PKS), which user space cannot see."""
    from . import protected

    refused = protected.explain(entry.msr, _name(entry.msr))
    if refused:
        return refused
    if entry.write_mask and (pkrs or entry.msr != protected.PKRS):
        return protected.explain_write(entry.msr, _name(entry.msr))
    return None


def allowed_part(entry: Entry) -> Entry | None:
    """What msrdrv accepts of a refused entry: a kernel-control MSR's read, or nothing."""
    from . import protected

    if protected.protected_range(entry.msr) or not entry.read:
        return None
    return Entry(entry.msr, 0, True)


def check_entry(entry: Entry, where: str) -> None:
    """UsageError if msrdrv would refuse the entry or it grants nothing; where is `file:line`."""
    from . import protected

    refused = refusal(entry)
    if refused and protected.protected_range(entry.msr):
        raise UsageError(f"{where}: {refused}", PROTECTED_WHY, PROTECTED_FIX)
    if refused:
        fix = CONTROL_FIX if entry.read else "drop the line (root writes it without a list)"
        raise UsageError(f"{where}: {refused}", CONTROL_WHY, fix)
    if not entry.read and not entry.write_mask:
        raise UsageError(
            f"{where}: MSR {entry.msr:#x} is {NO_READ} with write mask 0",
            "the entry grants nothing",
            "give the bits group members may write, or drop the line",
        )


def validate(entries: Iterable[Entry], source: str = "<allowlist>") -> list[Entry]:
    """Entries sorted by MSR, each checked; UsageError for a protected MSR, a duplicate or too many."""
    seen: set[int] = set()
    out = []
    for e in entries:
        check_entry(e, source)
        if e.msr in seen:
            raise UsageError(f"{source}: MSR {e.msr:#x} listed twice", "an allowlist names each MSR once", "merge them")
        seen.add(e.msr)
        out.append(e)
    if len(out) > MAX_ENTRIES:
        raise UsageError(
            f"{source}: {len(out)} entries", f"msrdrv takes at most {MAX_ENTRIES}", "split off what is not needed"
        )
    return sorted(out, key=lambda e: e.msr)


def parse(text: str, source: str = "<allowlist>") -> list[Entry]:
    """Entries sorted by MSR; a malformed line raises UsageError naming `source:line`, and the
    lines msrdrv would refuse are named all at once."""
    return parse_dropping(text, source, drop=False)[0]


def parse_dropping(text: str, source: str = "<allowlist>", drop: bool = True) -> tuple[list[Entry], list[str]]:
    """(the entries, one note per refused line dropped), as parse(); with drop False a refused
    line is an error, all of them in one."""
    seen: dict[int, int] = {}
    entries: list[Entry] = []
    refused: list[str] = []
    first_refused: tuple[Entry, str] | None = None  # its own error when it is the only one
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        fields = line.split()
        if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2].lower() != NO_READ):
            raise UsageError(
                f"{where}: malformed allowlist line '{line}'",
                f"expected the MSR, its write mask and optionally '{NO_READ}'; found {len(fields)} fields"
                if len(fields) not in (2, 3)
                else f"the third field may only be '{NO_READ}', not '{fields[2]}'",
                "write e.g. '0x10 0x0' (read only) or 'IA32_PERFEVTSEL0 0xffcdffff'",
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
        entry = Entry(msr, mask, len(fields) == 2)
        why = refusal(entry)
        if why is not None:
            first_refused = first_refused or (entry, where)
            kept = allowed_part(entry)
            refused.append(f"{where}: {why}" + (" (kept read-only)" if drop and kept else ""))
            if kept is None:
                continue
            entry = kept
        check_entry(entry, where)
        entries.append(entry)
    if len(refused) == 1 and first_refused is not None and not drop:
        check_entry(*first_refused)
    if refused and not drop:
        raise UsageError(f"{source}: {len(refused)} lines msrdrv would refuse", "; ".join(refused), DROP_FIX)
    return validate(entries, source), refused


def merge(lists: Iterable[Iterable[Entry]]) -> list[Entry]:
    """One list granting what any of them grants: an MSR in several is readable if one
    makes it readable, and writable in the union of their masks."""
    merged: dict[int, Entry] = {}
    for entries in lists:
        for e in entries:
            old = merged.get(e.msr)
            merged[e.msr] = Entry(e.msr, e.write_mask | old.write_mask, e.read or old.read) if old else e
    return sorted(merged.values(), key=lambda e: e.msr)


def format_entries(entries: list[Entry]) -> str:
    """The text form (what parse() takes), with register names as comments where known."""
    lines = []
    for e in entries:
        name = _name(e.msr)
        line = f"{e.msr:#010x} {e.write_mask:#018x}" + ("" if e.read else f" {NO_READ}")
        lines.append(f"{line}  # {name}" if name else line)
    return "\n".join(lines) + ("\n" if lines else "")


def profiles() -> list[str]:
    return sorted(p.name[len("allowlist-") : -len(".j2")] for p in TEMPLATES.glob("allowlist-*.j2"))


def _unknown_profile(name: str) -> UsageError:
    return UsageError(
        f"unknown allowlist profile '{name}'",
        f"the profiles are {', '.join(profiles())}",
        "pick one of them or give a file",
    )


def render_profile(name: str, **params: Any) -> str:
    """A shipped profile as allowlist text (checked by parse()); params override the template's defaults."""
    if name not in profiles():
        raise _unknown_profile(name)
    from .render import render

    context = {"vendor": "both", "gp_counters": 8, "fixed_counters": 3, **params}
    text = render(f"allowlist-{name}.j2", profile=name, **context)
    parse(text, f"profile {name}")
    return text


def render_profiles(names: list[str], **params: Any) -> str:
    """Several profiles as one list, each MSR once; one profile is its template's text unchanged."""
    if len(names) == 1:
        return render_profile(names[0], **params)
    unique = list(dict.fromkeys(names))
    entries = merge(parse(render_profile(n, **params), f"profile {n}") for n in unique)
    head = (
        f"# msrdrv allowlist: profiles {' + '.join(unique)}, merged by `msrctl allowlist render`.\n"
        "# Format: MSR  write-mask  [write-only]  (mask 0 = read only).\n"
    )
    return head + format_entries(validate(entries, "merged profiles"))


def _refused(entries: list[Entry]) -> MsrctlError:
    """The kernel's EACCES for a list: name its refused entries, or admit version skew."""
    named = [why for e in entries if (why := refusal(e, pkrs=True))]
    if named:
        return MsrctlError("msrdrv refused the allowlist", "; ".join(named), DROP_FIX, USAGE)
    return MsrctlError(
        "msrdrv refused the allowlist (EACCES)",
        "it protects an MSR in the list that this msrctl does not know is protected "
        "(msrdrv and msrctl versions differ?); dmesg names it (`allowlist refused: MSR ...`)",
        "remove that MSR from the list, and install matching versions of msrdrv-dkms and msrctl",
        USAGE,
    )


def _check(ret: int, action: str, entries: list[Entry] | None = None) -> None:
    if ret == 0:
        return
    err = -ret
    if err == errno.EPERM:
        raise MsrctlError(action, "it needs CAP_SYS_ADMIN", "run it as root (sudo)", PERMISSION)
    if err == errno.EBADF:
        raise MsrctlError(
            action,
            "the device was opened read-only (the node gives this user read access only)",
            "run it as root (sudo)",
            PERMISSION,
        )
    if err == errno.EACCES and entries is not None:
        raise _refused(entries)
    if err == errno.ENOTTY:
        raise MsrctlError(
            action,
            "msrdrv does not know the allowlist ioctl: it is another version (older msrdrv used ioctl magic 0xb7)",
            "install matching versions of msrdrv-dkms and msrctl (see `msrctl status`)",
        )
    if err in (errno.EINVAL, errno.E2BIG):
        raise MsrctlError(action, f"the module rejected the list ({errno.errorcode[err]})", "check the file", USAGE)
    raise MsrctlError(action, errno.errorcode.get(err, str(err)))


def load(fd: int, entries: list[Entry]) -> None:
    """Replace the list in force; an empty list removes it.  Not checked here (the kernel is
    the judge, and tests ask it): parse() and validate() refuse what it would refuse, and why."""
    arr: Any = abi.ffi.new("struct msrdrv_allow_entry[]", max(1, len(entries)))
    for i, e in enumerate(sorted(entries, key=lambda e: e.msr)):
        arr[i].msr = e.msr
        arr[i].flags = abi.ALLOW_READ if e.read else 0
        arr[i].write_mask = e.write_mask
    hdr: Any = abi.ffi.new("struct msrdrv_allowlist *")
    hdr.abi_version = abi.ABI_VERSION
    hdr.nentries = len(entries)
    hdr.entries = abi.address(arr)
    _check(abi.ioctl(fd, abi.IOC_SET_ALLOWLIST, hdr), "loading the allowlist", entries)


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
