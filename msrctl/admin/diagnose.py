"""Turn errnos from opening /dev/msrdrv and from single ops into explained errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import errors
from ..device import cpus
from ..device.ops import MASK_ALL
from ..errors import ASK_FOR_LIST, LOAD_PROFILE, MsrctlError
from . import system

if TYPE_CHECKING:  # the allowlist module loads cffi: only for the type here
    from .allowlist import Entry

# For a kernel without module support (CONFIG_MODULES): `msrctl read` and `status` both say it.
NO_MODULES_FIX = "boot a kernel built with module support (CONFIG_MODULES=y), such as Debian's linux-image-amd64"
JOIN_GROUP = f"join the group: sudo usermod -aG {system.GROUP} $USER, then log in again"


def permission_fix(node: system.Node, user: system.User) -> tuple[str, str]:
    """Why this user cannot open the node, and what to do."""
    owner = f"{node.owner}:{node.group} {node.mode:04o}"
    if node.group != system.GROUP:
        return (
            f"permission denied: the node is {owner}, not group {system.GROUP} (udev rule missing)",
            "install the rule: msrctl generate udev-rule -o /etc/udev/rules.d/60-msrdrv.rules, "
            "then udevadm control --reload && udevadm trigger; or run as root",
        )
    if not user.group_exists:
        return (
            f"permission denied: the node is {owner} but group {system.GROUP} does not exist",
            f"create it (sudo groupadd -r {system.GROUP}), then {JOIN_GROUP}",
        )
    if user.group_member:
        return (
            f"permission denied although you are in group {system.GROUP} (node {owner})",
            "make the node group-readable, mode 0640 (read-only) or 0660 (see the udev rule), or run as root",
        )
    if user.group_listed:
        return (
            f"permission denied: the node is {owner}; you were added to group {system.GROUP} "
            "after this session started",
            f"log in again (or run: newgrp {system.GROUP})",
        )
    return (
        f"permission denied: the node is {owner} and you are not in group {system.GROUP}",
        JOIN_GROUP,
    )


# What else to do when msrdrv is not loaded: the stock driver can stand in (backend auto) ...
STOCK_FALLBACK = "or `modprobe msr` (as root) to use the kernel's msr driver instead"
# ... unless the user asked for msrdrv alone.
MSRDRV_ONLY = "since --backend msrdrv (or MSRCTL_BACKEND) asks for msrdrv only"


def open_error(path: str, err: int, fallback: str | None = STOCK_FALLBACK) -> MsrctlError:
    """Why msrdrv's node did not open; fallback: what else to do when msrdrv is not loaded (None: nothing)."""
    what = f"cannot open {path}"
    if err == errno.ENOENT:
        if path not in (errors.DEFAULT_DEVICE, str(cpus.sysroot() / "dev/msrdrv")):
            # A path the user chose: the path is the first suspect, whatever the module's state.
            loaded = system.module_loaded()
            return MsrctlError(
                what,
                "no such file" + ("" if loaded else " (and msrdrv is not loaded)"),
                f"check the path given with --device or MSRCTL_DEVICE (msrdrv's node is {errors.DEFAULT_DEVICE})"
                + ("" if loaded else "; load msrdrv with `msrctl load` (as root)"),
                errors.NOT_LOADED,
            )
        if not system.module_support():
            return MsrctlError(
                what,
                "msrdrv is not loaded, and this kernel cannot load modules (no /proc/modules)",
                NO_MODULES_FIX,
                errors.NOT_LOADED,
            )
        if not system.module_loaded():
            fix = "run `msrctl load` (as root)" + (f", {fallback}" if fallback else "")
            return MsrctlError(what, "msrdrv module not loaded", fix, errors.NOT_LOADED)
        return MsrctlError(
            what,
            "no such device node although msrdrv is loaded",
            "check the path (--device, MSRCTL_DEVICE) or let udev create it: udevadm trigger",
            errors.NOT_LOADED,
        )
    if err == errno.ENXIO or err == errno.ENODEV:
        return MsrctlError(
            what, "the node exists but no driver answers (module unloaded?)", "run `msrctl load`", errors.NOT_LOADED
        )
    if err in (errno.EACCES, errno.EPERM):
        why, fix = permission_fix(system.node(path), system.user())
        return MsrctlError(what, why, fix, errors.PERMISSION)
    return MsrctlError(what, os.strerror(err), "see `msrctl status`", errors.FAILURE)


