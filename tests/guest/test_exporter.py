"""`msrctl exporter` end to end: the exporter runs as msruser (group msr, no capabilities) with
the telemetry allowlist loaded, a real Prometheus server (Debian's) on 127.0.0.1 scrapes it
every 2 s, and the test asks Prometheus's HTTP API what arrived: a series per online CPU with
its cpu/core/package labels, `up` 1; after the exporter is killed `up` 0, after a restart 1
again.  Under QEMU TCG no telemetry register is implemented: those metrics must be absent
(with their reason in msrctl_exporter_metric_absent_info), never a 0 sample.  Also the
start-up errors: a bad address, a port in use, no allowlist, one line and one code each."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MEMBER, REPO, Device, cli_calls, cpu_driver_in, cpu_driver_out, online_cpus, results_dir

from msrctl import errors
from msrctl.admin import allowlist
from msrctl.exporter import families, limits

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
EXPORTER_PORT = 19838
PROM_PORT = 19090
STARTUP_S = 180.0  # python, cffi and the probe under TCG, on a loaded host
SCRAPE_S = 5  # also the scrape timeout: the debug kernel (make test-debug) is slow to answer
HARDWARE = {*families.names(), *limits.NAMES}

pytestmark = pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="Debian's prometheus package is not installed")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    for var in ("MSRCTL_DEVICE", "MSRCTL_BACKEND", "MSRCTL_EXPORTER_LISTEN"):
        env.pop(var, None)
    return env


def poll(what: str, probe: Any, timeout: float) -> Any:
    """probe() until it returns something true; fails with what was awaited and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as e:  # not listening yet
            last = e
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def fetch(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


class Exporter:
    """`msrctl exporter` as msruser, its stderr in a file."""

    def __init__(self, log: Path, user: tuple[str, ...] = tuple(MEMBER), port: int = EXPORTER_PORT, *opts: str) -> None:
        self.log = log
        argv = [*user, sys.executable, "-m", "msrctl", *opts, "exporter", "--listen", f"127.0.0.1:{port}"]
        with open(log, "ab") as err:
            self.proc = subprocess.Popen([*argv, "-i", "200ms"], stdout=subprocess.DEVNULL, stderr=err, env=_env())
        self.url = f"http://127.0.0.1:{port}/metrics"
        poll("the exporter to answer", self._ready, STARTUP_S)

    def _ready(self) -> str:
        assert self.proc.poll() is None, f"the exporter exited {self.proc.returncode}: {self.log.read_text()}"
        return fetch(self.url, 5)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)


