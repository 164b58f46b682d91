#!/usr/bin/env python3
"""`make bench-irqoff`: the longest time one msrdrv batch keeps a target CPU
from running its own task, before and after interrupts-off sections.

Builds bench/irqoff.c and msrdrv twice -- from this tree and from BEFORE (a
git revision, default the last one without sections) -- boots the guest once,
and runs irqoff against each module loaded with max_ops=65536.  Writes
bench/results/irqoff.json and irqoff.md.  Figures come from QEMU TCG
emulation, not hardware.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import vm  # noqa: E402

OUT = REPO / "bench" / "results"
SIZES = [0, 64, 1024, 4096, 65536]


def build(tree: Path, kernel: str, exe: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(tree / "dkms"), f"KVER={kernel}"], check=True)
    subprocess.run(
        ["cc", "-O2", "-I", str(tree / "dkms"), "-o", str(exe), str(REPO / "bench" / "irqoff.c")], check=True
    )
    return tree / "dkms" / "msrdrv.ko"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="df6390b^", help="git revision of the module to compare with")
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = ap.parse_args()
    kernel = vm.default_kernel()
    OUT.mkdir(parents=True, exist_ok=True)
    results = (REPO / "results").resolve()
    with tempfile.TemporaryDirectory(dir=REPO / "build" if (REPO / "build").exists() else None) as tmp:
        old_tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_tree), args.before], check=True)
        try:
            mods = {
                "after": (build(REPO, kernel, Path(tmp) / "irqoff-after"), Path(tmp) / "irqoff-after"),
                "before": (build(old_tree, kernel, Path(tmp) / "irqoff-before"), Path(tmp) / "irqoff-before"),
            }
            sizes = " ".join(map(str, SIZES))
            lines = []
            for label, (ko, exe) in mods.items():
                out = results / f"irqoff-{label}.json"
                lines.append(
                    f"insmod {shlex.quote(str(ko))} max_ops=65536 && udevadm settle && "
                    f"{shlex.quote(str(exe))} 1 {args.seconds} {sizes} > {shlex.quote(str(out))}; rmmod msrdrv"
                )
            rc = vm.boot("; ".join(lines), kernel, cpus=2, results=results)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
    if rc != 0:
        print(f"irqoff: the guest run failed (exit {rc})", file=sys.stderr)
        return 1
    data = {
        "date": datetime.date.today().isoformat(),
        "kernel": kernel,
        "emulated": "QEMU TCG, 2 vCPUs on a 2-core host",
        "before_revision": args.before,
        "runs": {label: json.loads((results / f"irqoff-{label}.json").read_text()) for label in ("before", "after")},
    }
    (OUT / "irqoff.json").write_text(json.dumps(data, indent=2) + "\n")
    rows = [
        "| ops per batch | gaps > 20 us (before / after) | median gap | 99th percentile | longest |",
        "|---:|---:|---:|---:|---:|",
    ]
    before = {r["ops"]: r for r in data["runs"]["before"]["runs"]}

    def us(b: dict[str, int], a: dict[str, int], key: str) -> str:
        return f"{b[key] / 1000:,.0f} / {a[key] / 1000:,.0f} us"

    for r in data["runs"]["after"]["runs"]:
        b = before[r["ops"]]
        label = "none (noise)" if r["ops"] == 0 else f"{r['ops']:,}"
        rows.append(
            f"| {label} | {b['gaps']:,} / {r['gaps']:,} | {us(b, r, 'median_gap_ns')} | "
            f"{us(b, r, 'p99_gap_ns')} | {us(b, r, 'max_gap_ns')} |"
        )
    sec_rows = [
        "| ops per batch | before: sections, longest | after: sections, longest |",
        "|---:|---:|---:|",
    ]
    before_s = {r["ops"]: r for r in data["runs"]["before"]["sections"]}
    for r in data["runs"]["after"]["sections"]:
        b = before_s[r["ops"]]
        sec_rows.append(
            f"| {r['ops']:,} | {b['sections']:,}, {b['longest_ns'] / 1000:,.1f} us | "
            f"{r['sections']:,}, {r['longest_ns'] / 1000:,.1f} us |"
        )
    md = (
        f"# Longest stall of a task on the target CPU ({data['date']}, kernel {kernel}, {data['emulated']})\n\n"
        "Emulated figures, not hardware. A task pinned to CPU 1 reads CLOCK_MONOTONIC in a loop and records "
        "every gap above 20 us while another process sends batches of N reads (IA32_TSC) to CPU 1 for "
        f"{args.seconds:g} s per row; each cell is before / after. 'before' is msrdrv at {args.before} (one "
        "interrupts-off section per batch); 'after' runs at most section_ops (64) ops per section. The "
        "'none' row is the emulator's own noise (the host descheduling a vCPU thread): the longest gaps "
        "of every row include it.\n\n" + "\n".join(rows) + "\n\n"
        "## Longest interrupts-off section, timed by the batch itself\n\n"
        "Each batch (10 per row, the worst kept) is N ops on CPU 1, every other one an RDTSC; the RDTSC "
        "series is cut where a step exceeds 8 times the median step (an IPI round trip between "
        "sections), and the longest piece's span is the longest stretch with interrupts off.\n\n"
        + "\n".join(sec_rows)
        + "\n"
    )
    (OUT / "irqoff.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
