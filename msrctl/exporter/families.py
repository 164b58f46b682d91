"""The Prometheus side of each telemetry metric: name, type, unit, labels, and a sample's values
as prometheus_client metric families.

Names follow Prometheus and node_exporter conventions: base units in the name
(`_hertz`, `_celsius`, `_ratio`, `_joules_total`), counters end in `_total`,
one name per quantity with labels for where it was measured (`cpu`, `core`,
`package`) and for parts that add up (`state`, `reason`).  Energy is exported
as cumulative joules (watts are `rate()` of them, taken by Prometheus); RAPL
domains get a name each, as node_exporter's rapl collector does, because
summing them would count the cores' share of the package twice.

A family whose telemetry metric the probe found absent is not exported at all
(never a 0 sample); `absent()` lists it with the probe's reason instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..telemetry import metrics
from ..telemetry.derive import Row, Sample
from ..telemetry.msrs import CORE, CPU, PACKAGE
from ..telemetry.plan import Context
from ..telemetry.topology import Topology

PREFIX = "msr"
LABELS = {CPU: ("cpu", "core", "package"), CORE: ("core", "package"), PACKAGE: ("package",)}
GAUGE, COUNTER, FLAGS = "gauge", "counter", "flags"


@dataclass(frozen=True)
class Family:
    """One Prometheus metric fed by telemetry metrics (catalog names) of one scope."""

    name: str  # the exposed name; a counter's ends in _total
    kind: str  # GAUGE, COUNTER (cumulative joules) or FLAGS (a 0/1 gauge per known bit)
    scope: str  # CPU, CORE or PACKAGE: which labels its series carry
    help: str
    sources: tuple[tuple[str, str], ...]  # (telemetry metric, value of the extra label or "")
    label: str = ""  # the extra label's name (state, reason), if any
    scale: float = 1.0  # from the telemetry unit to the base unit
    bits: tuple[str, ...] = ()  # FLAGS: every name the register can report

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS[self.scope] + ((self.label,) if self.label else ())


def _one(name: str, kind: str, scope: str, source: str, help: str, scale: float = 1.0) -> Family:
    return Family(f"{PREFIX}_{name}", kind, scope, help, ((source, ""),), scale=scale)


def _energy(domain: str, scope: str, source: str, what: str) -> Family:
    return _one(f"rapl_{domain}_joules_total", COUNTER, scope, source, f"{what} energy since the exporter started")


def _flags(name: str, scope: str, source: str, bits: Mapping[int, str], help: str) -> Family:
    return Family(f"{PREFIX}_{name}", FLAGS, scope, help, ((source, ""),), label="reason", bits=tuple(bits.values()))


_CORE_C = (3, 6, 7)
_PKG_C = (2, 3, 6, 7, 8, 9, 10)

FAMILIES: tuple[Family, ...] = (
    _one(
        "cpu_frequency_hertz", GAUGE, CPU, "mhz_effective",
        "Average frequency since the previous read, idle time counting as 0 (dAPERF / elapsed time).", 1e6,
    ),
    _one(
        "cpu_busy_frequency_hertz", GAUGE, CPU, "mhz_busy",
        "Average frequency while busy (C0) since the previous read (base x dAPERF/dMPERF).", 1e6,
    ),
    _one(
        "cpu_busy_ratio", GAUGE, CPU, "busy_pct",
        "Share of the time since the previous read in C0 (dMPERF/dTSC, or dMPERF against the base clock where the "
        "TSC runs at its own rate).", 0.01,
    ),
    _one(
        "core_temperature_celsius", GAUGE, CORE, "core_temp_c", "Core temperature (TjMax - IA32_THERM_STATUS readout)."
    ),
    Family(
        f"{PREFIX}_core_cstate_residency_ratio", GAUGE, CORE,
        "Share of the time since the previous read the core spent in a C-state.",
        tuple((f"core_c{n}_pct", f"c{n}") for n in _CORE_C), label="state", scale=0.01,
    ),
    _energy("core", CORE, "core_energy_j", "Core (AMD per-core RAPL)"),
    _flags(
        "core_throttle_active", CORE, "core_throttle", metrics.THERM_BITS,
        "1 while the core is throttled for this reason.",
    ),
    _flags(
        "core_throttle_logged", CORE, "core_throttle_log", metrics.THERM_BITS,
        "1 if the core was throttled for this reason since the log bit was cleared.",
    ),
    _one(
        "package_temperature_celsius", GAUGE, PACKAGE, "pkg_temp_c",
        "Package temperature: Intel TjMax - IA32_PACKAGE_THERM_STATUS readout; AMD the k10temp driver's "
        "Tdie or Tctl (msrctl_exporter_metric_source_info names it).",
    ),
    Family(
        f"{PREFIX}_package_cstate_residency_ratio", GAUGE, PACKAGE,
        "Share of the time since the previous read the package spent in a C-state.",
        tuple((f"pkg_c{n}_pct", f"c{n}") for n in _PKG_C), label="state", scale=0.01,
    ),
    _energy("package", PACKAGE, "pkg_energy_j", "Package (RAPL PKG)"),
    _energy("pp0", PACKAGE, "pp0_energy_j", "All cores of the package (RAPL PP0)"),
    _energy("pp1", PACKAGE, "pp1_energy_j", "Uncore or graphics (RAPL PP1)"),
    _energy("dram", PACKAGE, "dram_energy_j", "DRAM (RAPL DRAM)"),
    _energy("psys", PACKAGE, "psys_energy_j", "Platform (RAPL PSYS)"),
    _flags(
        "package_throttle_active", PACKAGE, "pkg_throttle", metrics.PACKAGE_THERM_BITS,
        "1 while the package is throttled for this reason.",
    ),
    _flags(
        "package_throttle_logged", PACKAGE, "pkg_throttle_log", metrics.PACKAGE_THERM_BITS,
        "1 if the package was throttled for this reason since the log bit was cleared.",
    ),
    _flags(
        "frequency_limit_active", PACKAGE, "limit_reasons", metrics.LIMIT_BITS,
        "1 while core frequency is held below the request for this reason (MSR_CORE_PERF_LIMIT_REASONS).",
    ),
    _flags(
        "frequency_limit_logged", PACKAGE, "limit_log", metrics.LIMIT_BITS,
        "1 if core frequency was held below the request for this reason since the log bit was cleared.",
    ),
)  # fmt: skip

# Telemetry metrics with no family of their own: average watts are rate() of the joules.
NOT_EXPORTED = frozenset(f"{d}_power_w" for d in ("core", "pkg", "pp0", "pp1", "dram", "psys"))

CPU_INFO = f"{PREFIX}_cpu_info"
TSC = f"{PREFIX}_cpu_tsc_cycles_total"

Key = tuple[str, tuple[str, ...]]  # (family name, label values): one series


def ids(row: Row, scope: str) -> tuple[str, ...]:
    """The label values of a row: its cpu, core and package, as its scope has them."""
    return tuple(str(row[k]) for k in LABELS[scope])


def present(family: Family, context: Context) -> list[tuple[str, str]]:
    """The sources of family this machine has."""
    return [(src, extra) for src, extra in family.sources if context.available(src)]


def absent(context: Context) -> dict[tuple[str, str], None]:
    """(family name, reason) for each family part the probe found absent, in catalog order."""
    out: dict[tuple[str, str], None] = {}
    for fam in FAMILIES:
        for src, _ in fam.sources:
            why = context.metrics.get(src, "unknown metric")
            if why is not None:
                out[fam.name, why] = None
    return out


def rows(sample: Sample, scope: str) -> tuple[Row, ...]:
    """The sample's rows of one scope."""
    return {CPU: sample.cpus, CORE: sample.cores, PACKAGE: sample.packages}[scope]


