"""RAPL power limits as gauges in watts and seconds: which limit registers the exporter may
read here (one probe batch at start-up), and their values out of each scrape's batch.

The limit registers join the scrape's one batch (once per package), since an admin
or a power manager may change a limit at any time.  The decoding is msrctl.telemetry.power's
and msrctl.decode.units' (the same as `msrctl power show`).  Intel only: AMD has
no RAPL limit MSRs.  A register that faults, is not in the allowlist, or reads 0
under a hypervisor is absent with its reason, never a 0 W limit.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from ..decode.units import power_limit, rapl_units
from ..errors import LOAD_PROFILE
from ..telemetry.cpu import CpuInfo
from ..telemetry.msrs import PACKAGE, Register
from ..telemetry.plan import Plan, Raw
from ..telemetry.power import DOMAINS, RAPL_POWER_UNIT, Domain
from ..telemetry.topology import Topology

WATTS = "msr_rapl_power_limit_watts"
SECONDS = "msr_rapl_power_limit_window_seconds"
ENABLED = "msr_rapl_power_limit_enabled"
NAMES = (WATTS, SECONDS, ENABLED)
LABELS = ("package", "domain", "limit")

REGISTERS = {d.name: Register(d.limit_msr, d.what.split()[0], PACKAGE) for d in DOMAINS.values()}
PROFILE_FIX = (
    f"the power-capping profile lists it: {LOAD_PROFILE}telemetry --profile power-capping "
    "(which also lets group msr set limits; for reading only, list it with write mask 0)"
)

Results = Mapping[tuple[int, int], tuple[int, int]]  # (cpu, msr) -> (value, errno)


@dataclass(frozen=True)
class Limits:
    """What the start-up probe found: the domains to read each scrape, the RAPL power
    unit per package, and why each other domain is absent."""

    domains: tuple[Domain, ...] = ()
    unit_raw: Mapping[int, int] = field(default_factory=dict)  # package -> MSR_RAPL_POWER_UNIT
    absent: Mapping[str, str] = field(default_factory=dict)  # domain -> why

    @property
    def registers(self) -> tuple[Register, ...]:
        """The limit registers each scrape's batch reads (per package)."""
        return tuple(REGISTERS[d.name] for d in self.domains)

    def absent_reasons(self) -> list[tuple[str, str]]:
        """(metric, reason) for msrctl_exporter_metric_absent_info: the domains that share a reason, then it."""
        by_why: dict[str, list[str]] = {}
        for name, why in self.absent.items():
            by_why.setdefault(why, []).append(name)
        return [(WATTS, f"{', '.join(names)}: {why}") for why, names in by_why.items()]


def probe_reads(cpu: CpuInfo, topology: Topology) -> list[tuple[int, int]]:
    """The (cpu, msr) reads of the start-up probe: the unit and every limit, per package."""
    if cpu.vendor != "intel":
        return []
    msrs = (RAPL_POWER_UNIT, *(d.limit_msr for d in DOMAINS.values()))
    return [(p.cpu, msr) for p in topology.packages() for msr in msrs]


def _why(name: str, msr: int, value: int, err: int, hypervisor: bool) -> str | None:
    label = f"{name} ({msr:#x})"
    if err == errno.EIO:
        return f"{label} faults: not implemented on this CPU"
    if err == errno.EACCES:
        return f"{label} is not in the msrdrv allowlist; {PROFILE_FIX}"
    if err:
        return f"{label}: {os.strerror(err)}"
    if value == 0 and hypervisor:
        return f"{label} reads 0: not implemented here (QEMU and some hypervisors read unknown MSRs as 0)"
    return None


def _first_why(name: str, msr: int, packages: list[Any], results: Results, hyper: bool) -> str | None:
    for p in packages:
        why = _why(name, msr, *results[p.cpu, msr], hyper)
        if why is not None:
            return why
    return None


def evaluate(cpu: CpuInfo, topology: Topology, results: Results) -> Limits:
    """The probe's verdict (pure): results holds every read of probe_reads()."""
    if cpu.vendor != "intel":
        why = "RAPL power limits are Intel MSRs" + (" (AMD has none)" if cpu.vendor == "amd" else "")
        return Limits(absent={d: why for d in DOMAINS})
    hyper = cpu.has("hypervisor")
    packages = topology.packages()
    unit_why = _first_why("MSR_RAPL_POWER_UNIT", RAPL_POWER_UNIT, packages, results, hyper)
    if unit_why is None and any(results[p.cpu, RAPL_POWER_UNIT][0] == 0 for p in packages):
        unit_why = "MSR_RAPL_POWER_UNIT (0x606) reads 0: no RAPL here"
    if unit_why is not None:
        return Limits(absent={d: unit_why for d in DOMAINS})
    present, absent = [], {}
    for d in DOMAINS.values():
        why = _first_why(REGISTERS[d.name].name, d.limit_msr, packages, results, hyper)
        if why is None:
            present.append(d)
        else:
            absent[d.name] = why
    units = {p.package: results[p.cpu, RAPL_POWER_UNIT][0] for p in packages}
    return Limits(tuple(present), units, absent)


def run(dev: Any, cpu: CpuInfo, topology: Topology) -> Limits:
    """Probe through dev: one batch (none on a CPU without Intel RAPL limits)."""
    from ..device.msrdrv import Batch

    reads = probe_reads(cpu, topology)
    if not reads:
        return evaluate(cpu, topology, {})
    b = Batch(len(reads))
    for c, msr in reads:
        b.read(msr, c)
    dev.submit(b)
    return evaluate(cpu, topology, {rd: (b.value(i), b.err(i)) for i, rd in enumerate(reads)})


def families(limits: Limits, plan: Plan, raw: Raw) -> Iterator[GaugeMetricFamily]:
    """The limits as read in raw (one of plan's snapshots); nothing if no domain is present."""
    if not limits.domains:
        return
    watts = GaugeMetricFamily(WATTS, "RAPL power limit (averaged over its window).", labels=LABELS)
    window = GaugeMetricFamily(SECONDS, "Time window of the RAPL power limit.", labels=LABELS)
    enabled = GaugeMetricFamily(ENABLED, "1 if the RAPL power limit is enabled.", labels=LABELS)
    for p in plan.topology.packages():
        units = rapl_units(limits.unit_raw[p.package])
        for d in limits.domains:
            i = plan.index(p.cpu, d.limit_msr)
            if i is None or raw.errs[i]:
                continue  # failed in this read only: counted in batch_errors_total, left out
            got = power_limit(raw.values[i], units, d.two_limits, d.pl2_window)
            for name, lim in (("pl1", got.pl1), ("pl2", got.pl2)):
                if lim is None:
                    continue
                labels = [str(p.package), d.name, name]
                watts.add_metric(labels, lim.watts)
                enabled.add_metric(labels, 1.0 if lim.enabled else 0.0)
                if lim.seconds is not None:
                    window.add_metric(labels, lim.seconds)
    yield from (watts, window, enabled)
