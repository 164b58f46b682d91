"""tests/debug/shards.py: how make test-debug splits the guest files among its guests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/debug"))
import shards  # noqa: E402

GUEST_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests/guest").glob("test_*.py"))


def test_every_file_runs_exactly_once() -> None:
    plan = shards.plan(GUEST_FILES, 2)
    assert len(plan) == 2
    flat = [f for s in plan for f in s]
    assert sorted(flat) == GUEST_FILES


def test_every_guest_file_has_a_measured_time() -> None:
    # A new file falls back to DEFAULT; this keeps the table up to date.
    missing = [f for f in GUEST_FILES if Path(f).name not in shards.SECONDS]
    assert not missing, f"add their debug-kernel times to tests/debug/shards.py: {missing}"


def test_shards_are_balanced() -> None:
    plan = shards.plan(GUEST_FILES, 2)
    loads = [sum(shards.SECONDS[Path(f).name] for f in s) for s in plan]
    biggest = max(shards.SECONDS[Path(f).name] for f in GUEST_FILES)
    # Greedy longest-first: the two differ by at most the longest file.
    assert abs(loads[0] - loads[1]) <= biggest


def test_lockdown_stays_last_in_its_guest() -> None:
    for n in (1, 2, 3):
        for s in shards.plan(GUEST_FILES, n):
            names = [Path(f).name for f in s]
            if "test_zz_lockdown.py" in names:
                assert names[-1] == "test_zz_lockdown.py"


def test_unknown_file_and_more_shards_than_files() -> None:
    plan = shards.plan(["tests/guest/test_new.py", "tests/guest/test_cli.py"], 4)
    assert sorted(f for s in plan for f in s) == ["tests/guest/test_cli.py", "tests/guest/test_new.py"]
    assert all(plan), "no empty shard boots a guest"


def test_command_line() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests/debug/shards.py"), "2", *GUEST_FILES],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2 and sorted(" ".join(out).split()) == GUEST_FILES
    bad = subprocess.run(
        [sys.executable, str(ROOT / "tests/debug/shards.py"), "x"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "usage" in bad.stderr
