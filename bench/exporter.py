#!/usr/bin/env python3
"""The cost of one `msrctl exporter` scrape: the exporter's CPU time and the wall time per
scrape over HTTP, and the hardware reads (msrdrv batches) per scrape.

On the host: builds msrdrv, boots the guest once and runs this script inside it
(`--guest`) for each Python stack (Debian 12's packages, the latest PyPI
releases); writes bench/results/exporter.json and exporter.md.  In the guest
(as root; the cost does not depend on who reads): starts the exporter with
--interval 1ms, so that every scrape reads the hardware, fetches /metrics
SCRAPES times one after another, and takes the exporter's CPU time from
/proc/PID/stat before and after.  Figures come from QEMU TCG emulation, not hardware.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results"
PORT = 19840
STACKS = {"debian": "/usr/bin/python3", "pypi": str(REPO / ".venv" / "bin" / "python")}


# --- in the guest -------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """utime + stime of pid, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


def measure(python: str, scrapes: int) -> dict[str, Any]:
    """One exporter under python: per-scrape CPU, wall time and batches."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    argv = [python, "-m", "msrctl", "exporter", "--listen", f"127.0.0.1:{PORT}", "-i", "1ms"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{PORT}/metrics"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                text = urllib.request.urlopen(url, timeout=30).read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError(f"the exporter did not start: {why}") from None
                time.sleep(0.2)
        for _ in range(5):  # warm: imports done, caches filled
            text = urllib.request.urlopen(url, timeout=30).read().decode()
        reads0, scrapes0 = _value(text, "msrctl_exporter_reads_total"), _value(text, "msrctl_exporter_scrapes_total")
        cpu0 = _cpu_s(proc.pid)
        walls, collects, ioctls = [], [], []
        for _ in range(scrapes):
            t = time.perf_counter()
            text = urllib.request.urlopen(url, timeout=30).read().decode()
            walls.append(time.perf_counter() - t)
            collects.append(_value(text, "msrctl_exporter_scrape_duration_seconds"))
            ioctls.append(_value(text, "msrctl_exporter_read_duration_seconds"))
        cpu = _cpu_s(proc.pid) - cpu0
        reads = _value(text, "msrctl_exporter_reads_total") - reads0
        served = _value(text, "msrctl_exporter_scrapes_total") - scrapes0
        ops = _value(text, "msrctl_exporter_batch_ops")
        version = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('prometheus_client'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    finally:
        proc.terminate()
        proc.wait(60)
    ms = sorted(w * 1e3 for w in walls)
    return {
        "python": python,
        "prometheus_client": version,
        "scrapes": scrapes,
        "bytes": len(text),
        "cpu_ms_per_scrape": round(cpu * 1e3 / scrapes, 3),
        "wall_ms_median": round(statistics.median(ms), 3),
        "wall_ms_p90": round(ms[int(0.9 * (len(ms) - 1))], 3),
        "collect_ms_median": round(statistics.median(collects) * 1e3, 3),
        "ioctl_us_median": round(statistics.median(ioctls) * 1e6, 1),
        "batches_per_scrape": reads / served,
        "ops_per_batch": int(ops),
    }


def guest(out: Path, scrapes: int) -> int:
    runs = {name: measure(py, scrapes) for name, py in STACKS.items() if Path(py).exists()}
    data = {
        "date": datetime.date.today().isoformat(),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "emulated": "QEMU 7.2 TCG, 2 vCPUs on a 2-core host (no telemetry MSR is implemented: "
        "each batch is an RDTSC per CPU)",
        "runs": runs,
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    return 0


# --- on the host -------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    """bench/results/exporter.md from exporter.json."""
    rows = [
        "| Python stack | prometheus_client | exporter CPU per scrape | wall per scrape (median, p90) "
        "| collect() | ioctl | batches per scrape | ops per batch | bytes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in data["runs"].items():
        rows.append(
            f"| {name} (`{r['python']}`) | {r['prometheus_client']} | {r['cpu_ms_per_scrape']:.2f} ms "
            f"| {r['wall_ms_median']:.2f} ms, {r['wall_ms_p90']:.2f} ms | {r['collect_ms_median']:.2f} ms "
            f"| {r['ioctl_us_median']:.0f} µs | {r['batches_per_scrape']:.2f} | {r['ops_per_batch']} | {r['bytes']} |"
        )
    scrapes = next(iter(data["runs"].values()))["scrapes"] if data["runs"] else 0
    return (
        "# msrctl exporter: the cost of a scrape\n\n"
        f"{data['date']}, kernel {data['kernel']}, {data['cpus']} CPUs. **Emulated**: {data['emulated']}. "
        f"{scrapes} scrapes over HTTP, one after another, each reading the hardware (`--interval 1ms`); "
        "CPU is the exporter process's user + system time (/proc/PID/stat) over them, divided by the scrapes. "
        "Produced by `bench/exporter.py`.\n\n" + "\n".join(rows) + "\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guest", metavar="OUT", help="(in the guest) measure and write the JSON here")
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--results", default=str(REPO / "results"), help="the guest's results directory")
    args = ap.parse_args()
    if args.guest:
        return guest(Path(args.guest), args.scrapes)
    sys.path.insert(0, str(REPO / "tests"))
    import vm

    kernel = vm.default_kernel()
    subprocess.run(["make", "-s", "-C", str(REPO / "dkms"), f"KVER={kernel}"], check=True)
    results = Path(args.results).resolve()
    out = results / "exporter-bench.json"
    command = (
        "ip link set lo up; insmod dkms/msrdrv.ko && udevadm settle && "
        f"python3 bench/exporter.py --guest {out} --scrapes {args.scrapes}"
    )
    rc = vm.boot(command, kernel, cpus=2, results=results)
    if rc != 0:
        print(f"exporter bench: the guest run failed (exit {rc})", file=sys.stderr)
        return 1
    data = json.loads(out.read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "exporter.json").write_text(json.dumps(data, indent=2) + "\n")
    (OUT / "exporter.md").write_text(render(data))
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
