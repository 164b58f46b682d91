"""msrctl exporter on the host: metric names and units by Prometheus conventions, the
exposition of SDM-derived snapshots (checked by Debian's `promtool check metrics`),
energy counters across a 32-bit wrap, absent metrics never as 0, the read cache,
errors by errno, the --listen parsing and binding, and the command's one-line errors.
The hardware path, against a real Prometheus server, is tests/guest/test_exporter.py."""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fakecpu import QEMU, SMALL, STATIC, STEP, XEON, ZEN3, hwmon_device, write_sysfs
from fakecpu import plan as _plan
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry

from msrctl import errors
from msrctl.device.msrdrv import DeviceError
from msrctl.errors import MsrctlError, UsageError
from msrctl.exporter import families, limits, listen
from msrctl.exporter.collector import TelemetryCollector
from msrctl.telemetry import catalog, cpu, topology
from msrctl.telemetry.plan import Plan, PlanOp, Raw

ROOT = Path(__file__).resolve().parents[3]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_sysfs(tmp_path, SMALL, monkeypatch)


class Snapshots:
    """Raw snapshots 0.1 s apart, each counter moved by STEP; start values per MSR can be set."""

    def __init__(self, plan: Plan, start: dict[int, int] | None = None) -> None:
        self.plan, self.start, self.n = plan, start or {}, 0
        self.errs: dict[int, int] = {}  # op index -> errno, for the next snapshot
        self.fail: OSError | None = None  # raised by the next call instead

    def value(self, op: PlanOp, k: int) -> int:
        base = self.start.get(op.msr, STATIC.get(op.msr, 1000))
        return base + k * STEP.get(op.msr, 0)

    def __call__(self) -> Raw:
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
        k, self.n = self.n, self.n + 1
        t = 10**9 + k * 10**8
        errs = tuple(self.errs.get(i, 0) for i in range(len(self.plan)))
        self.errs = {}
        values = tuple(self.value(op, k) for op in self.plan.ops)
        return Raw(values, errs, t, t, t, self.plan.context.read_sensors())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    """The exposition as {'name{labels}': value}, labels as prometheus_client orders them."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _registry(collector: TelemetryCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


# --- names ---------------------------------------------------------------------------

UNIT_SUFFIX = {"MHz": "_hertz", "C": "_celsius", "%": "_ratio", "J": "_joules_total", "": ("_active", "_logged")}
SCALE = {"MHz": 1e6, "C": 1.0, "%": 0.01, "J": 1.0, "": 1.0}


def test_names_units_and_types_follow_prometheus_conventions() -> None:
    seen: dict[str, str] = {}
    for fam in families.FAMILIES:
        assert re.fullmatch(r"msr_[a-z][a-z0-9_]*[a-z]", fam.name), fam.name
        assert fam.name.endswith("_total") == (fam.kind == families.COUNTER), fam.name
        for src, extra in fam.sources:
            metric = catalog.BY_NAME[src]
            assert src not in seen, f"{src} feeds {seen[src]} and {fam.name}"
            seen[src] = fam.name
            assert fam.name.endswith(UNIT_SUFFIX[metric.unit]), (fam.name, metric.unit)
            assert fam.scale == SCALE[metric.unit], fam.name
            assert metric.scope == fam.scope, fam.name
            # A C-state's share is labelled state="cN"; flags carry reason="<bit name>".
            assert bool(extra) == (fam.label == "state") and (not extra or re.fullmatch(r"c\d+", extra)), fam.name
            assert (fam.kind == families.FLAGS) == (fam.label == "reason") == bool(fam.bits), fam.name
        assert fam.labels == (*families.LABELS[fam.scope], *((fam.label,) if fam.label else ()))
    # Every telemetry metric is exported once, except watts: rate() of the joules.
    assert set(seen) | families.NOT_EXPORTED == set(catalog.BY_NAME)
    assert all(catalog.BY_NAME[m].unit == "W" for m in families.NOT_EXPORTED)
    assert {f.name for f in families.FAMILIES if f.kind == families.COUNTER} == {
        f"msr_rapl_{d}_joules_total" for d in ("core", "package", "pp0", "pp1", "dram", "psys")
    }


# --- the exposition of a sample ------------------------------------------------------


def test_exposition_of_a_xeon_in_base_units(sysfs: Path) -> None:
    plan = _plan(XEON)
    take = Snapshots(plan)
    registry = _registry(TelemetryCollector(plan, take, "msrdrv", 0.0, "9.9"))
    got = _scrape(registry)
    cpu0 = 'core="0",cpu="0",package="0"'
    assert got[f"msr_cpu_info{{{cpu0}}}"] == 1
    assert got[f"msr_cpu_frequency_hertz{{{cpu0}}}"] == pytest.approx(1.8e9)
    assert got[f"msr_cpu_busy_frequency_hertz{{{cpu0}}}"] == pytest.approx(3.6e9)
    assert got[f"msr_cpu_busy_ratio{{{cpu0}}}"] == pytest.approx(0.5)
    assert got[f"msr_cpu_tsc_cycles_total{{{cpu0}}}"] == 1000 + 240_000_000
    assert got['msr_core_temperature_celsius{core="1",package="0"}'] == 58
    assert got['msr_core_cstate_residency_ratio{core="0",package="0",state="c6"}'] == pytest.approx(0.25)
    assert got['msr_package_temperature_celsius{package="0"}'] == 60
    assert got['msr_package_cstate_residency_ratio{package="0",state="c2"}'] == pytest.approx(0.1)
    assert got['msr_package_cstate_residency_ratio{package="0",state="c6"}'] == pytest.approx(0.05)
    assert got['msr_rapl_package_joules_total{package="0"}'] == pytest.approx(3.0)
    assert got['msr_rapl_dram_joules_total{package="0"}'] == pytest.approx(16384 * 15.3e-6)
    assert got['msr_core_throttle_active{core="0",package="0",reason="thermal"}'] == 0
    assert got['msrctl_exporter_info{backend="msrdrv",vendor="intel",version="9.9"}'] == 1
    assert got["msrctl_exporter_batch_ops"] == len(plan)
    # One package, two cores: each series at the scope the hardware measures it, once.
    assert sum(k.startswith("msr_rapl_package_joules_total") for k in got) == 1
    assert sum(k.startswith("msr_core_temperature_celsius") for k in got) == 2
    assert sum(k.startswith("msr_cpu_busy_ratio") for k in got) == 4
    # Intel has no per-core energy: absent, with the reason, not 0.
    assert not any(k.startswith("msr_rapl_core_joules") for k in got)
    absent = [k for k in got if k.startswith("msrctl_exporter_metric_absent_info")]
    assert len(absent) == 1 and 'metric="msr_rapl_core_joules_total"' in absent[0] and "Intel RAPL" in absent[0]


@needs_promtool
@pytest.mark.parametrize("info", [XEON, QEMU], ids=["xeon", "qemu"])
def test_promtool_accepts_the_exposition(sysfs: Path, info: cpu.CpuInfo) -> None:
    plan = _plan(info, None if info is XEON else 0)
    registry = _registry(TelemetryCollector(plan, Snapshots(plan), "msrdrv", 0.0, "9.9"))
    text = generate_latest(registry).decode()
    res = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


def test_energy_counters_grow_across_the_32_bit_wrap(sysfs: Path) -> None:
    plan = _plan(XEON)
    take = Snapshots(plan, {0x611: 2**32 - 16384})  # wraps during the first interval
    registry = _registry(TelemetryCollector(plan, take, "msrdrv", 0.0))
    values = [_scrape(registry)['msr_rapl_package_joules_total{package="0"}'] for _ in range(5)]
    assert values == pytest.approx([3.0, 6.0, 9.0, 12.0, 15.0])
    assert [take.value(PlanOp(0, 0x611), k) & 0xFFFFFFFF for k in (0, 1)] == [2**32 - 16384, 2 * 16384]


def test_under_qemu_no_hardware_family_only_reasons(sysfs: Path) -> None:
    plan = _plan(QEMU, 0)  # every probe read gives 0
    registry = _registry(TelemetryCollector(plan, Snapshots(plan), "msrdrv", 0.0))
    text = generate_latest(registry).decode()
    # prometheus_client 0.16 names a counter's TYPE line without _total, newer ones with it.
    names = {n.removesuffix("_total") for n in re.findall(r"^# TYPE (\S+)", text, re.M)}
    assert not names & {n.removesuffix("_total") for n in families.names()}
    assert {n for n in names if n.startswith("msr_")} == {"msr_cpu_info", "msr_cpu_tsc_cycles"}
    reasons = re.findall(r'^msrctl_exporter_metric_absent_info\{metric="(\w+)",reason="([^"]+)"\} 1.0$', text, re.M)
    assert {m for m, _ in reasons} == set(families.names())
    assert all(why for _, why in reasons)
    assert plan.per_cpu() == 1  # an RDTSC per CPU is all a read does here


def test_a_missing_value_leaves_its_series_out_for_that_scrape(sysfs: Path) -> None:
    plan = _plan(XEON)
    take = Snapshots(plan)
    registry = _registry(TelemetryCollector(plan, take, "msrdrv", 0.0))
    pkg_energy = next(i for i, op in enumerate(plan.ops) if op.msr == 0x611)
    take.errs = {pkg_energy: errno.EIO}
    got = _scrape(registry)
    # No joules counted yet for that series, so none is exported (nothing made up) ...
    assert 'msr_rapl_package_joules_total{package="0"}' not in got
    assert got['msrctl_exporter_batch_errors_total{errno="EIO"}'] == 1
    # ... and the next good pair of reads counts again.
    _scrape(registry)
    got = _scrape(registry)
    assert got['msr_rapl_package_joules_total{package="0"}'] == pytest.approx(3.0)


def test_a_failed_batch_is_counted_by_errno_and_serves_no_values(sysfs: Path) -> None:
    plan = _plan(XEON)
    take = Snapshots(plan)
    registry = _registry(TelemetryCollector(plan, take, "msrdrv", 0.0))
    take.fail = DeviceError("msrdrv went away", errno.ENODEV)
    got = _scrape(registry)
    assert got['msrctl_exporter_batch_errors_total{errno="ENODEV"}'] == 1
    assert not any(k.startswith("msr_cpu_busy_ratio") for k in got)
    assert 'msr_cpu_info{core="0",cpu="0",package="0"}' in got  # the exporter itself still answers
    got = _scrape(registry)
    assert got['msr_cpu_busy_ratio{core="0",cpu="0",package="0"}'] == pytest.approx(0.5)


def test_interval_is_the_minimum_time_between_reads(sysfs: Path) -> None:
    plan = _plan(XEON)
    clock = Clock()
    take = Snapshots(plan)
    registry = _registry(TelemetryCollector(plan, take, "msrdrv", 1.0, clock=clock))
    assert take.n == 1  # the baseline, at start-up
    first = _scrape(registry)  # no values yet: reads even within the interval of start-up
    assert take.n == 2 and first["msrctl_exporter_reads_total"] == 2
    assert first['msr_cpu_busy_ratio{core="0",cpu="0",package="0"}'] == pytest.approx(0.5)
    clock.now += 0.5
    again = _scrape(registry)  # too soon: the same read's values
    assert take.n == 2 and again["msrctl_exporter_scrapes_total"] == 2
    assert again['msr_rapl_package_joules_total{package="0"}'] == first['msr_rapl_package_joules_total{package="0"}']
    clock.now += 0.5
    assert _scrape(registry)["msrctl_exporter_reads_total"] == 3 and take.n == 3


# --- --listen ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9838", "127.0.0.1", 9838),
        (":9100", "", 9100),
        ("[::1]:1", "::1", 1),
        ("node7:65535", "node7", 65535),
    ],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    assert listen.parse(text) == listen.Address(host, port)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("9838", "it has no port"),
        ("127.0.0.1", "it has no port"),
        ("127.0.0.1:", "the port '' is not a number from 1 to 65535"),
        ("127.0.0.1:0", "the port '0' is not"),
        ("127.0.0.1:65536", "the port '65536' is not"),
        ("127.0.0.1:http", "the port 'http' is not"),
        ("::1:9838", "an IPv6 address needs brackets"),
        ("[::1]9838", "an IPv6 address needs brackets and a port"),
    ],
)
def test_bad_listen_addresses(text: str, why: str) -> None:
    with pytest.raises(UsageError) as e:
        listen.parse(text)
    assert e.value.message.startswith(f"bad listen address '{text}': {why}")
    assert "e.g. --listen 127.0.0.1:9838" in e.value.message


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_bind_errors(busy_port: int) -> None:
    with pytest.raises(MsrctlError) as e:
        listen.bind(listen.Address("127.0.0.1", busy_port))
    assert e.value.code == errors.UNAVAILABLE
    assert e.value.message.startswith(f"cannot listen on 127.0.0.1:{busy_port}: another program already listens")
    with pytest.raises(MsrctlError) as e:
        listen.bind(listen.Address("192.0.2.1", 9838))  # TEST-NET-1: no machine's address
    assert e.value.code == errors.UNAVAILABLE and "not one of this machine's" in e.value.message
    with pytest.raises(UsageError, match="does not resolve"):
        listen.bind(listen.Address("no-such-host.invalid", 9838))
    sock = listen.bind(listen.Address("127.0.0.1", 0))
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


# --- the command -------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    root = tmp_path / "root"
    e.update(PYTHONPATH=str(ROOT), MSRCTL_DEVICE=str(root / "dev/msrdrv"), MSRCTL_SYSROOT=str(root))
    for var in ("MSRCTL_DEBUG", "MSRCTL_EXPORTER_LISTEN", "MSRCTL_EXPORTER_INTERVAL", "MSRCTL_BACKEND"):
        e.pop(var, None)
    (root / "proc").mkdir(parents=True)
    (root / "proc/modules").write_text("")
    return e


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--listen", "localhost"], errors.USAGE, "bad listen address 'localhost': it has no port"),
        (["--listen", "127.0.0.1:99999"], errors.USAGE, "the port '99999' is not a number from 1 to 65535"),
        (["--listen", "BUSY"], errors.UNAVAILABLE, "another program already listens on that port"),
        (["-i", "soon"], errors.USAGE, "malformed interval 'soon'"),
        (["--listen", "127.0.0.1:0"], errors.USAGE, "the port '0' is not"),
        (["--listen", "127.0.0.1:19999"], errors.NOT_LOADED, "msrdrv module not loaded"),
    ],
)
def test_errors_are_one_line(env: dict[str, str], busy_port: int, args: list[str], code: int, message: str) -> None:
    args = [f"127.0.0.1:{busy_port}" if a == "BUSY" else a for a in args]
    res = subprocess.run(
        [sys.executable, "-m", "msrctl", "exporter", *args], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == code, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("msrctl: error: ") and message in lines[0], res.stderr
    assert res.stdout == ""


def test_the_listen_address_comes_from_the_environment_too(env: dict[str, str]) -> None:
    env["MSRCTL_EXPORTER_LISTEN"] = "nowhere"
    res = subprocess.run([sys.executable, "-m", "msrctl", "exporter"], capture_output=True, text=True, env=env)
    assert res.returncode == errors.USAGE and "bad listen address 'nowhere'" in res.stderr


def test_exit_codes_are_documented() -> None:
    assert errors.UNAVAILABLE == 69 and "cannot listen" in errors.EXIT_CODES[errors.UNAVAILABLE]
    assert "69 msrctl exporter cannot listen" in errors.exit_codes_help()


# --- the systemd unit ------------------------------------------------------------------

UNIT = ROOT / "debian" / "msrctl.msrctl-exporter.service"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 1.5 when written (docs/exporter.md)


def _unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_runs_the_exporter_unprivileged_and_ships_disabled() -> None:
    unit = _unit()
    assert unit["ExecStart"] == ["/usr/bin/msrctl exporter"]
    assert unit["DynamicUser"] == ["yes"] and unit["SupplementaryGroups"] == ["msr"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"] and unit["DeviceAllow"] == ["/dev/msrdrv r"]
    assert unit["Environment"] == ["MSRCTL_BACKEND=msrdrv"]  # the stock msr driver needs root: never fall back
    assert unit["EnvironmentFile"] == ["-/etc/default/msrctl-exporter"]
    rules = (ROOT / "debian" / "rules").read_text()
    # off until enabled, yet restarted after an upgrade and stopped on removal (no --no-start)
    calls = [line.strip() for line in rules.splitlines() if line.startswith("\tdh_installsystemd")]
    assert "dh_installsystemd --name=msrctl-exporter --no-enable" in calls
    assert not [c for c in calls if "--no-start" in c], calls


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_is_hardened() -> None:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, res.stdout
    assert f"{float(m.group(1)):.1f}" in (ROOT / "docs" / "exporter.md").read_text()


# --- the fleet examples (docs/examples) -------------------------------------------------

EXAMPLES = ROOT / "docs" / "examples"


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "msrctl.rules.yml"],
        ["test", "rules", "msrctl.rules.test.yml"],  # the watts rules on made-up joules, a restart included
    ],
    ids=["config", "rules", "rule-tests"],
)
def test_promtool_accepts_the_examples(args: list[str]) -> None:
    res = subprocess.run([str(PROMTOOL), *args], cwd=EXAMPLES, capture_output=True, text=True)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_the_examples_use_the_exported_names() -> None:
    """Every msr_ name the rules and docs query is one the exporter exports."""
    exported = {*families.names(), families.CPU_INFO, families.TSC, *limits.NAMES}
    for path in (EXAMPLES / "msrctl.rules.yml", ROOT / "docs" / "exporter.md"):
        used = set(re.findall(r"(?<![\w:])(msr_[a-z0-9_]+)", path.read_text()))
        assert used and used <= exported, (path.name, sorted(used - exported))


# --- RAPL power limits ------------------------------------------------------------------

# MSR_PKG_POWER_LIMIT with units 1/8 W, 2^-10 s (0xA0E03): PL1 1000 units = 125 W, enabled,
# window 2^10 x 2^-10 s = 1 s (Y=10, Z=0); PL2 1250 units = 156.25 W, enabled, 2^0 x 2^-10 s.
PKG_LIMIT = (0x04E2 | 1 << 15) << 32 | (0x03E8 | 1 << 15 | 10 << 17)
PSYS_LIMIT = 0x0320 | 0 << 15  # PL1 100 W, disabled; PL2 0


def _limits(info: cpu.CpuInfo, values: dict[int, tuple[int, int]]) -> limits.Limits:
    topo = topology.read()
    return limits.evaluate(
        info, topo, {r: values.get(r[1], (STATIC.get(r[1], 0), 0)) for r in limits.probe_reads(info, topo)}
    )


def test_power_limits_in_watts_and_why_others_are_absent(sysfs: Path) -> None:
    got = _limits(
        XEON,
        {
            0x610: (PKG_LIMIT, 0),
            0x618: (0, errno.EACCES),
            0x638: (0, 0),  # on bare metal a 0 limit register is believed: 0 W, disabled
            0x640: (0, errno.EIO),
            0x65C: (PSYS_LIMIT, 0),
        },
    )
    assert [d.name for d in got.domains] == ["package", "pp0", "psys"]
    assert got.absent["dram"].startswith(
        "MSR_DRAM_POWER_LIMIT (0x618) is not in the msrdrv allowlist; the power-capping"
    )
    assert got.absent["pp1"] == "MSR_PP1_POWER_LIMIT (0x640) faults: not implemented on this CPU"
    plan = _plan(XEON)
    plan = Plan(plan.topology, (*plan.registers, *got.registers), plan.context)
    assert sum(op.msr == 0x610 for op in plan.ops) == 1  # once per package, in the scrape's batch
    take = Snapshots(plan, {0x610: PKG_LIMIT, 0x638: 0, 0x65C: PSYS_LIMIT})
    registry = _registry(TelemetryCollector(plan, take, "msrdrv", 0.0, limits=got))
    out = _scrape(registry)
    pkg = 'domain="package",limit="{}",package="0"'
    assert out[f"msr_rapl_power_limit_watts{{{pkg.format('pl1')}}}"] == 125.0
    assert out[f"msr_rapl_power_limit_watts{{{pkg.format('pl2')}}}"] == 156.25
    assert out[f"msr_rapl_power_limit_window_seconds{{{pkg.format('pl1')}}}"] == 1.0
    assert out[f"msr_rapl_power_limit_window_seconds{{{pkg.format('pl2')}}}"] == 2**-10
    assert out[f"msr_rapl_power_limit_enabled{{{pkg.format('pl1')}}}"] == 1
    assert out['msr_rapl_power_limit_watts{domain="pp0",limit="pl1",package="0"}'] == 0
    assert out['msr_rapl_power_limit_enabled{domain="psys",limit="pl1",package="0"}'] == 0
    assert out['msr_rapl_power_limit_watts{domain="psys",limit="pl1",package="0"}'] == 100.0
    assert not any('domain="dram"' in k or 'domain="pp1"' in k for k in out if k.startswith("msr_rapl_power"))
    reasons = [k for k in out if k.startswith("msrctl_exporter_metric_absent_info") and "power_limit" in k]
    assert len(reasons) == 2 and any("pp1: MSR_PP1_POWER_LIMIT (0x640) faults" in k for k in reasons)
    if PROMTOOL:
        text = generate_latest(registry).decode()
        res = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_power_limits_absent_under_qemu_and_without_rapl(sysfs: Path) -> None:
    assert limits.probe_reads(QEMU, topology.read()) == []
    amd = _limits(QEMU, {})
    assert not amd.domains and set(amd.absent.values()) == {"RAPL power limits are Intel MSRs (AMD has none)"}
    hyper = replace(XEON, flags=XEON.flags | {"hypervisor"})
    under_vm = _limits(hyper, {0x610: (0, 0), 0x638: (0, 0), 0x640: (0, 0), 0x618: (0, 0), 0x65C: (0, 0)})
    assert [d.name for d in under_vm.domains] == []
    assert "reads 0: not implemented here" in under_vm.absent["package"]
    no_rapl = _limits(XEON, {0x606: (0, 0)})
    assert set(no_rapl.absent.values()) == {"MSR_RAPL_POWER_UNIT (0x606) reads 0: no RAPL here"}
    denied = _limits(XEON, {0x606: (0, errno.EACCES)})
    assert "power-capping" in denied.absent["package"]


# --- the HTTP server -----------------------------------------------------------------------

SERVE = """
import sys
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from msrctl.exporter import listen, server