def energy_keys(sample: Sample, context: Context) -> Iterator[tuple[Key, float]]:
    """(series, joules in this sample's interval) of every energy family: what the collector adds up."""
    for fam in FAMILIES:
        if fam.kind != COUNTER:
            continue
        for src, _ in present(fam, context):
            for row in rows(sample, fam.scope):
                joules = row.get(src)
                if isinstance(joules, float):
                    yield (fam.name, ids(row, fam.scope)), joules


def topology_families(topology: Topology, sample: Sample | None) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """Which CPUs, cores and packages there are (msr_cpu_info), and each CPU's TSC as read."""
    hybrid = topology.hybrid  # then each CPU's core type too: join on cpu to split any metric by it
    info = GaugeMetricFamily(
        CPU_INFO,
        "The CPUs the exporter reads: 1 per CPU, with its core and package (and core type on hybrid CPUs).",
        labels=(*LABELS[CPU], "core_type") if hybrid else LABELS[CPU],
    )
    for c in topology.cpus:
        info.add_metric([str(c.cpu), str(c.core), str(c.package), *([c.core_type or ""] if hybrid else [])], 1)
    yield info
    if sample is None:
        return
    tsc = CounterMetricFamily(TSC, "The CPU's time-stamp counter at the last read (RDTSC).", labels=LABELS[CPU])
    for row in sample.cpus:
        if isinstance(row["tsc"], int):
            tsc.add_metric(list(ids(row, CPU)), float(row["tsc"]))
    yield tsc


def sample_families(
    sample: Sample, context: Context, energy: Mapping[Key, float]
) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """The hardware families of one sample; energy holds the cumulative joules per series.

    A series whose value is missing for this sample only (a CPU never busy, a failed
    read) is left out of this scrape rather than given a made-up value."""
    for fam in FAMILIES:
        parts = present(fam, context)
        if not parts:
            continue
        if fam.kind == COUNTER:
            out: GaugeMetricFamily | CounterMetricFamily = CounterMetricFamily(fam.name, fam.help, labels=fam.labels)
            for row in rows(sample, fam.scope):
                key = (fam.name, ids(row, fam.scope))
                if key in energy:
                    out.add_metric(list(key[1]), energy[key])
            yield out
            continue
        out = GaugeMetricFamily(fam.name, fam.help, labels=fam.labels)
        for row in rows(sample, fam.scope):
            for src, extra in parts:
                _add(out, fam, ids(row, fam.scope), extra, row.get(src))
        yield out


def _add(out: GaugeMetricFamily, fam: Family, where: tuple[str, ...], extra: str, value: object) -> None:
    if fam.kind == FLAGS:
        if isinstance(value, tuple):
            for bit in fam.bits:
                out.add_metric([*where, bit], 1.0 if bit in value else 0.0)
        return
    if isinstance(value, (int, float)):
        out.add_metric([*where, extra] if fam.label else list(where), float(value) * fam.scale)


SENSED = "package_temperature_celsius"  # the family a hwmon sensor feeds where no MSR holds it


def sources(context: Context) -> Iterator[tuple[str, str, str]]:
    """(family, package, where its value comes from) of each value no MSR gives."""
    for package, sensor in sorted(context.sensors.items()):
        yield f"{PREFIX}_{SENSED}", str(package), sensor.what


def names() -> Iterable[str]:
    """Every hardware family name, in exposition form (counters with _total)."""
    return (f.name for f in FAMILIES)
