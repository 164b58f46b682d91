"""Turn errnos from opening /dev/msrdrv and from single ops into explained errors."""

from __future__ import annotations

import errno
import os

from . import errors, system
from .errors import MsrctlError

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
            "make the node group read-write (mode 0660, see the udev rule) or run as root",
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


def open_error(path: str, err: int) -> MsrctlError:
    what = f"cannot open {path}"
    if err == errno.ENOENT:
        if not system.module_loaded():
            return MsrctlError(what, "msrdrv module not loaded", "run `msrctl load` (as root)", errors.NOT_LOADED)
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
) -> MsrctlError:
    """One failed op: kind is read/write/rdtsc; writes_reason explains an EPERM write."""
    if err == errno.ENXIO:
        cpus = online if online is not None else system.online_cpus()
        return MsrctlError(
            f"no such CPU {cpu}",
            f"it is absent or offline (online: {system.cpu_list_text(cpus)})",
            "choose an online CPU with -p, or use -a for all",
            errors.NO_CPU,
        )
    target = "TSC" if kind == "rdtsc" else _msr(msr, name)
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
    if err == errno.EPERM:
        why, fix = writes_reason_text(writes_reason)
        return MsrctlError(f"write to {target} on CPU {cpu} refused", why, fix, errors.PERMISSION)
    if err == errno.EACCES:
        return MsrctlError(
            f"{kind} of {target} on CPU {cpu} refused",
            "the msrdrv allowlist does not permit it",
            "run as root (CAP_SYS_RAWIO) or ask the admin to allow this MSR",
            errors.PERMISSION,
        )
    return MsrctlError(f"{kind} of {target} on CPU {cpu} failed", os.strerror(err), "see `msrctl status`")


WRITE_REFUSALS = {
    "rawio": ("writing MSRs needs CAP_SYS_RAWIO", "run it as root (sudo msrctl ...)"),
    "lockdown": ("kernel lockdown forbids MSR writes", "boot without lockdown (Secure Boot enforces it) to write"),
    "disabled": (
        "msrdrv was loaded with allow_writes=0",
        "as root: echo 1 > /sys/module/msrdrv/parameters/allow_writes",
    ),
}


def writes_reason_text(reason: str | None) -> tuple[str, str]:
    return WRITE_REFUSALS.get(
        reason or "",
        ("writes are refused (no CAP_SYS_RAWIO, lockdown, or allow_writes=0)", "see `msrctl status`"),
    )