def stock_open_error(node: str, err: int) -> MsrctlError:
    """Why the kernel's msr driver's node did not open (the stock backend)."""
    what = f"cannot open {node}"
    if err in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
        return MsrctlError(
            what,
            "the kernel's msr driver is not loaded (asked for with --backend msr or MSRCTL_BACKEND)",
            "as root: modprobe msr; or use msrdrv: sudo msrctl load",
            errors.NOT_LOADED,
        )
    if err in (errno.EACCES, errno.EPERM):
        return MsrctlError(
            what,
            "the kernel's msr driver is for root only (its nodes are root:root 0600 and it requires CAP_SYS_RAWIO)",
            f"run as root; or have msrdrv loaded (sudo msrctl load), whose allowlist lets group {system.GROUP} in",
            errors.PERMISSION,
        )
    return MsrctlError(what, os.strerror(err), "see `msrctl status`", errors.FAILURE)


def no_such_cpu(
    cpu: int, online: list[int] | None = None, fix: str = "choose an online CPU with -p, or use -a for all"
) -> MsrctlError:
    """A CPU that is absent or offline (exit 2, as rdmsr), naming the online ones."""
    present = online if online is not None else cpus.online_cpus()
    return MsrctlError(
        f"no such CPU {cpu}", f"it is absent or offline (online: {cpus.cpu_list_text(present)})", fix, errors.NO_CPU
    )


def _msr(msr: int, name: str | None) -> str:
    return f"MSR {msr:#x} ({name})" if name else f"MSR {msr:#x}"


def op_error(
    kind: str,
    cpu: int,
    msr: int,
    name: str | None,
    err: int,
    value: int = 0,
    online: list[int] | None = None,
    writes_reason: str | None = None,
    mask: int | None = None,
    entries: Sequence[Entry] | None = None,
) -> MsrctlError:
    """One failed op: kind is read/write/rdtsc; writes_reason explains an EPERM write, mask is a
    write's, entries the allowlist in force (None if unknown) to explain an EACCES."""
    if err == errno.ENXIO:
        return no_such_cpu(cpu, online)
    target = "TSC" if kind == "rdtsc" else _msr(msr, name)
    if err == errno.EIO and kind == "rdtsc":  # only the stock driver: msrdrv runs the RDTSC instruction
        return MsrctlError(
            f"RDTSC on CPU {cpu} failed",
            "the kernel's msr driver reads the TSC as MSR 0x10 (IA32_TIME_STAMP_COUNTER), which reads 0 here: "
            "not implemented (an emulator such as QEMU TCG?)",
            "use msrdrv, whose RDTSC runs the instruction on the CPU: sudo msrctl load",
            errors.IO_ERROR,
        )
    if err == errno.EIO:
        if kind == "write":
            return MsrctlError(
                f"{target} faulted on CPU {cpu} writing {value:#x}",
                "not implemented on this CPU, or the value sets reserved bits",
                "check the register number for this CPU model and the value",
                errors.IO_ERROR,
            )
        return MsrctlError(
            f"{target} faulted on CPU {cpu}",
            "not implemented on this CPU",
            "check the register number for this CPU model",
            errors.IO_ERROR,
        )
    if err == errno.EBADF:
        return MsrctlError(
            f"write to {target} on CPU {cpu} refused",
            f"{errors.DEFAULT_DEVICE} was opened read-only (the node gives this user read access only)",
            "ask an admin for a group read-write node (MODE 0660 in the udev rule), or run as root",
            errors.PERMISSION,
        )
    if err == errno.EPERM and kind != "write":  # RDTSC, or a read of IA32_TIME_STAMP_COUNTER
        return MsrctlError(
            f"{'RDTSC' if kind == 'rdtsc' else f'read of {target}'} on CPU {cpu} refused",
            "this process disabled the TSC (prctl PR_SET_TSC, PR_TSC_SIGSEGV)",
            "run msrctl from a process that allows RDTSC",
            errors.PERMISSION,
        )
    if err == errno.EPERM:
        why, fix = writes_reason_text(writes_reason)
        return MsrctlError(f"write to {target} on CPU {cpu} refused", why, fix, errors.PERMISSION)
    if err == errno.EACCES:
        why, fix = access_denied(kind, msr, name, ~0 if mask is None else mask, entries)
        return MsrctlError(f"{kind} of {target} on CPU {cpu} refused", why, fix, errors.PERMISSION)
    return MsrctlError(f"{kind} of {target} on CPU {cpu} failed", os.strerror(err), "see `msrctl status`")


