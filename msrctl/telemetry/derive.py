"""derive(plan, prev, cur): two raw snapshots of a plan to one sample of metrics in units.

Pure: the plan's context holds the static values (base MHz, TjMax, energy units),
the snapshots the counters.  Each value appears once, at the scope the hardware
measures it: CPU rows (frequency, busy), core rows (temperature, core C-states,
core energy, throttling), package rows (package temperature and C-states, RAPL
domains, limit reasons).  A metric the machine lacks, or whose op failed in
either snapshot, is None: never a made-up 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from . import metrics, msrs
from .catalog import METRICS
from .msrs import CORE, CPU, PACKAGE, TSC, Register
from .plan import Plan, PlanOp, Raw
from .topology import Cpu

# Runtime aliases: typing's spelling, as Python 3.9 has no `X | Y` outside annotations.
Value = Optional[Union[float, int, tuple[str, ...]]]
Row = dict[str, Value]

_NAMES = {scope: [m.name for m in METRICS if m.scope == scope] for scope in (CPU, CORE, PACKAGE)}
_ENERGY = (
    ("pkg", msrs.PKG_ENERGY),
    ("pp0", msrs.PP0_ENERGY),
    ("pp1", msrs.PP1_ENERGY),
    ("dram", msrs.DRAM_ENERGY),
    ("psys", msrs.PLATFORM_ENERGY),
    ("pkg", msrs.AMD_PKG_ENERGY),
)
_CORE_RES = (("core_c3_pct", msrs.CORE_C3), ("core_c6_pct", msrs.CORE_C6), ("core_c7_pct", msrs.CORE_C7))
_PKG_RES = tuple(
    (f"pkg_c{n}_pct", r)
    for n, r in (
        (2, msrs.PKG_C2), (3, msrs.PKG_C3), (6, msrs.PKG_C6), (7, msrs.PKG_C7),
        (8, msrs.PKG_C8), (9, msrs.PKG_C9), (10, msrs.PKG_C10),
    )
)  # fmt: skip


@dataclass(frozen=True)
class Sample:
    t_ns: int  # CLOCK_MONOTONIC of the later snapshot
    dt_s: float  # the interval the rates and shares cover
    cpus: tuple[Row, ...]
    cores: tuple[Row, ...]
    packages: tuple[Row, ...]
    failed: tuple[tuple[PlanOp, int], ...]  # ops that failed in the later snapshot, with their errno


class _Pair:
    """Lookups into the two snapshots for one plan."""

    def __init__(self, plan: Plan, prev: Raw, cur: Raw) -> None:
        self.plan, self.prev, self.cur = plan, prev, cur

    def _i(self, cpu: int, reg: Register) -> int | None:
        i = self.plan.index(cpu, reg.msr)
        if i is None or self.cur.errs[i]:
            return None
        return i

    def value(self, cpu: int, reg: Register) -> int | None:
        i = self._i(cpu, reg)
        return None if i is None else self.cur.values[i]

    def delta(self, cpu: int, reg: Register) -> int | None:
        i = self._i(cpu, reg)
        if i is None or self.prev.errs[i]:
            return None
        return metrics.counter_delta(self.prev.values[i], self.cur.values[i], reg.width)


def _ids(c: Cpu, pair: _Pair, scope: str) -> Row:
    row: Row = {"package": c.package}
    if scope != PACKAGE:
        row["core"] = c.core
    if scope == CPU:
        row["cpu"] = c.cpu
    if scope != PACKAGE and c.core_type:
        row["core_type"] = c.core_type
    row["tsc"] = pair.value(c.cpu, TSC)
    return row


def _ratio(fn: object, *args: int | float | None) -> float | None:
    if any(a is None for a in args):
        return None
    return fn(*args)  # type: ignore[operator,no-any-return]


def _scaled(delta: int | None, scale: int) -> int | None:
    return None if delta is None else delta * scale


def _cpu_row(c: Cpu, pair: _Pair, dt: float) -> Row:
    """turbostat's Avg_MHz, Bzy_MHz and Busy%: APERF over wall time, the base frequency times
    APERF/MPERF, MPERF over the TSC (or over the base frequency where the TSC runs at its
    own rate), APERF and MPERF in the model's units."""
    ctx = pair.plan.context
    row = _ids(c, pair, CPU)
    d_tsc = pair.delta(c.cpu, TSC)
    scale = ctx.aperf_mperf_scale
    d_aperf, d_mperf = _scaled(pair.delta(c.cpu, msrs.APERF), scale), _scaled(pair.delta(c.cpu, msrs.MPERF), scale)
    base, ok = ctx.base_mhz, ctx.available
    row["mhz_effective"] = _ratio(metrics.effective_mhz, d_aperf, dt) if ok("mhz_effective") else None
    row["mhz_busy"] = _ratio(metrics.busy_mhz, d_aperf, d_mperf, base) if ok("mhz_busy") else None
    if not ok("busy_pct"):
        row["busy_pct"] = None
    elif ctx.tsc_tweak and base:
        row["busy_pct"] = _ratio(metrics.busy_pct_at_base, d_mperf, base, dt)
    else:
        row["busy_pct"] = _ratio(metrics.busy_pct, d_mperf, d_tsc)
    return row


