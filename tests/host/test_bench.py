"""bench/run.py's statistics and report: spread, verdicts, run-to-run agreement."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402


def c_block(scale: float = 1.0, read32: float = 3.0) -> dict[str, Any]:
    def pair(ops: int, drv: float, ratio: float) -> dict[str, Any]:
        return {"ops": ops, "msrdrv_ns": drv * scale, "msr_ns": drv * scale * ratio}

    return {
        "cpus": 4,
        "read1": pair(1, 4000, 0.75),
        "read32": pair(32, 20000, read32),
        "allcpu": pair(4, 90000, 2.0),
        "sweep": [{"ops": 1, "ns": 4000 * scale}, {"ops": 2, "ns": 5000 * scale}],
    }


def py_block(python: float = 1.5, debian: float = 4.0) -> dict[str, Any]:
    def stack(pass_s: float, read_s: float, pass_cpu_s: float, read_cpu_s: float) -> dict[str, float]:
        return {"python_pass_s": pass_s, "msrctl_read_s": read_s, "python_pass_cpu_s": pass_cpu_s,
                "msrctl_read_cpu_s": read_cpu_s}  # fmt: skip

    return {
        "library_read32": {"python_ns": 30000 * python, "c_ns": 30000},
        "startup": {
            "debian": stack(1.5, 3.0, 1.0, debian),
            "pypi": stack(3.0, 12.0, 2.0, 8.0),
            "msr-tools": {"rdmsr_s": 0.1, "rdmsr_cpu_s": 0.01},
        },
    }


def data(c: list[dict[str, Any]], py: list[dict[str, Any]]) -> dict[str, Any]:
    config = {"vcpus": 4, "boots": 1, "blocks_per_boot": len(c), "reps": 10, "startup_runs": 2, "pin": True}
    config |= {"trust_spread": run.TRUST_SPREAD, "agree": run.AGREE, "host_startup_runs": 5}
    host = [b["startup"] for b in py]
    base = {"date": "2026-11-26", "kernel": "6.1.0-test", "host": {"cpus": 2}, "config": config}
    return base | run.aggregate(c, py, host)


def test_summary_spread_and_trust() -> None:
    s = run.summary([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["spread"], s["trusted"]) == (2.0, 1.0, 3.0, 1.0, False)
    assert run.summary([1.0, 1.05, 1.1])["trusted"]


def test_verdict_needs_every_block_to_meet_the_goal() -> None:
    assert run.verdict(run.summary([4.1, 4.5]), 4.0, "min") == "met"
    assert run.verdict(run.summary([3.5, 4.5]), 4.0, "min") == "borderline"
    assert run.verdict(run.summary([2.0, 3.0]), 4.0, "min") == "not met"
    assert run.verdict(run.summary([1.1, 1.2]), 1.2, "max") == "met"
    assert run.verdict(run.summary([1.1, 1.3]), 1.2, "max") == "borderline"


def test_block_ratios_pair_the_c_and_python_sides_of_one_block() -> None:
    r = run.block_ratios(c_block(scale=2.0), py_block(python=1.25))
    assert r["read1"] == 0.75 and r["read32"] == 3.0 and r["allcpu"] == 2.0
    assert r["python"] == 1.25 and r["startup_debian"] == 4.0 and r["startup_pypi"] == 4.0
    assert r["startup_wall_debian"] == 2.0  # CPU time is the goal's measure, wall is reported beside it
    assert "startup_msr-tools" not in r


def test_report_marks_a_wide_ratio_and_keeps_a_steady_one() -> None:
    # absolute times double between blocks, ratios stay: the ratio is trusted
    c = [c_block(scale=1.0), c_block(scale=2.0, read32=4.5), c_block(scale=1.5)]
    py = [py_block(), py_block(), py_block(debian=4.2)]
    d = data(c, py)
    assert d["ratios"]["read1"]["trusted"] and d["ratios"]["read1"]["verdict"] == "not met"
    assert not d["ratios"]["read32"]["trusted"] and d["ratios"]["read32"]["verdict"] == "borderline"
    assert d["ratios"]["startup_debian"]["trusted"] and "goal" not in d["ratios"]["startup_debian"]
    assert d["ratios"]["host_startup_debian"]["goal"] == 3.0  # the goal is judged natively
    text = run.render(d)
    row = next(line for line in text.splitlines() if line.startswith("| 32 MSRs"))
    assert "**3.00x** (3.00-4.50), spread 50%: not to be trusted" in row and "| borderline |" in row
    row = next(line for line in text.splitlines() if line.startswith("| 1 MSR on CPU 0"))
    assert "**0.75x** (0.75-0.75) |" in row and "| not met |" in row
    assert d["sweep"][1]["ns_per_op"]["median"] == 3750  # 2-op batches of 5000, 10000, 7500 ns


def test_compare_flags_a_ratio_that_moved_beyond_the_agreement_bound() -> None:
    old = data([c_block()], [py_block()])
    new = data([c_block(read32=3.3)], [py_block(python=2.0)])
    cmp = run.compare(old, new)["ratios"]
    assert cmp["read32"]["agree"] and round(cmp["read32"]["change"], 2) == 0.10
    assert not cmp["python"]["agree"]
    new["vs_previous"] = run.compare(old, new)
    assert "python 1.50x -> 2.00x (+33%, outside 15%)" in run.render(new)


def test_committed_results_are_the_rendered_report() -> None:
    committed = json.loads((ROOT / "bench" / "results" / "results.json").read_text())
    assert (ROOT / "bench" / "results" / "results.md").read_text() == run.render(committed)


def test_python_rows_show_the_values_call_and_cpythons_floor() -> None:
    py = py_block(python=1.4)
    py["library_read32"] |= {"values_ns": 30000 * 2.5, "floor_ns": 30000 * 1.3, "results": "numpy"}
    d = data([c_block()], [py])
    assert d["ratios"]["python_floor"]["median"] == 1.3 and "goal" not in d["ratios"]["python_floor"]
    text = run.render(d)
    assert "then the 32 values in one call (`Batch.array()`) | 75000 ns | 30000 ns | **2.50x**" in text
    assert "CPython's floor: one bare `fcntl.ioctl`" in text and "**1.30x**" in text


def test_startup_over_typers_import_has_its_goal_and_rows(tmp_path: Path) -> None:
    """msrctl's start-up against `import typer` alone (issue 26's 1.25x goal, Debian 12's stack)."""
    blocks = []
    for typer_cpu in (0.040, 0.044, 0.042):
        b = py_block()["startup"]
        b["debian"] |= {"python_typer_s": 0.05, "python_typer_cpu_s": typer_cpu, "msrctl_read_cpu_s": 0.052}
        b["pypi"] |= {"python_typer_s": 0.07, "python_typer_cpu_s": 0.064, "msrctl_read_cpu_s": 0.096}
        blocks.append(b)
    r = run.startup_ratios(blocks[0], "host_")
    assert r["host_startup_typer_debian"] == 0.052 / 0.040 and r["host_startup_typer_pypi"] == 1.5
    d = data([c_block()] * 3, [{**py_block(), "startup": b} for b in blocks])
    deb = d["ratios"]["host_startup_typer_debian"]
    assert (deb["goal"], deb["median"], deb["verdict"]) == (1.25, 0.052 / 0.042, "borderline")
    assert (
        d["ratios"]["host_startup_typer_pypi"]["goal"] is None
        and "verdict" not in d["ratios"]["host_startup_typer_pypi"]
    )
    text = run.render(d)
    row = next(line for line in text.splitlines() if "'import typer'`'s, Debian 12" in line)
    assert "| 52.0 ms CPU | 42.0 ms CPU | **1.24x** (1.18-1.30) | <= 1.25x | borderline |" in row
    args = type("Args", (), {"host_runs": 5, "out": tmp_path})()
    assert run.startup_report(blocks, args) == 0
    table = (tmp_path / "startup.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Debian 12 packages"))
    assert "| 52.0 ms CPU | 42.0 ms CPU | 1000.0 ms CPU | **1.24x** (1.18-1.30) | <= 1.25x | borderline |" in row
    assert json.loads((tmp_path / "startup.json").read_text())["ratios"]["host_startup_typer_pypi"]["median"] == 1.5
