"""One frame of `msrctl top` as lines of text: a header, a package table, a CPU table and
the reasons for absent metrics, fitted to a window's width and height.

Pure: the facts for the header, the probe's verdicts and a sample from `derive` in,
lines out; the values are shown as derive() gives them.  A None (a metric this
machine lacks, or no value this interval) is '-', never 0.  When the window is
narrow, optional columns go first (deep package C-states, busy MHz, core id);
when even the required ones do not fit, the frame says so instead of wrapping.
A metric this machine lacks gets no column (its reason is under the tables),
unless every column is asked for (all_columns), as turbostat shows only the
counters it found.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .derive import Row, Sample, Value
from .interval import format_interval

GAP = "  "
ABSENT = "-"
NBSP = "\xa0"  # keeps a column's name on one line when the notes wrap


@dataclass(frozen=True)
class Column:
    title: str  # at most `width` characters
    key: str  # the row's key: a metric name from the catalog, or an id (cpu, core, package)
    width: int
    spec: str  # format spec of a float value
    drop: int = 0  # 0: always shown; else dropped when too narrow, lowest number first
    label: str = ""  # its name in the notes, when the title alone is ambiguous

    @property
    def name(self) -> str:
        return self.label or self.title


def _pc(n: int, drop: int) -> Column:
    return Column(f"PC{n}%", f"pkg_c{n}_pct", 5, ".1f", drop)


PACKAGE_COLUMNS = (
    Column("PKG", "package", 3, "d"),
    Column("PKG W", "pkg_power_w", 7, ".2f"),
    Column("DRAM W", "dram_power_w", 7, ".2f"),
    Column("TEMP C", "pkg_temp_c", 6, ".0f", label="package TEMP C"),
    _pc(2, 7),
    _pc(3, 6),
    _pc(6, 5),
    _pc(7, 4),
    _pc(8, 3),
    _pc(9, 2),
    _pc(10, 1),
)
CPU_COLUMNS = (
    Column("CPU", "cpu", 4, "d"),
    Column("CORE", "core", 4, "d", drop=2),
    Column("MHz", "mhz_effective", 6, ".0f"),
    Column("BUSY%", "busy_pct", 6, ".1f"),
    Column("BUSY MHz", "mhz_busy", 8, ".0f", drop=1),
    Column("C3%", "core_c3_pct", 5, ".1f"),
    Column("C6%", "core_c6_pct", 5, ".1f"),
    Column("C7%", "core_c7_pct", 5, ".1f"),
    Column("TEMP C", "core_temp_c", 6, ".0f", label="core TEMP C"),
)
IDS = ("cpu", "core", "package", "core_type")
# Hybrid CPUs: each CPU's core type, P (performance) or E (efficient), after CORE.
TYPE_COLUMN = Column("T", "core_type", 1, "s", drop=3)


@dataclass(frozen=True)
class Header:
    """What the header says that does not change between frames."""

    host: str
    cpu: str  # the CPU's model name
    backend: str  # the driver samples go through
    interval_ns: int
    virtual: bool = False  # the CPU reports a hypervisor: any value is its emulation's
    hint: str = ""  # the keys, in a terminal
    sources: tuple[str, ...] = ()  # where values that no MSR holds come from, for the notes


@dataclass(frozen=True)
class Status:
    """The sampler's state at this frame."""

    sample: int  # the deadline number (a gap: missed intervals)
    elapsed_s: float  # since the first snapshot
    late: int
    missed: int


def table_width(columns: Sequence[Column]) -> int:
    return sum(c.width for c in columns) + len(GAP) * (len(columns) - 1)


def fit(columns: Sequence[Column], width: int | None) -> list[Column] | None:
    """The columns that fit in width, optional ones dropped lowest `drop` first; None
    if the required ones do not fit.  width None: all of them."""
    shown = list(columns)
    if width is None:
        return shown
    for col in sorted((c for c in columns if c.drop), key=lambda c: c.drop):
        if table_width(shown) <= width:
            break
        shown.remove(col)
    return shown if table_width(shown) <= width else None


def min_width(*tables: Sequence[Column]) -> int:
    """The narrowest window the required columns of tables (default: every column) fit in."""
    return max(table_width([c for c in cols if not c.drop]) for cols in (tables or (PACKAGE_COLUMNS, CPU_COLUMNS)))


