"""Telemetry against the real module: the exact batch of a sample (one submit each, and
the rdmsr's the kernel really issued), the 'absent, with reason' path under QEMU TCG
(which implements none of the power, thermal or frequency MSRs), and `msrctl record`
as root and as a group member with and without the telemetry allowlist."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MEMBER, REPO, TRACEFS, Device, MsrTrace, results_dir

from msrctl.admin import allowlist
from msrctl.telemetry import catalog, cpu, msrs, probe, topology
from msrctl.telemetry.msrs import APERF, MPERF, PKG_ENERGY, THERM_STATUS
from msrctl.telemetry.plan import Context, Plan, Reader
from msrctl.telemetry.sampler import Sampler

NOT_HERE = ("flag in /proc/cpuinfo)", "reads 0: not implemented here", "faults: not implemented", "AMD ", "Intel RAPL")


def msrctl(*args: str, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "msrctl", *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def no_list(dev: Device) -> Iterator[Device]:
    allowlist.clear(dev.fd)
    yield dev
    allowlist.clear(dev.fd)


class Counting:
    """The real Device, with each submitted batch's ops noted: one entry per ioctl."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.batches: list[list[tuple[int, int, int]]] = []

    def submit(self, batch: Any) -> int:
        self.batches.append([(batch._ops[i].op, batch._ops[i].cpu, batch._ops[i].msr) for i in range(len(batch))])
        return self.dev.submit(batch)


def traced_reads() -> list[tuple[int, int]]:
    """(cpu, msr) of every read_msr event in the trace buffer, in order."""
    out = []
    for line in (TRACEFS / "trace").read_text().splitlines():
        m = re.search(r"\[(\d+)\].*read_msr: ([0-9a-f]+), value", line)
        if m:
            out.append((int(m.group(1)), int(m.group(2), 16)))
    return out


def test_one_exact_batch_per_sample(dev: Device, cpus: list[int]) -> None:
    """Per-CPU registers on every CPU, per-core once per core, per-package once per package,
    RDTSC per CPU: that batch, and only it, goes to the module once per sample."""
    from msrctl.device import abi

    topo = topology.read()
    assert topo.numbers == cpus
    plan = Plan(topo, [MPERF, APERF, THERM_STATUS, PKG_ENERGY], Context("test", {}))
    cores, packages = topo.cores(), topo.packages()
    expected = []
    for c in topo.cpus:
        expected += [(abi.OP_RDTSC, c.cpu, 0), (abi.OP_READ, c.cpu, 0xE7), (abi.OP_READ, c.cpu, 0xE8)]
        if c in cores:
            expected.append((abi.OP_READ, c.cpu, 0x19C))
        if c in packages:
            expected.append((abi.OP_READ, c.cpu, 0x611))
    counting = Counting(dev)
    take = Reader(counting, plan)
    assert counting.batches == []  # building the batch submits nothing
    with MsrTrace([0xE7, 0xE8, 0x19C, 0x611]):
        ticks = []
        for tick in Sampler(take, 20_000_000):
            ticks.append(tick)
            if len(ticks) == 5:
                break
        reads = traced_reads()
    assert len(counting.batches) == 5 and all(b == expected for b in counting.batches)
    # what the kernel really did: the same reads on the same CPUs, five times over
    wanted = sorted((cpu_, msr) for op, cpu_, msr in expected if op == abi.OP_READ)
    assert sorted(reads) == sorted(wanted * 5), reads
    for a, b in zip(ticks, ticks[1:]):
        raw_a, raw_b = a.value, b.value
        assert raw_a.t_submit_ns <= raw_a.t_ns <= raw_a.t_done_ns < raw_b.t_submit_ns
        assert len(raw_b.values) == len(plan) and not any(raw_b.errs)
        for c in topo.cpus:
            i = plan.index(c.cpu, msrs.TSC.msr)
            assert i is not None and raw_b.values[i] > raw_a.values[i]  # each CPU's own TSC moves on