class Demo:
    def collect(self):
        if open(sys.argv[1]).read() == "fail":
            raise RuntimeError("collector broke")
        yield GaugeMetricFamily("demo_value", "A value.", value=42)

sock = listen.bind(listen.Address("127.0.0.1", 0))
registry = CollectorRegistry()
registry.register(Demo())
print(sock.getsockname()[1], flush=True)
print(server.serve(sock, registry), flush=True)
"""


def test_the_server_answers_scrapes_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal
    import urllib.error
    import urllib.request

    mode = tmp_path / "mode"
    mode.write_text("ok")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(mode)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            assert "demo_value 42.0" in r.read().decode()
        mode.write_text("fail")  # a collector bug: one line on stderr, no traceback, the server goes on
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url, timeout=30).read()
        mode.write_text("ok")
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0 and out.strip() == "15", (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("msrctl: exporter: error answering 127.0.0.1: RuntimeError"), err


# The stop signal lands while the main thread hands a request to its thread (seen once
# on a loaded host): the server must still stop, not log the stop as a failed answer.
SIGNAL_MID_REQUEST = """
import os, signal, sys
from prometheus_client.core import CollectorRegistry
from msrctl.exporter import listen, server

def process_request(self, request, client_address):
    os.kill(os.getpid(), signal.SIGTERM)
    self.shutdown_request(request)

