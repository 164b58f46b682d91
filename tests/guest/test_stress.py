"""Hardening: a fuzzer from root and from a group member, and concurrent
batches across all CPUs while CPU 1 goes offline and online."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MEMBER, Batch, Device, online_cpus, results_dir

from msrctl.admin import allowlist
from msrctl.admin.allowlist import Entry

TSC_AUX = 0xC0000103
# MSRs whose change would show a privilege leak (or wreck the guest); none
# of them changes by itself while the system runs.
WATCHED = [0x1B, 0x174, 0x175, 0x176, 0x1A0, 0x277, 0x6E1, 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000083,
           0xC0000084, TSC_AUX]  # fmt: skip
FUZZ_SEED = int(os.environ.get("MSRDRV_FUZZ_SEED", "0x5eed"), 0)


def snapshot(dev: Device) -> dict[tuple[int, int], tuple[int, int]]:
    cpus = online_cpus()
    b = Batch(len(cpus) * len(WATCHED))
    keys = [(c, m) for c in cpus for m in WATCHED]
    for c, m in keys:
        b.read(m, c)
    dev.submit(b)
    return {k: (b.err(i), b.value(i)) for i, k in enumerate(keys)}


def restore_tsc_aux(dev: Device, snap: dict[tuple[int, int], tuple[int, int]]) -> None:
    b = Batch(len(snap))
    for (c, m), (_, v) in snap.items():
        if m == TSC_AUX:
            b.write(m, v, c)
    dev.submit(b)
    b.check()


def parse_fuzz(out: str) -> dict[str, int]:
    counts = {}
    for line in out.splitlines():
        k, v = line.split()
        counts[k if k == "total" else os.strerror(int(k)) if k != "0" else "ok"] = int(v)
    return counts


@pytest.fixture
def guarded(dev: Device) -> Iterator[tuple[Device, dict[tuple[int, int], tuple[int, int]]]]:
    snap = snapshot(dev)
    allowlist.clear(dev.fd)
    yield dev, snap
    allowlist.clear(dev.fd)
    restore_tsc_aux(dev, snap)


def test_fuzz_root_and_group_member(guarded: Any, cprog: Any) -> None:
    dev, snap = guarded
    fuzz = cprog("fuzz")
    report = []
    start = time.monotonic()

    r = subprocess.run([str(fuzz), "50000", str(FUZZ_SEED), "root"], capture_output=True, text=True, check=True)
    report.append(("root", parse_fuzz(r.stdout)))
    restore_tsc_aux(dev, snap)
    allowlist.clear(dev.fd)  # the root run may have loaded a random list
    before = snapshot(dev)

    user = MEMBER
    r = subprocess.run([*user, str(fuzz), "30000", str(FUZZ_SEED + 1), "user"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report.append(("msr group, no allowlist", parse_fuzz(r.stdout)))
    allowlist.load(dev.fd, [Entry(0x10, 0), Entry(TSC_AUX, 0)])  # TSC_AUX readable, not writable
    r = subprocess.run([*user, str(fuzz), "30000", str(FUZZ_SEED + 2), "user"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report.append(("msr group, allowlist", parse_fuzz(r.stdout)))

    # the unprivileged runs changed no MSR at all
    assert snapshot(dev) == before
    total = sum(c["total"] for _, c in report)
    assert total >= 100_000
    for who, counts in report:
        assert counts.get("ok", 0) > 0 and len(counts) > 3, (who, counts)  # it reached the core and the error paths
    lines = [f"fuzz seed {FUZZ_SEED:#x}: {total} ioctls in {time.monotonic() - start:.1f} s"]
    lines += [f"  {who}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for who, c in report]
    (results_dir() / "fuzz.txt").write_text("\n".join(lines) + "\n")


def test_concurrent_batches_with_cpu_hotplug(dev: Device, cprog: Any) -> None:
    cpus = online_cpus()
    assert len(cpus) >= 2
    stress = cprog("stress")
    start = time.monotonic()
    r = subprocess.run([str(stress), "8", "10000", str(len(cpus))], capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    f = r.stdout.split()
    stats = dict(zip(f[::2], map(int, f[1::2])))
    assert stats["batches"] == 80_000 and stats["wrong"] == 0
    assert stats["ok"] + stats["enxio"] == stats["ops"] == 80_000 * 2 * len(cpus)
    assert stats["toggles"] >= 2 and stats["enxio"] > 0  # CPU 1 really went away meanwhile
    assert Path("/sys/devices/system/cpu/cpu1/online").read_text().strip() == "1"
    (results_dir() / "stress.txt").write_text(f"{r.stdout.strip()} seconds {elapsed:.1f}\n")