def test_under_qemu_every_metric_is_absent_with_its_reason(dev: Device) -> None:
    info, topo = cpu.read(), topology.read()
    found = probe.run(dev, info, topo)
    (results_dir() / "telemetry-probe.json").write_text(
        json.dumps({"cpu": info.describe(), "flags": sorted(info.flags), "absent": found.absent()}, indent=1)
    )
    assert info.has("hypervisor")
    m = found.context.metrics
    assert [name for name, why in m.items() if why is None] == [], m  # QEMU TCG implements none of them
    for name, why in m.items():
        assert why is not None and any(s in why for s in NOT_HERE), (name, why)
    assert found.sampled == () and found.context.base_mhz is None
    # the sample is then just the TSC of each CPU: nothing is read that would give a made-up 0
    plan = Plan(topo, found.sampled, found.context)
    assert [(op.cpu, op.rdtsc) for op in plan.ops] == [(c, True) for c in topo.numbers]
    if not info.has("aperfmperf"):
        assert m["busy_pct"] == "the CPU lacks APERF/MPERF (no 'aperfmperf' flag in /proc/cpuinfo)"
    # registers QEMU does not implement read 0 without a fault: that is the 'reads 0' verdict
    got = dev.read(APERF.msr, [0])[0]
    assert (got.err, got.value) == (0, 0)
    assert probe.read_reason(APERF, got.value, got.err, True) == f"IA32_APERF (0xe8) {probe.ZERO_WHY}"


# What if this were an Intel CPU with APERF/MPERF and thermal sensors: the probe then reads
# Intel's registers through the real module, and QEMU answers 0 for each.
WHAT_IF_INTEL = cpu.CpuInfo("GenuineIntel", 6, 0x8C, "what-if", frozenset({"aperfmperf", "dts", "pts", "hypervisor"}))

PROBE_AS_MEMBER = """
import json
from msrctl.device.msrdrv import Device
from msrctl.telemetry import cpu, probe, topology
info = cpu.CpuInfo("GenuineIntel", 6, 0x8C, "what-if", frozenset({"aperfmperf", "dts", "pts", "hypervisor"}))
with Device(write=False) as dev:
    print(json.dumps(probe.run(dev, info, topology.read()).context.metrics))
"""


def test_probe_batch_and_its_reads_0_verdicts(dev: Device) -> None:
    from msrctl.device import abi

    topo = topology.read()
    counting = Counting(dev)  # a backend without INFO: the probe does without it
    found = probe.run(counting, WHAT_IF_INTEL, topo)
    reads = probe.probe_reads(WHAT_IF_INTEL, topo)
    assert counting.batches == [[(abi.OP_READ, c, m) for c, m in reads]]  # one probe batch
    assert {m for _, m in reads} >= {0xE7, 0xE8, 0x19C, 0x1B1, 0x611, 0x606, 0x1A2, 0xCE}
    for msr, why in found.registers.items():
        assert why == f"{msrs.BY_NUMBER[msr].label()} {probe.ZERO_WHY}", why
    m = found.context.metrics
    assert all(why is not None for why in m.values()) and found.sampled == ()
    assert m["busy_pct"] == f"IA32_MPERF (0xe7) {probe.ZERO_WHY}"
    assert m["pkg_power_w"] == f"MSR_PKG_ENERGY_STATUS (0x611) {probe.ZERO_WHY}"


def test_member_probe_names_the_energy_profile(no_list: Device) -> None:
    from conftest import member_py

    assert msrctl("allowlist", "load", "--profile", "telemetry").returncode == 0
    m = json.loads(member_py(PROBE_AS_MEMBER))
    assert m["pkg_energy_j"] == (
        "MSR_PKG_ENERGY_STATUS (0x611) is not in the msrdrv allowlist; RAPL energy is a side channel, granted by "
        "the energy profile: sudo msrctl allowlist load --profile telemetry --profile energy"
    )
    assert m["busy_pct"] == f"IA32_MPERF (0xe7) {probe.ZERO_WHY}"  # listed: read, and QEMU's 0 is seen
    assert msrctl("allowlist", "load", "--profile", "telemetry", "--profile", "energy").returncode == 0
    m = json.loads(member_py(PROBE_AS_MEMBER))
    assert m["pkg_energy_j"] == f"MSR_PKG_ENERGY_STATUS (0x611) {probe.ZERO_WHY}"


