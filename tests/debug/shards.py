#!/usr/bin/env python3
"""Split the guest test files into N shards of about equal time under the
debug kernel, one line of files per shard (tests/debug/run.sh boots a guest
per shard; on 2 host cores two guests finish the suite in a little over half
the time of one, since most tests keep one vCPU busy).

    tests/debug/shards.py N FILE...

Times are each file's seconds in the last whole `make test-debug` (2-core
machine, TCG); a file not listed yet counts as DEFAULT.  Longest first, each
to the shard with the least time so far; files keep their order within a
shard, so test_zz_lockdown.py (which closes debugfs) stays last in its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT = 300.0
SECONDS = {  # 2026-11-26, recipe 8b8a6c0ee4a4, two guests at once
    "test_cli.py": 1430.0,
    "test_decode.py": 230.0,
    "test_exporter.py": 360.0,
    "test_msrdrv.py": 260.0,
    "test_policy.py": 370.0,
    "test_policy_attacks.py": 500.0,
    "test_power.py": 130.0,
    "test_record_ktimer.py": 240.0,
    "test_sampler.py": 100.0,
    "test_stat_allowlist.py": 360.0,
    "test_stock_backend.py": 250.0,  # estimated: its fixture failed in that run
    "test_stress.py": 330.0,
    "test_telemetry.py": 180.0,
    "test_top.py": 410.0,
    "test_zz_lockdown.py": 20.0,
}


def plan(files: list[str], n: int) -> list[list[str]]:
    shards: list[list[str]] = [[] for _ in range(max(1, n))]
    load = [0.0] * len(shards)
    for f in sorted(files, key=lambda f: -SECONDS.get(Path(f).name, DEFAULT)):
        i = load.index(min(load))
        shards[i].append(f)
        load[i] += SECONDS.get(Path(f).name, DEFAULT)
    return [sorted(s) for s in shards if s]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: shards.py N FILE...", file=sys.stderr)
        return 2
    for shard in plan(argv[1:], int(argv[0])):
        print(" ".join(shard))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
