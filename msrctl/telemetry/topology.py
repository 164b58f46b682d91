"""Which CPUs share a core and a package, from sysfs, and the CPU that reads for each; on
hybrid CPUs, each CPU's core type.

/sys/devices/system/cpu/cpuN/topology/{core_id,physical_package_id} under
msrctl.device.cpus.sysroot(), so tests can use a fake tree.  core_id is unique
only within a package, so a core is the pair (package, core_id).  Per-core
registers are read on the core's first CPU in the chosen set, per-package
ones on the package's first CPU: each is read once per sample.  A hybrid CPU's
kernel lists its performance and efficient cores under /sys/devices/cpu_core/cpus
and /sys/devices/cpu_atom/cpus (its perf PMUs, one per core type; CPUID leaf 0x1A
says the same, but only root can ask the cpuid driver).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..device.cpus import online_cpus, sysroot
from ..errors import UsageError


@dataclass(frozen=True)
class Cpu:
    cpu: int
    core: int  # core_id, unique within the package
    package: int  # physical_package_id
    core_type: str | None = None  # "performance" or "efficient" on hybrid CPUs, else None


# The kernel's perf PMU of each core type on hybrid CPUs, and what msrctl calls it.
CORE_TYPES = {"cpu_core": "performance", "cpu_atom": "efficient"}


@dataclass(frozen=True)
class Topology:
    """The CPUs telemetry samples, in CPU order."""

    cpus: tuple[Cpu, ...]

    def __post_init__(self) -> None:
        if not self.cpus:
            raise ValueError("a topology needs at least one CPU")

    @property
    def numbers(self) -> list[int]:
        return [c.cpu for c in self.cpus]

    @property
    def hybrid(self) -> bool:
        """Some CPU has a core type: the CPU mixes performance and efficient cores."""
        return any(c.core_type for c in self.cpus)

    def cores(self) -> list[Cpu]:
        """The first CPU of each core: where per-core registers are read."""
        seen: dict[tuple[int, int], Cpu] = {}
        for c in self.cpus:
            seen.setdefault((c.package, c.core), c)
        return list(seen.values())

    def packages(self) -> list[Cpu]:
        """The first CPU of each package: where per-package registers are read."""
        seen: dict[int, Cpu] = {}
        for c in self.cpus:
            seen.setdefault(c.package, c)
        return list(seen.values())


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def core_types() -> dict[int, str]:
    """cpu -> core type, from the hybrid PMUs' CPU lists ({} on a CPU with one core type)."""
    from ..registers.parse import parse_cpus

    out: dict[int, str] = {}
    for pmu, kind in CORE_TYPES.items():
        try:
            text = (sysroot() / "sys/devices" / pmu / "cpus").read_text(encoding="ascii").strip()
            out.update(dict.fromkeys(parse_cpus(text), kind))
        except (OSError, UsageError):
            continue
    return out


def read(cpus: Sequence[int] | None = None) -> Topology:
    """The topology of cpus (default: every online CPU); UsageError if sysfs does not give it."""
    chosen = sorted(set(online_cpus() if cpus is None else cpus))
    base = sysroot() / "sys/devices/system/cpu"
    types = core_types()
    out = []
    for cpu in chosen:
        topo = base / f"cpu{cpu}" / "topology"
        package = _number(topo / "physical_package_id")
        core = _number(topo / "core_id")
        if package is None or core is None:
            raise UsageError(
                f"cannot tell which core and package CPU {cpu} belongs to",
                f"{topo}/core_id or physical_package_id is missing or unreadable (an offline CPU?)",
                "choose online CPUs with -p",
            )
        out.append(Cpu(cpu, core, package, types.get(cpu)))
    if not out:
        raise UsageError("no CPU to sample", "the CPU list is empty", "give CPUs with -p, e.g. -p 0-3")
    return Topology(tuple(out))
