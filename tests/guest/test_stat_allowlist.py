"""`msrctl allowlist` and `msrctl stat` / the region API against the real module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MEMBER, REPO, Device, batch_as, cpu_driver_in, read_msrs

from msrctl.admin import allowlist
from msrctl.perf import events, region
from msrctl.perf.pmu import Pmu


def msrctl(*args: str, user: list[str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "msrctl", *args],
        input=stdin, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


@pytest.fixture
def no_list(dev: Device) -> Iterator[Device]:
    allowlist.clear(dev.fd)
    yield dev
    allowlist.clear(dev.fd)


def test_allowlist_cli_load_show_enforce_clear(no_list: Device, tmp_path: Path) -> None:
    r = msrctl("allowlist", "load", "telemetry")
    n = len(allowlist.current(no_list.fd))
    assert n >= 8 and r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"allowlist loaded: {n} entries from profile telemetry"), r.stdout
    shown = msrctl("allowlist", "show")
    assert "0x00000010 0x0000000000000000  # IA32_TIME_STAMP_COUNTER" in shown.stdout
    assert allowlist.parse(shown.stdout) == allowlist.current(no_list.fd)  # show prints what load takes
    # a group member may now read the TSC but not IA32_APIC_BASE
    assert msrctl("read", "tsc", user=MEMBER).returncode == 0
    denied = msrctl("read", "apic_base", user=MEMBER)
    assert denied.returncode == 3 and denied.stderr.count("\n") == 1, denied.stderr
    assert "allowlist" in denied.stderr and "Traceback" not in denied.stderr
    # only root may change it
    r = msrctl("allowlist", "clear", user=MEMBER)
    assert r.returncode == 3
    assert r.stderr == "msrctl: error: loading the allowlist: it needs CAP_SYS_ADMIN; run it as root (sudo)\n"
    # a typo names its line, and the list in force stays
    bad = tmp_path / "site.list"
    bad.write_text("0x10 0x0\nIA32_APIC_BAS 0x0\n")
    r = msrctl("allowlist", "load", str(bad))
    assert r.returncode == 64
    assert r.stderr.startswith(f"msrctl: error: {bad}:2: unknown register 'IA32_APIC_BAS'"), r.stderr
    assert len(allowlist.current(no_list.fd)) == n
    assert msrctl("allowlist", "clear").stdout == "allowlist cleared\n"
    assert json.loads(msrctl("allowlist", "show", "--json").stdout) == []


def test_loaded_list_from_stdin_masks_writes(no_list: Device) -> None:
    r = msrctl("allowlist", "load", "-", stdin="IA32_PKRS 0xff00  # high byte only\n")
    assert r.returncode == 0, r.stderr
    out = batch_as("msruser", [("read", 0x6E1, 0, 0)])
    old = out["values"][0]
    out = batch_as("msruser", [("write", 0x6E1, 0xABCD, 0), ("read", 0x6E1, 0, 0)])
    assert out["errs"] == ["OK", "OK"] and out["values"][1] == (old & ~0xFF00) | 0xAB00
    batch_as("root", [("write", 0x6E1, old, 0)])


# --- performance counting ------------------------------------------------------


def test_stat_says_clearly_that_there_is_no_pmu(dev: Device) -> None:
    r = msrctl("stat", "-e", "cycles,instructions", "--", "true")
    assert r.returncode == 7, r.stderr
    assert r.stderr.startswith("msrctl: error: cannot count events: ") and r.stderr.count("\n") == 1
    assert "virtual" in r.stderr and "Traceback" not in r.stderr
    rep = json.loads(msrctl("status", "--json").stdout)
    assert rep["pmu"]["present"] is False and rep["pmu"]["reason"]
    with pytest.raises(region.PmuError):
        region.Region(dev, events.parse("cycles", "intel"), cpu=0)  # detection itself refuses


def test_stat_on_a_cpu_that_does_not_exist_is_exit_2() -> None:
    r = msrctl("stat", "-p", "99", "--", "true")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("msrctl: error: no such CPU 99: it is absent or offline (online: 0-")


def test_pmu_detection_believes_the_kernel_not_cpuid_alone() -> None:
    """With the cpuid driver loaded, root reads CPUID: this TCG CPU may still list
    counters there (AMD's K7 four are implied), but the kernel registered no core PMU."""
    cpu_driver_in("cpuid")
    assert Path("/dev/cpu/0/cpuid").exists()
    assert not Path("/sys/bus/event_source/devices/cpu").exists()
    rep = json.loads(msrctl("status", "--json").stdout)["pmu"]
    assert rep["present"] is False and rep["source"] == "cpuid" and rep["gp_counters"] == 0
    r = msrctl("stat", "-e", "cycles", "--", "true")
    assert r.returncode == 7 and "Traceback" not in r.stderr
    assert "virtual PMU" in r.stderr and "QEMU" not in r.stderr


INTEL_V4 = Pmu("intel", True, "test", 4, 4, 48, 3, 48)


@pytest.mark.parametrize("cpu", [0, 1])
def test_region_runs_its_planned_batches_and_restores(dev: Device, cpu: int) -> None:
    """The exact ops go to the module in one batch per end, every op succeeds,
    and each touched register ends as it began.  (QEMU TCG keeps no PMU
    state, so the counts are 0; the programming is what is checked.)"""
    evs = events.parse("cycles,instructions,llc-misses,branches", "intel")
    r = region.Region(dev, evs, cpu=cpu, pmu=INTEL_V4, calibrate=2)
    touched = r.touched()
    before = read_msrs(dev, touched, cpu)
    with r:
        sum(range(1000))
    for plan, batch in ((r.start_plan, r._start), (r.stop_plan, r._stop)):
        assert len(batch) == len(plan) and batch.done == len(plan)
        for i, p in enumerate(plan):
            res = batch.result(i)
            assert (res.op, res.cpu, res.err) == (p.op, cpu, 0), (i, p, res)
            if p.op != "rdtsc":
                assert res.msr == p.msr
    programmed = {p.msr: p.value for p in r.start_plan if p.op == "write" and p.mask is None and p.value}
    assert programmed == {0x186: 0x0041412E, 0x187: 0x004100C4}
    assert r.tsc > 0
    assert read_msrs(dev, touched, cpu) == before
    assert set(r.counts) == {"cycles", "instructions", "llc-misses", "branches"}
