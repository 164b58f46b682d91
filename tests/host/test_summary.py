"""The closing line of `make test` (tests/summary.py): a stage without results is a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def junit(path: Path, tests: int, failures: int = 0) -> Path:
    path.write_text(
        f'<testsuites><testsuite tests="{tests}" failures="{failures}" errors="0" skipped="0"/></testsuites>'
    )
    return path


def summary(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "summary.py"), *map(str, paths)], capture_output=True, text=True
    )


def test_all_stages_with_results(tmp_path: Path) -> None:
    res = summary(junit(tmp_path / "a.xml", 3), junit(tmp_path / "b.xml", 2))
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "all: 5 passed, 0 failed, 0 skipped"


def test_a_stage_that_timed_out_or_never_ran_fails_the_closing_line(tmp_path: Path) -> None:
    """What happened once: deb.xml held no cases after the guest hit its limit, and the
    line still read '558 passed, 0 failed'."""
    empty = junit(tmp_path / "deb.xml", 0)
    res = summary(junit(tmp_path / "host.xml", 5), empty, tmp_path / "missing.xml")
    assert res.returncode == 1
    assert res.stdout.splitlines()[-1] == "all: 5 passed, 2 failed, 0 skipped (2 stages without results)"
    assert f"{empty}: no results" in res.stdout
