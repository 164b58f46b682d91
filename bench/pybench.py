"""In-guest: the Python library's cost for the 32-read batch, and CLI start-up.

Prints one JSON object.  Run as root in the benchmark guest (bench/guest.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from msrctl.device import Batch, Device  # noqa: E402

REGS = [0x10, 0x1B, 0x277, 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000084, 0xC0000103]


def library(reps: int) -> float:
    """Median ns of submitting one prebuilt 32-read batch (buffers reused)."""
    os.sched_setaffinity(0, {0})
    with Device() as dev:
        batch = Batch(32)
        for i in range(32):
            batch.read(REGS[i % 8], 0)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            dev.submit(batch)
            times.append(time.perf_counter_ns() - t0)
        batch.check()
    return statistics.median(times)


def wall(cmd: list[str], runs: int) -> float:
    """Median wall-clock seconds of running cmd."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    out: dict[str, object] = {"library_read32_ns": library(reps)}
    startup = {
        "python_pass_s": wall([sys.executable, "-c", "pass"], runs),
        "msrctl_read_s": wall([sys.executable, "-m", "msrctl", "read", "0x10"], runs),
    }
    rdmsr = shutil.which("rdmsr")
    if rdmsr:
        startup["rdmsr_s"] = wall([rdmsr, "0x10"], runs)
    out["startup"] = startup
    print(json.dumps(out))


if __name__ == "__main__":
    main()
