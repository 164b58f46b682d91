"""AMD temperature from the kernel's k10temp driver (no MSR holds it), on a fake sysfs laid out
as the driver lays it out: one hwmon device per data-fabric node (PCI 00:18.3, 00:19.3...),
temp1 labelled Tctl and, on Threadripper parts with an offset, temp2 labelled Tdie.

These are host tests of the mapping and the plumbing: no machine here has k10temp (the guest's
QEMU CPU is AMD family 0Fh, which the driver does not take), so the guest tests only see the
'no k10temp device' reason.  Also here: record's and top's choice of columns (only those
the machine has, unless all are asked for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakecpu import AMD_STATIC, SMALL, TWO_PACKAGES, ZEN3, hwmon_device, write_sysfs

from msrctl.telemetry import catalog, cpu, formats, hwmon, probe, topology
from msrctl.telemetry.derive import derive
from msrctl.telemetry.plan import Plan, Reader


@pytest.fixture
def two_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_sysfs(tmp_path, TWO_PACKAGES, monkeypatch)


def test_no_device_names_the_driver_to_load(two_packages: Path) -> None:
    assert hwmon.k10temp([0, 1]) == ({}, hwmon.NO_DEVICE)
    assert "sudo modprobe k10temp" in hwmon.NO_DEVICE


def test_each_package_gets_its_own_node_in_pci_order_tdie_before_tctl(two_packages: Path) -> None:
    # hwmon numbers follow probe order, not the nodes': hwmon5 is node 18h (package 0)
    hwmon_device(two_packages, 7, "0000:00:19.3", {1: ("Tctl", 61_250), 3: ("Tccd1", 58_000)})
    hwmon_device(two_packages, 5, "0000:00:18.3", {1: ("Tctl", 74_000), 2: ("Tdie", 47_000)})
    found, why = hwmon.k10temp([0, 1])
    assert why is None
    assert found[0].what == "k10temp Tdie (hwmon5, node 0000:00:18.3)"  # Tctl carries a 27 C offset there
    assert found[1].what == "k10temp Tctl (hwmon7, node 0000:00:19.3)"
    assert [hwmon.read_celsius(found[p].path) for p in (0, 1)] == [47.0, 61.25]
    assert hwmon.k10temp([1])[0].keys() == {1}  # sampling one package still maps by the machine's order


def test_zen1_epyc_four_nodes_per_package_takes_the_first(two_packages: Path) -> None:
    for i in range(8):
        hwmon_device(two_packages, i, f"0000:00:{0x18 + i:02x}.3", {1: ("Tctl", 40_000 + i * 1000)})
    found, why = hwmon.k10temp([0, 1])
    assert why is None
    assert found[1].what == "k10temp Tctl (hwmon4, node 0000:00:1c.3, the first of its 4 nodes)"
    assert hwmon.read_celsius(found[1].path) == 44.0


def test_a_count_that_does_not_divide_is_refused_not_guessed(two_packages: Path) -> None:
    for i in range(3):
        hwmon_device(two_packages, i, f"0000:00:{0x18 + i:02x}.3", {1: ("Tctl", 40_000)})
    assert hwmon.k10temp([0, 1]) == (
        {},
        "cannot tell which package each of the 3 k10temp devices belongs to (2 packages)",
    )


def _plan(info: cpu.CpuInfo) -> tuple[Plan, probe.Probe]:
    topo = topology.read()
    reads = probe.probe_reads(info, topo)
    found = probe.evaluate(
        info, topo, {r: (AMD_STATIC.get(r[1], 123_456_789), 0) for r in reads}, sensors=probe.find_sensors(info, topo)
    )
    return Plan(topo, found.sampled, found.context), found


class FakeDevice:
    """Counters that advance by 1000 per read; enough for derive to run."""

    backend = "msrdrv"

    def __init__(self) -> None:
        self.n = 0

    def submit(self, batch: Any) -> int:
        self.n += 1
        for i in range(len(batch)):
            batch._ops[i].value = self.n * 1000
        batch._hdr.ndone = len(batch)
        return 0


def test_amd_package_temperature_end_to_end(two_packages: Path) -> None:
    d0 = hwmon_device(two_packages, 1, "0000:00:18.3", {1: ("Tctl", 55_125)})
    hwmon_device(two_packages, 2, "0000:00:19.3", {1: ("Tctl", 63_000)})
    plan, found = _plan(ZEN3)
    ctx = plan.context
    assert ctx.available("pkg_temp_c") and not ctx.available("core_temp_c")
    assert ctx.sensors[0].what == "k10temp Tctl (hwmon1, node 0000:00:18.3)"
    # the notes say where the value comes from
    lines = formats.start_lines(plan, found.absent(), 1_000_000_000)
    assert "package 0 temperature (pkg_temp_c) from the k10temp Tctl (hwmon1, node 0000:00:18.3)" in lines
    # a snapshot carries the sensor read with it; derive puts it in the package rows
    take = Reader(FakeDevice(), plan)
    first = take()
    (d0 / "temp1_input").write_text("57500\n")
    second = take()
    assert first.sensors == {0: 55.125, 1: 63.0} and second.sensors == {0: 57.5, 1: 63.0}
    sample = derive(plan, first, second)
    assert [(r["package"], r["pkg_temp_c"]) for r in sample.packages] == [(0, 57.5), (1, 63.0)]
    # an unreadable input this time: no value (never a stale or made-up one)
    (d0 / "temp1_input").unlink()
    assert derive(plan, second, take()).packages[0]["pkg_temp_c"] is None


def test_amd_without_k10temp_says_so_and_reads_no_file(two_packages: Path) -> None:
    plan, found = _plan(ZEN3)
    assert plan.context.metrics["pkg_temp_c"] == hwmon.NO_DEVICE and plan.context.sensors == {}
    assert found.absent()[hwmon.NO_DEVICE] == ["pkg_temp_c"]


def test_intel_never_looks_at_hwmon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sysfs(tmp_path, SMALL, monkeypatch)
    hwmon_device(tmp_path, 0, "0000:00:18.3", {1: ("Tctl", 50_000)})
    xeon = cpu.CpuInfo("GenuineIntel", 6, 0x55, "Xeon", frozenset({"aperfmperf", "dts", "pts"}))
    assert probe.find_sensors(xeon, topology.read()) == ({}, "this vendor needs no hwmon sensor")


def test_record_writes_only_the_metrics_the_machine_has_unless_all_are_asked(two_packages: Path) -> None:
    hwmon_device(two_packages, 1, "0000:00:18.3", {1: ("Tctl", 55_000)})
    hwmon_device(two_packages, 2, "0000:00:19.3", {1: ("Tctl", 56_000)})
    plan, _ = _plan(ZEN3)
    have = [m.name for m in catalog.METRICS if plan.context.available(m.name)]
    # worked out from the AMD catalog by hand: frequency, core and package RAPL, k10temp
    assert have == [
        "mhz_effective", "mhz_busy", "busy_pct", "core_energy_j", "core_power_w",
        "pkg_temp_c", "pkg_energy_j", "pkg_power_w",
    ]  # fmt: skip
    names = formats.shown(plan)
    assert names == tuple(have)
    assert formats.csv_header(names=names).strip().split(",") == [*formats.IDS, *have]
    assert formats.shown(plan, all_columns=True) == tuple(m.name for m in catalog.METRICS)
    take = Reader(FakeDevice(), plan)
    sample = derive(plan, take(), take())
    rows = [line.split(",") for line in formats.csv_rows(sample, 1, 0, names=names).splitlines()]
    assert {len(r) for r in rows} == {len(formats.IDS) + len(have)}
    obj = json.loads(formats.jsonl(sample, 1, 0, names=names))
    assert set(obj["packages"][0]) == {"package", "tsc", *(n for n in have if n.startswith("pkg_"))}
    full = json.loads(formats.jsonl(sample, 1, 0, names=formats.shown(plan, True)))
    assert full["packages"][0]["dram_energy_j"] is None  # --all-columns: absent is null, never 0