def present(columns: Sequence[Column], metrics: Mapping[str, str | None], all_columns: bool = False) -> list[Column]:
    """The columns a frame may show: ids, and the metrics this machine has (all_columns: every one)."""
    return [c for c in columns if all_columns or c.key in IDS or metrics.get(c.key, "") is None]


def _pack(parts: list[str], width: int | None) -> list[str]:
    """Parts joined by ' | ' into as few lines as width allows (a part too long is clipped)."""
    lines: list[str] = []
    for part in parts:
        if lines and (width is None or len(lines[-1]) + 3 + len(part) <= width):
            lines[-1] += " | " + part
        else:
            lines.append(clip(part, width))
    return lines


def header_lines(header: Header, status: Status | None, width: int | None = None) -> list[str]:
    """Who and what (host, driver, CPU), then the sampling state: packed into width."""
    lines = _pack(["msrctl top", header.host, f"backend {header.backend}", header.cpu], width)
    state = [f"every {format_interval(header.interval_ns)}"]
    if status is not None:
        state[:0] = [f"sample {status.sample} at {status.elapsed_s:.1f} s"]
        state += [f"late {status.late}", f"missed {status.missed}"]
    lines += _pack([*state, *([header.hint] if header.hint else [])], width)
    if header.virtual:
        text = "virtual machine: any value shown is the hypervisor's emulation of the MSR, not hardware's"
        lines += textwrap.wrap(text, width) if width else [text]
    return lines


def min_height(header: Header, width: int | None = None) -> int:
    """The header, and a title and one row of each table with a blank line before each."""
    return len(header_lines(header, Status(0, 0.0, 0, 0), width)) + 6


def cell(col: Column, value: Value) -> str:
    if value is None:
        text = ABSENT
    elif isinstance(value, float):
        text = format(value, col.spec)
    elif col.key == "core_type" and isinstance(value, str):
        text = value[:1].upper()  # performance -> P, efficient -> E
    else:
        text = str(value)
    return text.rjust(col.width)


def title_line(columns: Sequence[Column]) -> str:
    return GAP.join(c.title.rjust(c.width) for c in columns)


def row_line(columns: Sequence[Column], row: Row) -> str:
    return GAP.join(cell(c, row.get(c.key)) for c in columns)


def cpu_rows(sample: Sample) -> list[Row]:
    """Each CPU's row with its core's values (temperature, core C-states) added: a core's
    value is each of its CPUs'."""
    cores = {(r["package"], r["core"]): r for r in sample.cores}
    return [{**cores.get((r["package"], r["core"]), {}), **r} for r in sample.cpus]


def clip(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(0, width - 1)] + "~"


def _nb(col: Column) -> str:
    return col.name.replace(" ", NBSP)


def notes(
    metrics: Mapping[str, str | None],
    sample: Sample,
    shown: Sequence[Column],
    hidden: Sequence[Column],
    left_out: Sequence[Column] = (),
    sources: Sequence[str] = (),
) -> list[str]:
    """Where values no MSR holds come from; why shown columns are '-' and why absent ones
    were left out, once per reason; the hidden columns; failed ops."""
    out = list(sources)
    for title, columns in ((f"'{ABSENT}' = absent on this machine:", shown), ("absent on this machine:", left_out)):
        reasons: dict[str, list[str]] = {}
        for c in columns:
            why = metrics.get(c.key)
            if c.key not in IDS and why is not None:
                reasons.setdefault(why, []).append(_nb(c))
        if reasons:
            out.append(title)
            out += [f"  {', '.join(names)}: {why}" for why, names in reasons.items()]
    rows = [*sample.packages, *cpu_rows(sample)]
    gaps = [
        _nb(c)
        for c in shown
        if c.key not in IDS and metrics.get(c.key, "") is None and any(c.key in r and r[c.key] is None for r in rows)
    ]
    if gaps:
        out.append(
            f"'{ABSENT}' under {', '.join(gaps)}: no value this interval "
            "(a CPU never busy, an invalid reading or a failed read)"
        )
    if sample.failed:
        op, err = sample.failed[0]
        what = "RDTSC" if op.rdtsc else f"MSR {op.msr:#x}"
        n = len(sample.failed)
        first = f"{what} on CPU {op.cpu}: {os.strerror(err)}"
        out.append(f"{n} read{'s' * (n != 1)} failed this interval; the first: {first}")
    if hidden:
        out.append(f"hidden, the window is too narrow: {', '.join(_nb(c) for c in hidden)}")
    return out


