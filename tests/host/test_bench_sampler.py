"""bench/sampler.py's figures from the guest's JSON lines: sustained rates,
time lost per sample, the report's table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import sampler  # noqa: E402


def run(mode: str, kind: str, period_ns: int, share: float, block: int = 0, dropped: int = 0,
        stolen: float = 0.0, p50: int = 1000, p99: int = 9000, reader: float = 0.02) -> dict[str, Any]:  # fmt: skip
    samples = int(share * 2e9 / period_ns)
    cpus = [{"cpu": c, "samples": samples, "dropped": dropped if c == 1 else 0, "missed": 0,
             "stolen_ns": int(stolen * 2e9), "spun_ns": int(2e9), "host_ns": 0} for c in (1, 2, 3)]  # fmt: skip
    return {"block": block, "kind": kind, "mode": mode, "period_ns": period_ns, "seconds": 2.0, "wall_s": 2.0,
            "reader_cpu_s": reader * 2, "cpus": cpus, "err_p50_ns": p50, "err_p99_ns": p99}  # fmt: skip


def block(b: int) -> list[dict[str, Any]]:
    runs = []
    for p in (1_000_000, 100_000, 10_000):
        runs.append(run("kernel", "sweep", p, 1.0 if p >= 100_000 else 0.3, b))
        runs.append(run("user", "sweep", p, 1.0 if p >= 1_000_000 else 0.1, b, dropped=0))
    runs += [run("kernel", "jitter", 1_000_000, 1.0, b, p50=500, p99=4000, reader=0.01),
             run("user", "jitter", 1_000_000, 1.0, b, p50=800, p99=6000, reader=0.4),
             run("idle", "cost", 1_000_000, 0.0, b, stolen=0.01),
             run("kernel", "cost", 1_000_000, 1.0, b, stolen=0.03),
             run("user", "cost", 1_000_000, 1.0, b, stolen=0.05),
             run("idle", "cost", 1_000_000, 0.0, b, stolen=0.01)]  # fmt: skip
    return runs


def test_sustained_needs_every_cpu_and_no_drop() -> None:
    assert sampler.sustained(run("kernel", "sweep", 1_000_000, 0.995))
    assert not sampler.sustained(run("kernel", "sweep", 1_000_000, 0.98))
    assert not sampler.sustained(run("kernel", "sweep", 1_000_000, 1.0, dropped=1))
    assert sampler.highest_rate([run("k", "sweep", 1_000_000, 1.0), run("k", "sweep", 100_000, 1.0),
                                 run("k", "sweep", 10_000, 0.5)]) == 10_000  # fmt: skip
    assert sampler.highest_rate([run("k", "sweep", 1_000_000, 0.5)]) == 0.0
    # delivered: the samples per second, whatever was asked, only from runs without drops
    assert sampler.most_delivered([run("k", "sweep", 10_000, 0.5), run("k", "sweep", 100_000, 1.0, dropped=3)]) \
        == 50_000  # fmt: skip


def test_time_lost_per_sample_is_beyond_the_idle_share() -> None:
    idle = [run("idle", "cost", 1_000_000, 0.0, stolen=0.01)]
    # 3% stolen against 1% idle over 2 s: 40 ms over 2000 samples = 20 us each
    assert abs(sampler.lost_per_sample_ns(run("kernel", "cost", 1_000_000, 1.0, stolen=0.03), idle) - 20_000) < 1


def test_aggregate_and_report() -> None:
    runs = block(0) + block(1) + block(2)
    agg = sampler.aggregate(runs)
    f = agg["figures"]
    assert agg["blocks"] == 3
    assert f["kernel_rate_hz"]["median"] == 10_000 and f["user_rate_hz"]["median"] == 1_000
    assert f["kernel_p99_ns"]["median"] == 4000 and f["user_reader_pct"]["median"] == 40
    assert f["kernel_lost_ns"]["median"] < f["user_lost_ns"]["median"]
    assert [row["period_ns"] for row in agg["sweep"]] == [1_000_000, 100_000, 10_000]
    data = {"date": "2026-11-26", "kernel": "6.1.0-56-amd64", "host_cpus": 2,
            "config": {"vcpus": 4, "seconds": 2.0}, **agg}  # fmt: skip
    text = sampler.render(data)
    assert "emulated" in text and "QEMU TCG" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert all(line.count("|") == table[0].count("|") for line in table[:9]), "a stray | breaks a row"
    assert "| 10 kHz |" in text and "10.0x" in text  # kernel 10 kHz sustained against 1 kHz
