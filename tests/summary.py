#!/usr/bin/env python3
"""Add up pytest junit files into one closing line: 'all: N passed, N failed, N skipped'."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import junit_counts


def main(paths: list[str]) -> int:
    total = [0, 0, 0]
    for p in paths:
        counts = junit_counts(Path(p))
        print(f"{p}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
        total = [a + b for a, b in zip(total, counts)]
    print(f"all: {total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] or not total[0] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
