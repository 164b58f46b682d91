"""Hybrid CPUs (Alder Lake and later): each CPU's core type from the kernel's hybrid PMUs,
in record's CSV and JSON, top and the exporter, and the C6 counter of efficient cores,
which includes C7 (turbostat subtracts it on CPUID leaf 0x1A's Atom cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakecpu import write_sysfs

from msrctl.exporter import families
from msrctl.telemetry import cpu, formats, msrs, probe, table, topology
from msrctl.telemetry.derive import derive
from msrctl.telemetry.plan import Plan, Raw

# An Alder Lake-S: CPUs 0-1 one P-core's two threads, CPUs 2-3 two E-cores.
LAYOUT = {0: (0, 0), 1: (0, 0), 2: (0, 8), 3: (0, 9)}
ADL = cpu.CpuInfo("GenuineIntel", 6, 0x97, "12th Gen Intel(R) Core(TM) i9-12900K", frozenset({"aperfmperf", "dts"}))


@pytest.fixture
def hybrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_sysfs(tmp_path, LAYOUT, monkeypatch)
    for pmu, cpus in (("cpu_core", "0-1"), ("cpu_atom", "2-3")):
        (root / "sys/devices" / pmu).mkdir(parents=True)
        (root / "sys/devices" / pmu / "cpus").write_text(cpus + "\n")
    return root


def test_core_types_from_the_hybrid_pmus(hybrid: Path) -> None:
    topo = topology.read()
    assert [c.core_type for c in topo.cpus] == ["performance", "performance", "efficient", "efficient"]
    assert topo.hybrid


def test_one_core_type_is_no_core_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sysfs(tmp_path, LAYOUT, monkeypatch)
    topo = topology.read()
    assert [c.core_type for c in topo.cpus] == [None] * 4 and not topo.hybrid


def sample(topo: topology.Topology, step: dict[int, int]):
    p = probe.evaluate(ADL, topo, {r: ({0xCE: 32 << 8, 0x1A2: 100 << 16}.get(r[1], 1000), 0)
                                  for r in probe.probe_reads(ADL, topo)})  # fmt: skip
    plan = Plan(topo, p.sampled, p.context)
    a = Raw(tuple(1000 for _ in plan.ops), (0,) * len(plan.ops), 0, 0, 0)
    b = Raw(tuple(1000 + step.get(op.msr, 0) for op in plan.ops), (0,) * len(plan.ops), 10**8, 0, 0)
    return plan, derive(plan, a, b)


def test_efficient_cores_c6_leaves_out_c7(hybrid: Path) -> None:
    """Class 6. In 0.1 s (240M TSC ticks) each core's C6 counter advanced 60M and C7 20M. A
    P-core's C6 is 60M / 240M = 25 %; an E-core's counter includes its C7, so its C6 is
    (60M - 20M) / 240M = 16.67 % (turbostat: c6 -= c7 on Atom-type cores)."""
    _, s = sample(topology.read(), {0x10: 240_000_000, msrs.CORE_C6.msr: 60_000_000, msrs.CORE_C7.msr: 20_000_000})
    by_type = {r["core_type"]: r for r in s.cores}
    assert by_type["performance"]["core_c6_pct"] == pytest.approx(25.0)
    assert by_type["efficient"]["core_c6_pct"] == pytest.approx(100 * 40 / 240)
    assert by_type["efficient"]["core_c7_pct"] == pytest.approx(100 * 20 / 240)


def test_record_has_a_core_type_column_on_hybrid_cpus_only(hybrid: Path) -> None:
    plan, s = sample(topology.read(), {0x10: 240_000_000})
    header = formats.csv_header(plan.topology.hybrid).strip().split(",")
    assert header[4:8] == ["package", "core", "cpu", "core_type"]
    rows = [line.split(",") for line in formats.csv_rows(s, 1, 0, True).splitlines()]
    assert [r[7] for r in rows if r[3] == "cpu"] == ["performance", "performance", "efficient", "efficient"]
    assert [r[7] for r in rows if r[3] == "package"] == [""]
    assert formats.csv_header() == ",".join(formats.COLUMNS) + "\n"  # one core type: the columns as before
    assert '"core_type":"efficient"' in formats.jsonl(s, 1, 0)


def test_the_exporter_labels_each_cpu_with_its_type(hybrid: Path) -> None:
    topo = topology.read()
    info = next(families.topology_families(topo, None))
    assert [s.labels for s in info.samples][2] == {"cpu": "2", "core": "8", "package": "0", "core_type": "efficient"}


def test_top_shows_p_and_e(hybrid: Path) -> None:
    plan, s = sample(topology.read(), {0x10: 240_000_000, msrs.APERF.msr: 10**8, msrs.MPERF.msr: 10**8})
    header = table.Header("host", "cpu", "msrdrv", 10**9)
    lines = table.render(header, plan.context.metrics, s, width=120, height=40)
    title = next(line for line in lines if line.lstrip().startswith("CPU"))
    assert title.split()[:3] == ["CPU", "CORE", "T"]
    cpu_lines = lines[lines.index(title) + 1 : lines.index(title) + 5]
    assert [line.split()[2] for line in cpu_lines] == ["P", "P", "E", "E"]
