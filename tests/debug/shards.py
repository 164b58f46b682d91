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
SECONDS = {
    "test_cli.py": 2300.0,
    "test_decode.py": 180.0,
    "test_exporter.py": 280.0,
    "test_msrdrv.py": 200.0,
    "test_policy.py": 400.0,
    "test_policy_attacks.py": 870.0,
    "test_power.py": 110.0,
    "test_record_ktimer.py": 220.0,
    "test_sampler.py": 285.0,
    "test_stat_allowlist.py": 300.0,
    "test_stock_backend.py": 300.0,
    "test_stress.py": 860.0,
    "test_telemetry.py": 300.0,
    "test_top.py": 260.0,
    "test_zz_lockdown.py": 15.0,
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