class Prometheus:
    """Debian's Prometheus server on 127.0.0.1, scraping the exporter every SCRAPE_S s."""

    def __init__(self, tmp: Path) -> None:
        config = tmp / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {SCRAPE_S}s, scrape_timeout: {SCRAPE_S}s}}\n"
            "scrape_configs:\n"
            "  - job_name: msr\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{EXPORTER_PORT}']}}]\n"
        )
        self.log = tmp / "prometheus.log"
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}",
            "--log.level=warn",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.api = f"http://127.0.0.1:{PROM_PORT}/api/v1"
        poll("Prometheus to be ready", lambda: self._alive() and fetch(f"http://127.0.0.1:{PROM_PORT}/-/ready"), 180)

    def _alive(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
        return True

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector expr evaluates to now."""
        self._alive()
        body = json.loads(fetch(f"{self.api}/query?{urllib.parse.urlencode({'query': expr})}"))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def up(self) -> float | None:
        res = self.query('up{job="msr"}')
        return float(res[0]["value"][1]) if res else None

    def wait_up(self, value: float, what: str, timeout: float) -> None:
        """up{job="msr"} == value; a timeout names the scrape's own error and the server's log."""
        try:
            poll(what, lambda: self.up() == value, timeout)
        except AssertionError as e:
            targets = json.loads(fetch(f"{self.api}/targets"))["data"]["activeTargets"]
            seen = [(t.get("health"), t.get("lastError"), t.get("lastScrapeDuration")) for t in targets]
            raise AssertionError(f"{e}; targets: {seen}; log: {self.log.read_text()[-1500:]}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _load_profiles(dev: Device, *profiles: str) -> None:
    args = [a for p in profiles for a in ("--profile", p)]
    r = subprocess.run(
        [sys.executable, "-m", "msrctl", "allowlist", "load", *args], capture_output=True, text=True, env=_env()
    )
    assert r.returncode == 0, r.stderr


@pytest.fixture
def lo_up() -> None:
    """Prometheus and the exporter talk over loopback: make sure it is up in the guest."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


@pytest.fixture
def telemetry_list(dev: Device) -> Iterator[Device]:
    _load_profiles(dev, "telemetry")
    yield dev
    allowlist.clear(dev.fd)


def _topology() -> dict[str, tuple[str, str]]:
    """cpu -> (core, package), from sysfs as the test sees it."""
    out = {}
    for c in online_cpus():
        t = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        out[str(c)] = ((t / "core_id").read_text().strip(), (t / "physical_package_id").read_text().strip())
    return out


def _series(text: str) -> dict[str, list[tuple[str, float]]]:
    """Exposition text: family name -> (labels, value) of each sample."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            out.setdefault(name, []).append((labels, float(value)))
    return out


def test_prometheus_scrapes_the_member_exporter_and_sees_the_gap(
    telemetry_list: Device, lo_up: None, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    exp = Exporter(tmp_path / "exporter.log")
    prom = None
    try:
        text = exp._ready()
        # The exposition is valid text format, by Prometheus's own linter.
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        (results_dir() / "exporter-metrics.txt").write_text(text)
        got = _series(text)
        # QEMU implements none of the telemetry registers: no hardware family, so no 0 sample...
        assert HARDWARE.isdisjoint(got), sorted(HARDWARE & set(got))
        # ...and each absent one says why.
        absent = {labels.split('metric="')[1].split('"')[0] for labels, _ in got["msrctl_exporter_metric_absent_info"]}
        assert absent == {*families.names(), limits.WATTS}  # a power limit's reason names the watts
        assert 'backend="msrdrv"' in got["msrctl_exporter_info"][0][0]
        assert got["msrctl_exporter_batch_ops"] == [("", float(len(online_cpus())))]  # an RDTSC per CPU

        prom = Prometheus(tmp_path)
        prom.wait_up(1.0, "up == 1", 60)
        topo = _topology()
        for name in ("msr_cpu_info", "msr_cpu_tsc_cycles_total"):
            res = poll(f"{name} for every CPU", lambda n=name: len(prom.query(n)) == len(topo) and prom.query(n), 30)
            seen = {m["metric"]["cpu"]: (m["metric"]["core"], m["metric"]["package"]) for m in res}
            assert seen == topo, (name, seen)
            assert {m["metric"]["job"] for m in res} == {"msr"}
            assert {m["metric"]["instance"] for m in res} == {f"127.0.0.1:{EXPORTER_PORT}"}
        # Prometheus stored no msr_* series but these two, and none of them is an absent metric's 0.
        names = {m["metric"]["__name__"] for m in prom.query('{__name__=~"msr_.+"}')}
        assert names == {"msr_cpu_info", "msr_cpu_tsc_cycles_total"}
        # One batch per scrape: reads are scrapes plus the start-up baseline, at most.
        reads = float(prom.query("msrctl_exporter_reads_total")[0]["value"][1])
        scrapes = float(prom.query("msrctl_exporter_scrapes_total")[0]["value"][1])
        assert 2 <= reads <= scrapes + 1, (reads, scrapes)

        assert exp.stop() == 0  # SIGTERM: a clean exit
        assert "stopped by signal 15" in exp.log.read_text()
        prom.wait_up(0.0, "up == 0 after the exporter stopped", 30)
        exp = Exporter(tmp_path / "exporter.log")
        prom.wait_up(1.0, "up == 1 after the restart", 60)
        # The gap is in Prometheus's own record: up went 1 -> 0 -> 1, and the restarted
        # exporter's counters started again (a counter reset, which rate() handles).
        assert float(prom.query('changes(up{job="msr"}[10m])')[0]["value"][1]) >= 2
        poll("a counter reset seen", lambda: prom.query("resets(msrctl_exporter_scrapes_total[10m]) >= 1"), 30)
    finally:
        exp.stop(signal.SIGKILL)
        if prom is not None:
            prom.stop()
        shutil.copy(exp.log, results_dir() / "exporter.log")
    lines = exp.log.read_text().splitlines()
    assert any(line.startswith("msrctl: exporter: serving http://127.0.0.1:") for line in lines), lines
    assert any(line.startswith("msrctl: exporter: not exported (") for line in lines), lines


def test_startup_errors_are_one_line_each(dev: Device) -> None:
    allowlist.clear(dev.fd)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    try:
        calls = [
            ["exporter", "--listen", "localhost"],
            ["exporter", "--listen", "127.0.0.1:70000"],
            ["exporter", "--listen", "::1:9838"],
            ["exporter", "--listen", f"127.0.0.1:{port}"],
            ["exporter", "--listen", "192.0.2.1:19839"],
            ["exporter", "--listen", f"127.0.0.1:{EXPORTER_PORT + 1}"],  # a free port, but no allowlist
        ]
        res = cli_calls(sys.executable, calls, tuple(MEMBER))
    finally:
        busy.close()
    want = [
        (errors.USAGE, "bad listen address 'localhost': it has no port"),
        (errors.USAGE, "bad listen address '127.0.0.1:70000': the port '70000' is not a number from 1 to 65535"),
        (errors.USAGE, "bad listen address '::1:9838': an IPv6 address needs brackets"),
        (errors.UNAVAILABLE, f"cannot listen on 127.0.0.1:{port}: another program already listens on that port"),
        (errors.UNAVAILABLE, "cannot listen on 192.0.2.1:19839: that address is not one of this machine's"),
        (errors.PERMISSION, "cannot read telemetry registers: no msrdrv allowlist is loaded"),
    ]
    for r, (code, text) in zip(res, want):
        lines = r.stderr.splitlines()
        assert r.returncode == code and len(lines) == 1 and lines[0].startswith("msrctl: error: "), (r.args, r.stderr)
        assert text in lines[0], (r.args, lines[0])
        assert r.stdout == ""


def test_root_exports_through_the_kernels_msr_driver(dev: Device, lo_up: None, tmp_path: Path) -> None:
    """--backend msr: root only (the driver has no allowlist), the backend named in the info
    metric.  Through that driver RDTSC on a CPU is a read of IA32_TIME_STAMP_COUNTER, which
    QEMU TCG reads as 0: a failed op (EIO), counted by errno, and no TSC series (never a 0)."""
    loaded_here = cpu_driver_in("msr")
    try:
        exp = Exporter(tmp_path / "exporter-msr.log", (), EXPORTER_PORT + 2, "--backend", "msr")
        try:
            text = poll("EIO in the batch errors", lambda: 'errno="EIO"' in (t := exp._ready()) and t, 30)
        finally:
            assert exp.stop() == 0
        got = _series(text)
        assert 'backend="msr"' in got["msrctl_exporter_info"][0][0]
        cpus = {labels.split('cpu="')[1].split('"')[0] for labels, _ in got["msr_cpu_info"]}
        assert cpus == {str(c) for c in online_cpus()}
        assert "msr_cpu_tsc_cycles_total" not in got
        assert got["msrctl_exporter_batch_errors_total"][0][1] >= len(online_cpus())
        assert "msrctl: warning: using the kernel's msr driver" in exp.log.read_text()
    finally:
        cpu_driver_out("msr", loaded_here)