def _wrap(lines: list[str], width: int | None) -> list[str]:
    if width is None:
        return [line.replace(NBSP, " ") for line in lines]
    out = []
    for line in lines:
        indent = " " * (4 if line.startswith("  ") else 2)
        out += textwrap.wrap(line, max(width, len(indent) + 1), subsequent_indent=indent, break_on_hyphens=False)
    return [line.replace(NBSP, " ") for line in out]


def _table(columns: Sequence[Column], rows: Sequence[Row], room: int, what: str, width: int | None) -> list[str]:
    """The title and the rows, in room lines: when not all fit, the last line says how
    many more there are."""
    lines = [clip(row_line(columns, r), width) for r in rows]  # clip: a value wider than its column
    if len(lines) + 1 <= room:
        return [title_line(columns), *lines]
    keep = max(0, room - 2)
    more = f"+{len(lines) - keep} more {what}: enlarge the window, or choose CPUs with -p"
    return [title_line(columns), *lines[:keep], clip(more, width)]


def too_small(width: int | None, height: int | None, need_w: int, need_h: int) -> list[str]:
    """What a window too small for the table shows instead of a garbled table."""
    text = (
        f"msrctl top: the window is {width or '-'}x{height or '-'}, too small for the table; "
        f"it needs at least {need_w}x{need_h}: enlarge it, or press q to quit"
    )
    lines = textwrap.wrap(text, max(1, width or len(text)))
    return lines[: max(1, height or len(lines))]


def render(
    header: Header,
    metrics: Mapping[str, str | None],
    sample: Sample | None,
    status: Status | None = None,
    width: int | None = None,
    height: int | None = None,
    all_columns: bool = False,
) -> list[str]:
    """The frame's lines, none longer than width nor more than height (None: no limit).

    metrics: the probe's verdict per metric (None: present, else why absent);
    sample None: the first interval has not ended yet; all_columns: a column for every
    metric, '-' under the absent ones."""
    pkg_all = present(PACKAGE_COLUMNS, metrics, all_columns)
    cpu_all = present(CPU_COLUMNS, metrics, all_columns)
    need_w = min_width(pkg_all, cpu_all)
    need_h = min_height(header, max(width or need_w, need_w))
    if (width is not None and width < need_w) or (height is not None and height < need_h):
        return too_small(width, height, need_w, need_h)
    top = header_lines(header, status, width)
    if sample is None:
        first = f"measuring: the first values come after one interval ({format_interval(header.interval_ns)})"
        return [*top, "", clip(first, width)]
    if any(r.get("core_type") for r in sample.cpus):
        cpu_all = [*cpu_all[:2], TYPE_COLUMN, *cpu_all[2:]]
    pkg_cols, cpu_cols = fit(pkg_all, width), fit(cpu_all, width)
    assert pkg_cols is not None and cpu_cols is not None  # min_width() guarantees it
    hidden = [c for c in (*pkg_all, *cpu_all) if c not in pkg_cols and c not in cpu_cols]
    left_out = [c for c in (*PACKAGE_COLUMNS, *CPU_COLUMNS) if c not in pkg_all and c not in cpu_all]
    room = (height if height is not None else 1 << 30) - len(top) - 2  # a blank line before each table
    pkgs = _table(pkg_cols, sample.packages, room - 2, "packages", width)  # 2: the CPU table's least
    cpus = _table(cpu_cols, cpu_rows(sample), room - len(pkgs), "CPUs", width)
    left = room - len(pkgs) - len(cpus)
    tail = _wrap(notes(metrics, sample, [*pkg_cols, *cpu_cols], hidden, left_out, header.sources), width)
    if tail and len(tail) + 1 > left:  # the CPU rows come first: then one line for the reasons
        tail = [clip(f"'{ABSENT}' = absent: enlarge the window to see why", width)] if left >= 2 else []
    return [*top, "", *pkgs, "", *cpus, *(["", *tail] if tail else [])]
