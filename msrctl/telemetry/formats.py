"""Samples as text: CSV (a header with units, one row per CPU, core and package of each
sample) or JSON Lines (one object per sample); the notes and the summary for stderr.

Which metrics: those this machine has, as turbostat shows only the counters it
found (`shown`); with all_columns every metric of the catalog, the absent ones
empty (JSON null), so that scripts see the same columns on every machine.  An
absent metric's reason is printed once at the start either way.

CSV layout: every value appears once, in the row of the scope the hardware
measures it at (the `scope` column: cpu, core or package); the columns of the
other scopes are empty in that row.  Summing a column over the rows of its
scope never counts anything twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

from .catalog import METRICS
from .derive import Row, Sample, Value
from .interval import format_interval
from .msrs import CORE, CPU, PACKAGE
from .plan import Plan
from .sampler import Stats
from .totals import DOMAINS, Totals

IDS = ("time_s", "sample", "dt_s", "scope", "package", "core", "cpu", "tsc")
COLUMNS = (*IDS, *(m.name for m in METRICS))
_DIGITS = {m.name: m.digits for m in METRICS}


def _number(name: str, value: Value) -> Value:
    """A metric value as printed: rounded to its column's digits; flags as a list of names."""
    if isinstance(value, float):
        digits = _DIGITS.get(name, 6)
        return round(value, digits) if digits else round(value)
    if isinstance(value, tuple):
        return list(value)  # type: ignore[return-value]
    return value


def _cell(name: str, value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "+".join(value) if value else "none"
    if isinstance(value, float):
        digits = _DIGITS.get(name, 6)
        return f"{value:.{digits}f}"
    return str(value)


def shown(plan: Plan, all_columns: bool = False) -> tuple[str, ...]:
    """The metrics a recording writes: the ones this machine has, or every one (all_columns)."""
    return tuple(m.name for m in METRICS if all_columns or plan.context.available(m.name))


def columns(hybrid: bool = False, names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The CSV columns: the ids, then names (default every metric); on hybrid CPUs a
    core_type column (performance or efficient) after cpu."""
    ids = (*IDS[:7], "core_type", IDS[7]) if hybrid else IDS
    return (*ids, *(COLUMNS[len(IDS) :] if names is None else names))


def csv_header(hybrid: bool = False, names: Sequence[str] | None = None) -> str:
    return ",".join(columns(hybrid, names)) + "\n"


def csv_rows(sample: Sample, index: int, t0_ns: int, hybrid: bool = False, names: Sequence[str] | None = None) -> str:
    """The rows of one sample: its CPUs, then its cores, then its packages."""
    head = f"{(sample.t_ns - t0_ns) / 1e9:.6f},{index},{sample.dt_s:.6f}"
    names = columns(hybrid, names)[4:]
    lines = []
    for scope, rows in ((CPU, sample.cpus), (CORE, sample.cores), (PACKAGE, sample.packages)):
        for row in rows:
            cells = [_cell(c, row.get(c)) for c in names]
            lines.append(f"{head},{scope}," + ",".join(cells))
    return "\n".join(lines) + "\n"


def _json_row(row: Row, names: Sequence[str] | None) -> dict[str, Value]:
    keep = None if names is None else {*IDS, "core_type", *names}
    return {k: _number(k, v) for k, v in row.items() if keep is None or k in keep}


def jsonl(
    sample: Sample,
    index: int,
    t0_ns: int,
    late_ns: int = 0,
    missed: int = 0,
    final: bool = False,
    names: Sequence[str] | None = None,
) -> str:
    """One JSON object for one sample (metrics as numbers, flags as lists, no value as null);
    names: the metrics written (default every one)."""
    obj = {
        "sample": index,
        "time_s": round((sample.t_ns - t0_ns) / 1e9, 6),
        "t_monotonic_ns": sample.t_ns,
        "dt_s": round(sample.dt_s, 6),
        "late_ms": round(late_ns / 1e6, 3),
        "missed": missed,
        "final": final,
        "cpus": [_json_row(r, names) for r in sample.cpus],
        "cores": [_json_row(r, names) for r in sample.cores],
        "packages": [_json_row(r, names) for r in sample.packages],
    }
    return json.dumps(obj, separators=(",", ":")) + "\n"


def start_lines(plan: Plan, absent: dict[str, list[str]], interval_ns: int, all_columns: bool = False) -> list[str]:
    """What is sampled, where a value comes from when not from an MSR, and each missing
    metric's reason (once, at the start)."""
    topo, ctx = plan.topology, plan.context
    npk = len(topo.packages())
    lines = [
        f"sampling {len(topo.cpus)} CPU{'s' * (len(topo.cpus) != 1)} in {npk} package{'s' * (npk != 1)} "
        f"every {format_interval(interval_ns)}: one batch of {len(plan)} ops per sample"
    ]
    if ctx.base_mhz:
        lines.append(f"base frequency {ctx.base_mhz:g} MHz, from {ctx.base_source}")
    for package, sensor in ctx.sensors.items():
        lines.append(f"package {package} temperature (pkg_temp_c) from the {sensor.what}")
    what = "absent (empty cells)" if all_columns else "absent (not recorded; --all-columns keeps them, empty)"
    for why, names in absent.items():
        lines.append(f"{what}: {', '.join(names)}: {why}")
    return lines


def wrap_note(plan: Plan, interval_ns: int) -> str | None:
    """A warning when the interval is long enough for a 32-bit energy counter to wrap twice."""
    units = plan.context.energy_unit.values()
    if not units or interval_ns < 60_000_000_000:
        return None
    wrap_j = min(units) * 2**32
    seconds = interval_ns / 1e9
    return (
        f"RAPL energy counters wrap every {wrap_j:.0f} J here: at {format_interval(interval_ns)} intervals, "
        f"a domain drawing over {wrap_j / seconds:.0f} W is undercounted; use a shorter interval"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def summary_lines(totals: Totals, stats: Stats, packages: Iterable[int], interval_ns: int) -> list[str]:
    """The end-of-recording summary: samples, time, late and missed intervals, energy."""
    lines = [
        f"{_plural(totals.samples, 'sample')} in {totals.seconds:.3f} s (interval {format_interval(interval_ns)}); "
        f"{_plural(stats.late, 'late sample')} (max {stats.max_late_ns / 1e6:.1f} ms late), "
        f"{_plural(stats.missed, 'missed interval')}"
    ]
    for p in packages:
        parts = []
        for d in DOMAINS:
            if (p, d) in totals.energy_j:
                avg = totals.average_w(p, d)
                power = f", {avg:.2f} W average" if avg is not None else ""
                parts.append(f"{d} {totals.energy_j[p, d]:.3f} J{power}")
        lines.append(f"package {p}: " + ("; ".join(parts) if parts else "energy absent (see the notes above)"))
    if totals.first_failure is not None:
        op, err = totals.first_failure
        what = "RDTSC" if op.rdtsc else f"MSR {op.msr:#x}"
        lines.append(
            f"{_plural(totals.failed_samples, 'sample')} had failed ops (their cells are empty); "
            f"the first: {what} on CPU {op.cpu}: {os.strerror(err)}"
        )
    return lines