def access_denied(kind: str, msr: int, name: str | None, mask: int, entries: Sequence[Entry] | None) -> tuple[str, str]:
    """Why the allowlist refused a read or write of msr, and exactly what to ask an admin for."""
    from . import protected

    refused = protected.explain(msr, name)
    if refused:
        return f"{refused}; msrdrv never lets group members read or write it", "run it as root (CAP_SYS_RAWIO)"
    mask &= MASK_ALL
    line = f"{msr:#x} 0x0" if kind == "read" else f"{msr:#x} {mask:#x}"
    if entries is None:
        return "not permitted by the msrdrv allowlist (none loaded, or it does not list this MSR for this access)", (
            ASK_FOR_LIST
        )
    if not entries:
        why = f"no msrdrv allowlist is loaded, and without one group {system.GROUP} may read and write nothing"
        profile = _profile_granting(kind, msr, mask)
        if profile:
            return why, f"ask an admin to run: {LOAD_PROFILE}{profile}"
        return why, f"ask an admin to run: echo '{line}' | sudo msrctl allowlist load - (no shipped profile lists it)"
    entry = next((e for e in entries if e.msr == msr), None)
    if entry is None:
        return "the msrdrv allowlist in force does not list it", (
            f"ask an admin to add the line '{line}' to it (`msrctl allowlist show` prints it)"
        )
    if kind == "read" and not entry.read:
        return "the msrdrv allowlist lets group members write it but not read it (write-only)", (
            "ask an admin to make it readable (drop 'write-only' from its line), or run as root"
        )
    if kind == "write" and not entry.write_mask:
        return "the msrdrv allowlist lets group members read it but not write it (write mask 0)", (
            "ask an admin to give its line the bits you need to write, or run as root"
        )
    if kind == "write" and not mask & entry.write_mask:
        return (
            f"the msrdrv allowlist lets group members write only bits {entry.write_mask:#x} of it, "
            f"and this write may change none of them (mask {mask:#x})",
            "write only permitted bits (--mask), or ask an admin to widen its write mask",
        )
    return "not permitted by the msrdrv allowlist (it changed meanwhile?)", "see `msrctl allowlist show`"


def _profile_granting(kind: str, msr: int, mask: int) -> str | None:
    """A shipped profile that grants this access (telemetry first): what to ask for."""
    from . import allowlist

    for name in sorted(allowlist.profiles(), key=lambda p: p != "telemetry"):
        entries = allowlist.parse(allowlist.render_profile(name), f"profile {name}")
        entry = next((e for e in entries if e.msr == msr), None)
        if entry and (entry.read if kind == "read" else bool(entry.write_mask & mask)):
            return name
    return None


WRITE_REFUSALS = {
    "lockdown": ("kernel lockdown forbids MSR writes", "boot without lockdown (Secure Boot enforces it) to write"),
    "disabled": (
        "msrdrv was loaded with allow_writes=0",
        "as root: echo 1 > /sys/module/msrdrv/parameters/allow_writes",
    ),
    "msr_off": (
        "the kernel's msr driver refuses writes (msr.allow_writes=off)",
        "as root: echo on > /sys/module/msr/parameters/allow_writes",
    ),
}


def writes_reason_text(reason: str | None) -> tuple[str, str]:
    return WRITE_REFUSALS.get(
        reason or "",
        ("writes are refused (kernel lockdown or allow_writes=0)", "see `msrctl status`"),
    )
