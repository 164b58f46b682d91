"""The CPUs ops can target: which are online, under $MSRCTL_SYSROOT (default /) so that
tests can point sysfs at a fake tree, and how a CPU list is written."""

from __future__ import annotations

import os
from pathlib import Path


def sysroot() -> Path:
    return Path(os.environ.get("MSRCTL_SYSROOT", "/"))


def online_cpus() -> list[int]:
    """Online CPUs from sysfs; all CPUs Python sees if sysfs says nothing."""
    try:
        text = (sysroot() / "sys/devices/system/cpu/online").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    if text:
        from ..errors import UsageError
        from ..registers.parse import parse_cpus

        try:
            return parse_cpus(text)
        except UsageError:
            pass
    return list(range(os.cpu_count() or 1))


def targets(all_cpus: bool, cpus: str | None) -> list[int]:
    """The CPUs -a (every online one) or -p CPUS (default 0) name; UsageError if both are given."""
    from ..errors import UsageError
    from ..registers.parse import parse_cpus

    if all_cpus and cpus is not None:
        raise UsageError("-a and -p conflict", "-a already means every online CPU", "give one of them")
    return online_cpus() if all_cpus else parse_cpus(cpus if cpus is not None else "0")


def cpu_list_text(cpus: list[int]) -> str:
    """[0,1,2,5] -> '0-2,5'."""
    parts: list[str] = []
    for cpu in cpus:
        if parts and parts[-1].rsplit("-", 1)[-1] == str(cpu - 1):
            parts[-1] = parts[-1].split("-")[0] + f"-{cpu}"
        else:
            parts.append(str(cpu))
    return ",".join(parts)
