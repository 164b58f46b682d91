"""Interval parsing, the CSV and JSON Lines forms of a sample, the summary, and
`msrctl record`'s usage errors (no device needed for those)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msrctl import errors
from msrctl.errors import UsageError
from msrctl.telemetry import catalog, formats
from msrctl.telemetry.derive import Sample
from msrctl.telemetry.interval import format_interval, parse_interval
from msrctl.telemetry.plan import PlanOp
from msrctl.telemetry.sampler import Stats
from msrctl.telemetry.totals import Totals

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("100ms", 100_000_000),
        ("1s", 1_000_000_000),
        ("0.5s", 500_000_000),
        ("2m", 120_000_000_000),
        ("2", 2_000_000_000),
        (".25s", 250_000_000),
        ("0.1s", 100_000_000),  # exactly, not a float's neighbour
        ("1500us", 1_500_000),
        (" 10 ms ", 10_000_000),
    ],
)
def test_parse_interval(text: str, ns: int) -> None:
    assert parse_interval(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10q", "malformed interval '10q': expected a number and a unit; write it like 100ms"),
        ("", "malformed interval ''"),
        ("-1s", "malformed interval '-1s'"),
        ("1e3ms", "malformed interval '1e3ms'"),
        ("500us", "interval '500us' is too short: the shortest is 1ms"),
        ("2h", "interval '2h' is too long: the longest is 1h"),
    ],
)
def test_bad_intervals(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_interval(text)
    assert e.value.message.startswith(message) and e.value.code == errors.USAGE


def test_format_interval() -> None:
    assert format_interval(100_000_000) == "100 ms"
    assert format_interval(1_500_000_000) == "1.5 s"


def _sample() -> Sample:
    cpu = dict.fromkeys(m.name for m in catalog.METRICS if m.scope == "cpu")
    core = dict.fromkeys(m.name for m in catalog.METRICS if m.scope == "core")
    pkg = dict.fromkeys(m.name for m in catalog.METRICS if m.scope == "package")
    return Sample(
        t_ns=3_250_000_000,
        dt_s=0.1,
        cpus=(
            {"package": 0, "core": 0, "cpu": 0, "tsc": 99, **cpu, "mhz_effective": 1800.04, "busy_pct": 50.0},
            {"package": 0, "core": 1, "cpu": 1, "tsc": 98, **cpu},
        ),
        cores=({"package": 0, "core": 0, "tsc": 99, **core, "core_temp_c": 58, "core_throttle": ()},),
        packages=(
            {
                "package": 0,
                "tsc": 99,
                **pkg,
                "pkg_energy_j": 1.0,
                "pkg_power_w": 10.0,
                "limit_reasons": ("pl1", "pl2"),
            },
        ),
        failed=(),
    )


def test_csv_header_names_units() -> None:
    header = formats.csv_header().strip().split(",")
    assert header[:11] == [
        "time_s", "sample", "dt_s", "scope", "package", "core", "cpu", "tsc", "mhz_effective", "mhz_busy", "busy_pct",
    ]  # fmt: skip
    units = ("_s", "_mhz", "mhz_effective", "mhz_busy", "_pct", "_c", "_j", "_w")
    flags = {"core_throttle", "core_throttle_log", "pkg_throttle", "pkg_throttle_log", "limit_reasons", "limit_log"}
    for name in header[8:]:
        assert name.endswith(units) or name in units or name in flags, name
    assert len(header) == len(set(header))


def test_csv_rows_one_per_cpu_core_and_package() -> None:
    text = formats.csv_rows(_sample(), 7, t0_ns=3_000_000_000)
    rows = [line.split(",") for line in text.splitlines()]
    cols = formats.COLUMNS
    assert len(rows) == 4 and all(len(r) == len(cols) for r in rows)
    get = [dict(zip(cols, r)) for r in rows]
    assert [r["scope"] for r in get] == ["cpu", "cpu", "core", "package"]
    assert get[0]["time_s"] == "0.250000" and get[0]["sample"] == "7" and get[0]["dt_s"] == "0.100000"
    assert get[0]["mhz_effective"] == "1800.0" and get[0]["busy_pct"] == "50.00"
    assert get[0]["mhz_busy"] == "" and get[1]["mhz_effective"] == ""  # absent: empty, never 0
    assert get[2]["cpu"] == "" and get[2]["core_temp_c"] == "58" and get[2]["core_throttle"] == "none"
    assert get[2]["mhz_effective"] == ""  # not this row's scope
    assert get[3]["pkg_energy_j"] == "1.000000" and get[3]["pkg_power_w"] == "10.000"
    assert get[3]["limit_reasons"] == "pl1+pl2" and get[3]["core"] == "" and get[3]["dram_energy_j"] == ""


def test_jsonl_one_object_per_sample() -> None:
    line = formats.jsonl(_sample(), 7, 3_000_000_000, late_ns=12_345_678, missed=2)
    assert line.endswith("\n") and line.count("\n") == 1
    obj = json.loads(line)
    assert obj["sample"] == 7 and obj["time_s"] == 0.25 and obj["t_monotonic_ns"] == 3_250_000_000
    assert obj["late_ms"] == 12.346 and obj["missed"] == 2 and obj["final"] is False
    assert [c["cpu"] for c in obj["cpus"]] == [0, 1]
    assert obj["cpus"][0]["mhz_effective"] == 1800.0 and obj["cpus"][1]["mhz_effective"] is None
    assert obj["cores"][0]["core_temp_c"] == 58 and obj["cores"][0]["core_throttle"] == []
    assert obj["packages"][0]["limit_reasons"] == ["pl1", "pl2"] and obj["packages"][0]["psys_energy_j"] is None


def test_summary_counts_and_energy() -> None:
    totals = Totals()
    s = _sample()
    totals.add(s)
    totals.add(Sample(s.t_ns, 0.1, s.cpus, s.cores, s.packages, ((PlanOp(1, 0x611), 13),)))
    lines = formats.summary_lines(totals, Stats(3, 1, 2, 25_000_000), [0], 100_000_000)
    assert lines[0] == ("2 samples in 0.200 s (interval 100 ms); 1 late sample (max 25.0 ms late), 2 missed intervals")
    assert lines[1] == "package 0: pkg 2.000 J, 10.00 W average"
    assert lines[2] == (
        "1 sample had failed ops (their cells are empty); the first: MSR 0x611 on CPU 1: Permission denied"
    )
    empty = formats.summary_lines(Totals(), Stats(), [0, 1], 1_000_000_000)
    assert empty[1:] == [
        "package 0: energy absent (see the notes above)",
        "package 1: energy absent (see the notes above)",
    ]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        PYTHONPATH=str(ROOT), MSRCTL_DEVICE=str(tmp_path / "root/dev/msrdrv"), MSRCTL_SYSROOT=str(tmp_path / "root")
    )
    e.pop("MSRCTL_DEBUG", None)
    (tmp_path / "root/proc").mkdir(parents=True)
    (tmp_path / "root/proc/modules").write_text("")
    return e


def msrctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msrctl", *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-i", "10q", "-n", "1"], errors.USAGE, "malformed interval '10q': expected a number and a unit"),
        (["-n", "2", "--", "true"], errors.USAGE, "-n and COMMAND conflict"),
        (["-p", "4096"], errors.NO_CPU, "CPU 4096"),
        (["-n", "1"], errors.NOT_LOADED, "msrdrv module not loaded"),
        (["--format", "xml"], errors.USAGE, "unknown format 'xml': it is csv or jsonl"),
    ],
)
def test_record_usage_errors_are_one_line(env: dict[str, str], args: list[str], code: int, message: str) -> None:
    res = msrctl(env, "record", *args)
    assert res.returncode == code, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("msrctl: error: ") and message in lines[0], res.stderr
    assert res.stdout == ""
