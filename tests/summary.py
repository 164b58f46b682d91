#!/usr/bin/env python3
"""Add up pytest junit files into one closing line: 'all: N passed, N failed, N skipped'.

A stage whose file is missing, unreadable or holds no test (it timed out,
crashed or never ran) counts as a failed test: the closing line never reads
'0 failed' for a run that produced less than it should."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import junit_counts


def main(paths: list[str]) -> int:
    total = [0, 0, 0]
    empty = []
    for p in paths:
        counts = junit_counts(Path(p))
        if not any(counts):
            empty.append(p)
            counts = (0, 1, 0)
            print(f"{p}: no results (the stage failed, timed out or did not run): counted as 1 failed")
        else:
            print(f"{p}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
        total = [a + b for a, b in zip(total, counts)]
    tail = f" ({len(empty)} stage{'s' if len(empty) != 1 else ''} without results)" if empty else ""
    print(f"all: {total[0]} passed, {total[1]} failed, {total[2]} skipped{tail}")
    return 1 if total[1] or not total[0] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
