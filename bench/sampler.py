#!/usr/bin/env python3
"""`make bench-sampler`: msrdrv's kernel sampler against the user-space
alternative (a loop that sleeps to the next period and submits one batch).

Builds msrdrv and bench/sampler.c, boots the guest once with 4 pinned vCPUs
(CPU 0 reads, CPUs 1-3 are sampled: three MSRs and a timestamp each) and
runs bench/sampler-guest.sh: BLOCKS blocks of a period sweep, both methods
at 1 kHz alone, and both with a spinner on each sampled CPU.  Per block it
takes the highest rate per CPU each method sustains (every sampled CPU
gets at least 99% of the samples asked for and the ring drops none), the
interval error's p50 and p99 at 1 kHz, the time a sampled CPU loses per
sample, and the reader's CPU time per second; the report gives the median
over blocks with their range.  Writes bench/results/sampler.json and
sampler.md, and the table in docs/benchmarks.md between the bench-sampler markers.
Every figure comes from QEMU TCG emulation, not hardware.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
import doctable  # noqa: E402

OUT = REPO / "bench" / "results"
README_START = "<!-- bench-sampler:start -->"
README_END = "<!-- bench-sampler:end -->"
PERIODS_NS = [10_000_000, 5_000_000, 2_000_000, 1_000_000, 500_000, 200_000, 100_000, 50_000, 20_000, 10_000]
JITTER_NS = 1_000_000
SUSTAINED = 0.99  # of the samples asked for, on every sampled CPU
METHODS = {"kernel": "kernel sampler (msrdrv)", "user": "user-space loop (sleep + one batch)"}


def sustained(run: dict[str, Any]) -> bool:
    """Every sampled CPU got SUSTAINED of the samples asked for and its ring dropped none."""
    asked = run["seconds"] * 1e9 / run["period_ns"]
    return all(c["dropped"] == 0 and c["samples"] >= SUSTAINED * asked for c in run["cpus"])


def highest_rate(runs: list[dict[str, Any]]) -> float:
    """The highest rate per CPU (Hz) among the sustained sweep runs; 0 if none."""
    return max((1e9 / r["period_ns"] for r in runs if sustained(r)), default=0.0)


def most_delivered(runs: list[dict[str, Any]]) -> float:
    """The most samples per second the worst sampled CPU got in a run whose ring dropped none."""
    return max((min(c["samples"] for c in r["cpus"]) / r["wall_s"] for r in runs
                if all(c["dropped"] == 0 for c in r["cpus"])), default=0.0)  # fmt: skip


def lost_per_sample_ns(run: dict[str, Any], idle: list[dict[str, Any]]) -> float:
    """Time a sampled CPU lost per sample: its spinner's stolen time beyond the idle
    runs' share of the same span, over the samples it gave; mean over the CPUs."""
    per_cpu = []
    for c in run["cpus"]:
        base = statistics.mean(i_c["stolen_ns"] / i_c["spun_ns"] for i in idle for i_c in i["cpus"]
                               if i_c["cpu"] == c["cpu"])  # fmt: skip
        per_cpu.append((c["stolen_ns"] - base * c["spun_ns"]) / max(1, c["samples"]))
    return statistics.mean(per_cpu)


