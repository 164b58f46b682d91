"""Read-only probes of the running system: module state, device node, user, lockdown, dkms.

Paths under /sys and /proc are taken relative to $MSRCTL_SYSROOT (default /)
so that tests can point them at a fake tree.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import NamedTuple

from ..device.cpus import sysroot

MODULE = "msrdrv"
GROUP = "msr"
# Module tools live in sbin, which unprivileged users' PATH may lack.
_TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def tool(name: str) -> str | None:
    """Full path of a system tool, also looking in sbin."""
    return shutil.which(name, path=_TOOL_PATH)


def run_tool(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def kernel_release() -> str:
    return os.uname().release


def module_support() -> bool:
    """Whether the kernel can load modules at all (CONFIG_MODULES)."""
    return (sysroot() / "proc/modules").exists()


def module_dir() -> Path:
    return sysroot() / "sys/module" / MODULE


def module_loaded() -> bool:
    # /sys/module/X also exists for built-in code with parameters; initstate only for loaded modules.
    return _read(module_dir() / "initstate") is not None


def module_version() -> str | None:
    return _read(module_dir() / "version")


def module_refcnt() -> int | None:
    text = _read(module_dir() / "refcnt")
    return int(text) if text and text.isdigit() else None


def module_params() -> dict[str, str]:
    params = module_dir() / "parameters"
    try:
        names = sorted(p.name for p in params.iterdir())
    except OSError:
        return {}
    return {n: v for n in names if (v := _read(params / n)) is not None}


def module_file() -> str | None:
    """The msrdrv.ko modprobe would load for the running kernel (modinfo), or None."""
    modinfo = tool("modinfo")
    if modinfo is None:
        return None
    try:
        res = run_tool([modinfo, "-F", "filename", MODULE], timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    name = res.stdout.strip().splitlines()
    return name[0] if res.returncode == 0 and name else None


def modules_dir_exists() -> bool:
    return (sysroot() / "lib/modules" / kernel_release()).is_dir()


def lockdown() -> str | None:
    """The active lockdown mode ('none', 'integrity', 'confidentiality'), or None if unknown."""
    text = _read(sysroot() / "sys/kernel/security/lockdown")
    if not text:
        return None
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return None


def msr_allow_writes() -> str | None:
    """The kernel msr driver's allow_writes ('on', 'off', 'default'), None if unknown (root-only file)."""
    return _read(sysroot() / "sys/module/msr/parameters/allow_writes")


def dkms_status() -> str | None:
    """What dkms knows of msrdrv, in `dkms status` form ('' when nothing), None without dkms.

    Read from dkms's tree (/var/lib/dkms/msrdrv/VERSION/KERNEL/ARCH) rather than
    by running `dkms status`: the script takes seconds, and this is all it reads.
    """
    root = sysroot()
    tree = root / "var/lib/dkms"
    if tool("dkms") is None and not tree.is_dir():
        return None
    lines = []
    base = tree / MODULE
    versions = sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()) if base.is_dir() else []
    for ver in versions:
        built = sorted(
            (k.name, a.name)
            for k in ver.iterdir()
            if k.is_dir() and not k.is_symlink() and k.name not in ("source", "build")
            for a in k.iterdir()
            if a.is_dir()
        )
        if not built:
            lines.append(f"{MODULE}/{ver.name}: added")
        for kver, arch in built:
            installed = any((root / "lib/modules" / kver / "updates/dkms").glob(f"{MODULE}.ko*"))
            lines.append(f"{MODULE}/{ver.name}, {kver}, {arch}: {'installed' if installed else 'built'}")
    return "\n".join(lines)


def dkms_versions() -> list[str]:
    """msrdrv versions DKMS holds the source of (/var/lib/dkms/msrdrv/VERSION)."""
    base = sysroot() / "var/lib/dkms" / MODULE
    if not base.is_dir():
        return []
    names = [p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink()]
    return sorted(names, key=lambda v: [int(x) if x.isdigit() else -1 for x in re.split(r"[.+~-]", v)])


def headers_installed(release: str) -> bool:
    """Whether a module can be built for this kernel (its headers' Makefile is there)."""
    return (sysroot() / "lib/modules" / release / "build" / "Makefile").is_file()


class Node(NamedTuple):  # NamedTuples: cheaper to create at start-up than dataclasses
    """A device node as stat() saw it."""

    path: str
    exists: bool
    is_char: bool = False
    mode: int = 0
    owner: str = ""
    group: str = ""


def _name(lookup: object, ident: int) -> str:
    try:
        return str(lookup(ident)[0])  # type: ignore[operator]
    except KeyError:
        return str(ident)


def node(path: str) -> Node:
    try:
        st = os.stat(path)
    except OSError:
        return Node(path, False)
    return Node(
        path,
        True,
        stat.S_ISCHR(st.st_mode),
        stat.S_IMODE(st.st_mode),
        _name(pwd.getpwuid, st.st_uid),
        _name(grp.getgrgid, st.st_gid),
    )


class User(NamedTuple):
    """This process's user and its standing with group msr."""

    name: str
    uid: int
    groups: tuple[str, ...]  # of this process
    group_exists: bool  # group msr exists
    group_member: bool  # this process has group msr
    group_listed: bool  # the group database lists the user (a new login would have it)


def user() -> User:
    uid = os.geteuid()
    name = _name(pwd.getpwuid, uid)
    gids = {os.getegid(), *os.getgroups()}
    groups = tuple(sorted(_name(grp.getgrgid, g) for g in gids))
    try:
        g = grp.getgrnam(GROUP)
    except KeyError:
        return User(name, uid, groups, False, False, False)
    try:
        primary = pwd.getpwuid(uid).pw_gid == g.gr_gid
    except KeyError:
        primary = False
    return User(name, uid, groups, True, g.gr_gid in gids, name in g.gr_mem or primary)


def try_open(path: str) -> tuple[int, bool]:
    """(0, read-write?) if path opens as msrctl.device.msrdrv.Device opens it (read-write, else
    read-only when the node refuses writing), else (errno, False)."""
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.EACCES and flags == os.O_RDWR:
                continue
            return e.errno or 1, False
        os.close(fd)
        return 0, flags == os.O_RDWR
    return errno.EACCES, False  # not reached: the loop returns