server._Server.process_request = process_request
sock = listen.bind(listen.Address("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
print(server.serve(sock, CollectorRegistry()), flush=True)
"""


def test_a_stop_signal_during_a_request_hand_off_still_stops() -> None:
    import socket

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_MID_REQUEST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=30).close()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0 and out.strip() == "15" and err == "", (out, err)


def test_the_committed_cost_report_is_rendered_from_its_figures() -> None:
    import json

    sys.path.insert(0, str(ROOT / "bench"))
    import exporter as bench

    data = json.loads((ROOT / "bench" / "results" / "exporter.json").read_text())
    assert (ROOT / "bench" / "results" / "exporter.md").read_text() == bench.render(data)
    assert "TCG" in data["emulated"] and data["runs"]
    for run in data["runs"].values():
        assert run["batches_per_scrape"] == 1.0  # one batch per scrape, for the whole machine


def test_amd_package_temperature_from_k10temp_with_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An AMD node exports msr_package_temperature_celsius from k10temp (no MSR holds it), and
    names the driver and input in msrctl_exporter_metric_source_info; the core one stays absent."""
    write_sysfs(tmp_path, SMALL, monkeypatch)
    hwmon_device(tmp_path, 3, "0000:00:18.3", {1: ("Tctl", 48_875)})
    plan = _plan(ZEN3)
    got = _scrape(_registry(TelemetryCollector(plan, Snapshots(plan), "msrdrv", 0.0)))
    assert got['msr_package_temperature_celsius{package="0"}'] == 48.875
    source = 'msrctl_exporter_metric_source_info{metric="msr_package_temperature_celsius",package="0",'
    assert got[source + 'source="k10temp Tctl (hwmon3, node 0000:00:18.3)"}'] == 1
    assert not any(k.startswith("msr_core_temperature_celsius") for k in got)
    absent = [k for k in got if k.startswith('msrctl_exporter_metric_absent_info{metric="msr_core_temperature')]
    assert len(absent) == 1 and "no per-core temperature sensor" in absent[0]
