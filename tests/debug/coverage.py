#!/usr/bin/env python3
"""Summarise an lcov tracefile of the module (tests/debug/run.sh).

    python tests/debug/coverage.py coverage.info

Per source file: lines, functions and branches covered; the functions never
called; and, per function, the lines never run.  The last line is the total:
'coverage: lines N.N% (hit/found), functions ..., branches ...'.
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Source:
    path: str
    functions: dict[str, int] = field(default_factory=dict)  # name -> first line
    calls: dict[str, int] = field(default_factory=dict)  # name -> times called
    lines: dict[int, int] = field(default_factory=dict)  # line -> times run
    branches: list[bool] = field(default_factory=list)  # taken at least once


def parse(text: str) -> list[Source]:
    sources: list[Source] = []
    cur: Source | None = None
    for raw in text.splitlines():
        tag, _, value = raw.partition(":")
        if tag == "SF":
            cur = Source(value)
            sources.append(cur)
        elif cur is None:
            continue
        elif tag == "FN":
            line, name = value.split(",", 1)
            cur.functions[name] = int(line)
        elif tag == "FNDA":
            count, name = value.split(",", 1)
            cur.calls[name] = cur.calls.get(name, 0) + int(count)
        elif tag == "DA":
            line, count = value.split(",")[:2]
            cur.lines[int(line)] = cur.lines.get(int(line), 0) + int(count)
        elif tag == "BRDA":
            taken = value.split(",")[3]
            cur.branches.append(taken not in ("-", "0"))
    return sources


def pct(hit: int, found: int) -> str:
    return f"{100.0 * hit / found:.1f}% ({hit}/{found})" if found else "n/a (0/0)"


def main() -> int:
    sources = [s for s in parse(Path(sys.argv[1]).read_text()) if s.path.endswith(".c")]
    total = [0, 0, 0, 0, 0, 0]
    for src in sources:
        lh = sum(1 for c in src.lines.values() if c)
        fh = sum(1 for c in src.calls.values() if c)
        bh = sum(src.branches)
        counts = (lh, len(src.lines), fh, len(src.functions), bh, len(src.branches))
        total = [a + b for a, b in zip(total, counts)]
        print(
            f"{Path(src.path).name}: lines {pct(lh, len(src.lines))}, functions {pct(fh, len(src.functions))}, "
            f"branches {pct(bh, len(src.branches))}"
        )
        never = sorted(n for n in src.functions if not src.calls.get(n))
        if never:
            print(f"  never called: {', '.join(never)}")
        starts = sorted((line, name) for name, line in src.functions.items())
        missed: dict[str, list[int]] = {}
        for line, count in sorted(src.lines.items()):
            if count:
                continue
            i = bisect.bisect_right(starts, (line, "\uffff")) - 1
            name = starts[i][1] if i >= 0 else "(file scope)"
            if name in never:
                continue
            missed.setdefault(name, []).append(line)
        for name, lines in sorted(missed.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(map(str, lines[:12])) + (", ..." if len(lines) > 12 else "")
            print(f"  {name}: {len(lines)} line(s) not run: {shown}")
    lh, lf, fh, ff, bh, bf = total
    print(f"coverage: lines {pct(lh, lf)}, functions {pct(fh, ff)}, branches {pct(bh, bf)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