def _thermal_and_residency(
    row: Row,
    c: Cpu,
    pair: _Pair,
    prefix: str,
    status: Register,
    residencies: tuple[tuple[str, Register], ...],
    package: bool = False,
) -> None:
    """A core's or package's temperature and throttle bits from its thermal status register
    (the package's has no valid bit), and its C-state residencies against the TSC."""
    ctx = pair.plan.context
    therm = pair.value(c.cpu, status)
    if therm is not None:
        if ctx.available(f"{prefix}_temp_c"):
            row[f"{prefix}_temp_c"] = metrics.temperature_c(ctx.tjmax[c.package], therm, valid_bit=not package)
        row[f"{prefix}_throttle"] = metrics.throttle(therm, package=package)
        row[f"{prefix}_throttle_log"] = metrics.throttle_log(therm, package=package)
    d_tsc = pair.delta(c.cpu, TSC)
    deltas = {name: pair.delta(c.cpu, reg) for name, reg in residencies}
    c6, c7 = deltas.get("core_c6_pct"), deltas.get("core_c7_pct")
    if c6 is not None and c7 is not None and ctx.atom_c6_includes_c7 and c.core_type == "efficient":
        deltas["core_c6_pct"] = max(c6 - c7, 0)  # its C6 counter counts C7 and deeper too (turbostat)
    for name, delta in deltas.items():
        row[name] = _ratio(metrics.residency_pct, delta, d_tsc)


def _core_row(c: Cpu, pair: _Pair, dt: float) -> Row:
    ctx = pair.plan.context
    row = _ids(c, pair, CORE)
    row.update(dict.fromkeys(_NAMES[CORE]))
    _thermal_and_residency(row, c, pair, "core", msrs.THERM_STATUS, _CORE_RES)
    d_energy = pair.delta(c.cpu, msrs.AMD_CORE_ENERGY)
    if d_energy is not None:
        joules = d_energy * ctx.energy_unit[c.package, msrs.AMD_CORE_ENERGY.msr]
        row["core_energy_j"], row["core_power_w"] = joules, metrics.watts(joules, dt)
    return row


def _package_row(c: Cpu, pair: _Pair, dt: float) -> Row:
    ctx = pair.plan.context
    row = _ids(c, pair, PACKAGE)
    row.update(dict.fromkeys(_NAMES[PACKAGE]))
    _thermal_and_residency(row, c, pair, "pkg", msrs.PACKAGE_THERM_STATUS, _PKG_RES, package=True)
    for domain, reg in _ENERGY:
        d_energy = pair.delta(c.cpu, reg)
        if d_energy is not None:
            joules = d_energy * ctx.energy_unit[c.package, reg.msr]
            row[f"{domain}_energy_j"], row[f"{domain}_power_w"] = joules, metrics.watts(joules, dt)
    if c.package in ctx.sensors and ctx.available("pkg_temp_c"):  # no MSR: the hwmon driver's
        row["pkg_temp_c"] = pair.cur.sensors.get(c.package)
    limits = pair.value(c.cpu, msrs.PERF_LIMIT_REASONS)
    if limits is not None:
        row["limit_reasons"], row["limit_log"] = metrics.limit_reasons(limits), metrics.limit_log(limits)
    return row


def derive(plan: Plan, prev: Raw, cur: Raw, dt_s: float | None = None) -> Sample:
    """The metrics over the interval between two snapshots of plan (dt_s: its length in
    seconds; default the CLOCK_MONOTONIC difference of the snapshots)."""
    dt = (cur.t_ns - prev.t_ns) / 1e9 if dt_s is None else dt_s
    pair = _Pair(plan, prev, cur)
    topo = plan.topology
    failed = tuple((op, e) for op, e in zip(plan.ops, cur.errs) if e)
    return Sample(
        cur.t_ns,
        dt,
        tuple(_cpu_row(c, pair, dt) for c in topo.cpus),
        tuple(_core_row(c, pair, dt) for c in topo.cores()),
        tuple(_package_row(c, pair, dt) for c in topo.packages()),
        failed,
    )