def _csv(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def _per_sample() -> int:
    topo = topology.read()
    return len(topo.cpus) + len(topo.cores()) + len(topo.packages())


def _no_metric_cells(rows: list[dict[str, str]]) -> bool:
    return all(r.get(m.name, "") == "" for r in rows for m in catalog.METRICS)


def test_record_csv_n_samples(dev: Device) -> None:
    r = msrctl("record", "-i", "50ms", "-n", "5")
    assert r.returncode == 0, r.stderr
    rows = _csv(r.stdout)
    # QEMU implements none of the metrics' registers: only the ids are columns (as turbostat
    # shows only the counters it found), and every metric is named on stderr with its reason
    assert r.stdout.splitlines()[0] == "time_s,sample,dt_s,scope,package,core,cpu,tsc"
    assert len(rows) == 5 * _per_sample()
    times = [float(row["time_s"]) for row in rows]
    samples = [int(row["sample"]) for row in rows]
    assert times == sorted(times) and len(set(times)) == 5 and times[0] > 0
    assert samples == sorted(samples) and len(set(samples)) == 5
    err = r.stderr.splitlines()
    assert all(line.startswith("msrctl: record: ") for line in err), r.stderr
    absent = [line for line in err if "absent (not recorded; --all-columns keeps them, empty): " in line]
    named = {n for line in absent for n in line.split(": ")[3].split(", ")}
    assert named == {m.name for m in catalog.METRICS}, absent  # each one, with its reason
    assert any("busy_pct" in line and "APERF/MPERF" in line for line in absent), absent
    missed = len(range(samples[0], samples[-1] + 1)) - 5
    summary = next(line for line in err if " samples in " in line)
    assert re.search(rf"record: 5 samples in [0-9.]+ s \(interval 50 ms\); .* {missed} missed intervals?$", summary)
    assert "msrctl: record: package 0: energy absent (see the notes above)" in err
    # --all-columns: the same columns on every machine, the absent ones empty, never a made-up 0
    r = msrctl("record", "-i", "50ms", "-n", "2", "--all-columns")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("time_s,sample,dt_s,scope,package,core,cpu,tsc,mhz_effective,mhz_busy,busy_pct,")
    assert _no_metric_cells(_csv(r.stdout))
    assert any("absent (empty cells): " in line and "busy_pct" in line for line in r.stderr.splitlines())


def test_record_jsonl_to_a_file(dev: Device, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    r = msrctl("record", "-i", "50ms", "-n", "4", "--format", "jsonl", "-o", str(out))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    objs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(objs) == 4
    t = [o["t_monotonic_ns"] for o in objs]
    assert t == sorted(t) and len(set(t)) == 4
    topo = topology.read()
    for o in objs:
        assert [c["cpu"] for c in o["cpus"]] == topo.numbers and len(o["packages"]) == len(topo.packages())
        assert all("busy_pct" not in c and c["tsc"] > 0 for c in o["cpus"])  # absent: not written, never 0
        assert o["dt_s"] > 0 and o["final"] is False


def test_record_while_a_command_runs(dev: Device, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    r = msrctl("record", "-i", "50ms", "--format", "jsonl", "-o", str(out), "--", "sleep", "0.3")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in out.read_text().splitlines()]
    n = int(re.search(r"record: (\d+) samples? in", r.stderr).group(1))  # type: ignore[union-attr]
    assert len(objs) == n and n >= 4  # 0.3 s at 50 ms, whatever the TCG start-up costs
    # the command's exit ended sampling (a partial last interval is marked final)
    assert not any(o["final"] for o in objs[:-1]) and sum(o["dt_s"] for o in objs) >= 0.3
    r = msrctl("record", "-i", "50ms", "-o", str(out), "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr
    r = msrctl("record", "-i", "50ms", "--", "no-such-command-here")
    assert r.returncode == 64 and "msrctl: error: cannot run 'no-such-command-here'" in r.stderr


def test_record_stops_cleanly_on_sigint(dev: Device) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "msrctl", "record", "-i", "50ms"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert p.stdout is not None
    assert p.stdout.readline().startswith("time_s,")  # sampling runs: the first sample is out
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "Traceback" not in err and re.search(r"record: \d+ samples? in", err), err
    rows = len(out.splitlines())  # the header was read above
    assert rows % _per_sample() == 0 and rows > 0


def test_member_without_an_allowlist_gets_the_permission_error(no_list: Device) -> None:
    r = msrctl("record", "-n", "1", user=MEMBER)
    assert r.returncode == 3, r.stderr
    assert r.stderr == (
        "msrctl: error: cannot read telemetry registers: no msrdrv allowlist is loaded, so members of group msr "
        "may read no MSR; ask an admin to run: sudo msrctl allowlist load --profile telemetry\n"
    )
    assert r.stdout == ""


def test_member_records_with_the_telemetry_profile(no_list: Device) -> None:
    assert msrctl("allowlist", "load", "--profile", "telemetry").returncode == 0
    listed = {e.msr for e in allowlist.current(no_list.fd)}
    # every non-energy register record reads is in the profile; energy is the energy profile's
    wanted = {r.msr for r in msrs.ALL if r.msr != msrs.TSC.msr} - msrs.ENERGY_COUNTERS
    assert wanted <= listed, sorted(hex(m) for m in wanted - listed)
    assert not msrs.ENERGY_COUNTERS & listed
    r = msrctl("record", "-i", "50ms", "-n", "3", user=MEMBER)
    assert r.returncode == 0, r.stderr
    rows = _csv(r.stdout)
    assert len(rows) == 3 * _per_sample() and _no_metric_cells(rows)