def block_figures(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Every figure one block gives, per method: rate_hz, delivered_hz, p50_ns, p99_ns, lost_ns, reader_pct."""
    out: dict[str, float] = {}
    idle = [r for r in runs if r["kind"] == "cost" and r["mode"] == "idle"]
    for m in METHODS:
        sweep = [r for r in runs if r["kind"] == "sweep" and r["mode"] == m]
        out[f"{m}_rate_hz"] = highest_rate(sweep)
        out[f"{m}_delivered_hz"] = most_delivered(sweep)
        jit = next(r for r in runs if r["kind"] == "jitter" and r["mode"] == m)
        out[f"{m}_p50_ns"] = jit["err_p50_ns"]
        out[f"{m}_p99_ns"] = jit["err_p99_ns"]
        out[f"{m}_reader_pct"] = 100 * jit["reader_cpu_s"] / jit["wall_s"]
        cost = next(r for r in runs if r["kind"] == "cost" and r["mode"] == m)
        out[f"{m}_lost_ns"] = lost_per_sample_ns(cost, idle)
        out[f"{m}_busy_p50_ns"] = cost["err_p50_ns"]
        out[f"{m}_busy_p99_ns"] = cost["err_p99_ns"]
    return out


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    blocks = sorted({r["block"] for r in runs})
    per_block = [block_figures([r for r in runs if r["block"] == b]) for b in blocks]
    figures = {k: summary([f[k] for f in per_block]) for k in per_block[0]}
    sweep = []
    for p in sorted({r["period_ns"] for r in runs if r["kind"] == "sweep"}, reverse=True):
        row: dict[str, Any] = {"period_ns": p}
        for m in METHODS:
            rs = [r for r in runs if r["kind"] == "sweep" and r["mode"] == m and r["period_ns"] == p]
            asked = rs[0]["seconds"] * 1e9 / p
            row[m] = {
                "achieved": statistics.median(min(c["samples"] for c in r["cpus"]) / asked for r in rs),
                "dropped": max(sum(c["dropped"] for c in r["cpus"]) for r in rs),
                "missed": statistics.median(sum(c["missed"] for c in r["cpus"]) for r in rs),
                # periods the kernel skipped over its interrupt budget (sampler_cpu_pct)
                "throttled": statistics.median(sum(c.get("throttled", 0) for c in r["cpus"]) for r in rs),
                "sustained": sum(sustained(r) for r in rs),
                "blocks": len(rs),
                "p99_ns": statistics.median(r["err_p99_ns"] for r in rs),
            }
        sweep.append(row)
    return {"figures": figures, "sweep": sweep, "blocks": len(blocks)}


def fmt_ns(ns: float) -> str:
    return f"{ns / 1000:,.1f} us" if abs(ns) >= 1000 else f"{ns:,.0f} ns"


def fmt_range(s: dict[str, Any], fmt: Any) -> str:
    return f"**{fmt(s['median'])}** ({fmt(s['min'])} - {fmt(s['max'])})"


def render(data: dict[str, Any]) -> str:
    f, cfg = data["figures"], data["config"]
    ncpus = cfg["vcpus"] - 1
    # A host busy with other work delays every timer of the guest, whichever method.
    load = f" (load average {data['host_load'][1]:.1f} over the run)" if data.get("host_load") else ""
    khz = 1e6 / JITTER_NS

    def hz(v: float) -> str:
        return f"{v / 1000:g} kHz" if v else "none"

    def pct(v: float) -> str:
        return f"{v:.2f}%"

    def ratio(k: str, higher_better: bool) -> str:
        a, b = f[f"kernel_{k}"]["median"], f[f"user_{k}"]["median"]
        if not a or not b:
            return ""
        if a < 0 or b < 0:  # a CPU "lost" negative time: the figure is below the emulator's noise
            return "n/a (below the noise)"
        r = a / b if higher_better else b / a
        return f"{r:.1f}x"

    def per_s(v: float) -> str:
        return f"{v:,.0f}/s"

    rows = [
        ("highest rate per sampled CPU sustained with zero drops (>= 99% of the samples asked for)",
         "rate_hz", hz, True),
        ("most samples a sampled CPU got per second, any rate asked, zero drops", "delivered_hz", per_s, True),
        (f"interval error p50 at {khz:g} kHz (how far each TSC step is from the period)", "p50_ns", fmt_ns, False),
        (f"interval error p99 at {khz:g} kHz", "p99_ns", fmt_ns, False),
        (f"interval error p50 at {khz:g} kHz, the sampled CPUs busy (spinners)", "busy_p50_ns", fmt_ns, False),
        (f"interval error p99 at {khz:g} kHz, the sampled CPUs busy", "busy_p99_ns", fmt_ns, False),
        (f"time a sampled CPU loses per sample at {khz:g} kHz (its spinner's stolen time)", "lost_ns", fmt_ns,
         False),
        (f"reader CPU time per second at {khz:g} kHz x {ncpus} CPUs (CPU 0)", "reader_pct", pct, False),
    ]  # fmt: skip
    lines = [
        f"Measured {data['date']} in the QEMU TCG guest ({cfg['vcpus']} vCPUs, vCPU threads pinned, kernel "
        f"{data['kernel']}) on a {data['host_cpus']}-CPU host{load}, {data['blocks']} blocks of one boot: emulated "
        f"figures, not hardware. CPU 0 reads; CPUs 1-{ncpus} are sampled, each for MPERF, APERF and "
        "APIC_BASE and a timestamp (QEMU reads MPERF and APERF as 0: the values are not the point here). "
        "Each cell: median over the blocks (their range); the last column is how many times better the "
        f"kernel sampler is. Method: `bench/sampler.py`, `bench/sampler.c`; raw figures: "
        "`bench/results/sampler.json`.",
        "",
        f"| figure | {METHODS['kernel']} | {METHODS['user']} | kernel sampler ahead by |",
        "|---|---:|---:|---:|",
    ]
    for what, key, fmt, higher in rows:
        lines.append(f"| {what} | {fmt_range(f['kernel_' + key], fmt)} | {fmt_range(f['user_' + key], fmt)} | "
                     f"{ratio(key, higher)} |")  # fmt: skip
    lines += [
        "",
        "Period sweep, each run "
        f"{cfg['seconds']:g} s: the worst sampled CPU's share of the samples asked for (median over blocks), "
        "records the ring dropped (most in a block), periods the timer or loop skipped (median; "
        "the kernel's throttled over its interrupt budget, sampler_cpu_pct, after the +), "
        "blocks sustained, interval error p99:",
        "",
        "| rate per CPU | kernel: share, dropped, skipped, sustained, p99 | user loop: share, dropped, skipped, "
        "sustained, p99 |",
        "|---:|---|---|",
    ]
    for row in data["sweep"]:
        cells = []
        for m in METHODS:
            c = row[m]
            skipped = f"{c['missed']:g}" + (f"+{c['throttled']:g}" if c.get("throttled") else "")
            cells.append(f"{100 * c['achieved']:.1f}%, {c['dropped']}, {skipped}, "
                         f"{c['sustained']}/{c['blocks']}, {fmt_ns(c['p99_ns'])}")  # fmt: skip
        lines.append(f"| {1e9 / row['period_ns'] / 1000:g} kHz | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def update_docs(table: str) -> None:
    doctable.replace_between(REPO / "docs" / "benchmarks.md", README_START, README_END, table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=int(os.environ.get("BENCH_CPUS", 4)), help="guest vCPUs")
    ap.add_argument("--blocks", type=int, default=int(os.environ.get("BENCH_BLOCKS", 3)))
    ap.add_argument("--seconds", type=float, default=2.0, help="per run")
    ap.add_argument("--timeout", type=int, default=2400, help="seconds for the boot")
    ap.add_argument("--out", type=Path, default=OUT, help="results directory")
    ap.add_argument(
        "--no-docs", "--no-readme", dest="no_readme", action="store_true", help="leave docs/benchmarks.md alone"
    )
    ap.add_argument("--render", action="store_true", help="only re-render from OUT/sampler.json")
    args = ap.parse_args()
    if args.render:
        data = json.loads((args.out / "sampler.json").read_text())
        data |= aggregate(data["raw"])
        return report(data, args.out, readme=not args.no_readme)

    import suite
    import vm

    kernel = vm.default_kernel()
    suite.build_module(kernel)
    build = REPO / "build" / "bench"
    build.mkdir(parents=True, exist_ok=True)
    exe = build / "sampler"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-I", str(REPO / "dkms"), "-o", str(exe),
                    str(REPO / "bench" / "sampler.c")], check=True)  # fmt: skip
    results = (REPO / "results" / "bench-sampler").resolve()
    results.mkdir(parents=True, exist_ok=True)
    periods = " ".join(map(str, PERIODS_NS))
    env = (f"MSRDRV_SAMPLER_BIN={exe} SAMPLER_BLOCKS={args.blocks} SAMPLER_PERIODS='{periods}' "
           f"SAMPLER_SECONDS={args.seconds} SAMPLER_JITTER_NS={JITTER_NS}")  # fmt: skip
    rc = vm.boot(f"{env} sh bench/sampler-guest.sh", kernel, cpus=args.cpus, results=results,
                 timeout=args.timeout, pin=True)  # fmt: skip
    if rc:
        sys.exit(f"bench-sampler: the guest part failed (exit {rc}); see the console output above")
    problems = vm.dmesg_problems(results / "sampler-dmesg.txt")
    if problems:
        sys.exit("bench-sampler: guest kernel log has problems:\n" + "\n".join(problems))
    runs = [json.loads(line) for line in (results / "sampler.jsonl").read_text().splitlines() if line.strip()]
    data = {
        "host_load": os.getloadavg(),  # the 5-minute figure covers the run
        "date": datetime.date.today().isoformat(),
        "kernel": kernel,
        "host_cpus": os.cpu_count(),
        "emulated": "QEMU TCG, no KVM: every figure is emulated, not hardware",
        "config": {
            "vcpus": args.cpus,
            "blocks": args.blocks,
            "seconds": args.seconds,
            "periods_ns": PERIODS_NS,
            "jitter_ns": JITTER_NS,
            "sustained": SUSTAINED,
        },
        **aggregate(runs),
        "raw": runs,
    }
    return report(data, args.out, readme=not args.no_readme)


def report(data: dict[str, Any], out: Path, readme: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sampler.json").write_text(json.dumps(data, indent=2) + "\n")
    table = render(data)
    (out / "sampler.md").write_text("# Kernel sampler against the user-space loop\n\n" + table)
    if readme:
        update_docs(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
