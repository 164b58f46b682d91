#!/usr/bin/env python3
"""`make bench`: boot the test guest with 4 vCPUs, run bench/msrbench.c and
bench/pybench.py there, and write bench/results/results.json, results.md
(jinja2, bench/report.md.j2), results.png (if matplotlib is installed), and
the table into README.md between the bench markers."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import suite  # noqa: E402
import vm  # noqa: E402

OUT = REPO / "bench" / "results"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def ratios(c: dict[str, Any], py: dict[str, Any]) -> dict[str, float]:
    return {
        "read32": c["read32"]["msr_ns"] / c["read32"]["msrdrv_ns"],
        "allcpu": c["allcpu"]["msr_ns"] / c["allcpu"]["msrdrv_ns"],
        "python": py["library_read32_ns"] / c["read32"]["msrdrv_ns"],
        "startup": py["startup"]["msrctl_read_s"] / py["startup"]["python_pass_s"],
    }


def render(data: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO / "bench")),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.md.j2").render(**data)


def plot(data: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sweep = data["c"]["sweep"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.loglog([s["ops"] for s in sweep], [s["ns"] / s["ops"] for s in sweep], marker="o", label="msrdrv batch")
    ax.axhline(data["c"]["read32"]["msr_ns"] / 32, color="red", linestyle="--", label="in-tree msr pread")
    ax.set_xlabel("ops per ioctl")
    ax.set_ylabel("ns per MSR read")
    ax.set_title("Cost per MSR read (QEMU TCG guest)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def update_readme(table: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        readme.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")


def main() -> int:
    kernel = vm.default_kernel()
    suite.build_module(kernel)
    build = REPO / "build" / "bench"
    build.mkdir(parents=True, exist_ok=True)
    exe = build / "msrbench"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-I", str(REPO / "dkms"), "-o", str(exe),
                    str(REPO / "bench" / "msrbench.c")], check=True)  # fmt: skip
    results = REPO / "results"
    rc = vm.boot(
        f"MSRDRV_BENCH_BIN={exe} MSRDRV_PYTHON=/usr/bin/python3 bench/guest.sh", kernel, cpus=4, results=results
    )
    if rc:
        print(f"bench: the guest part failed (exit {rc})", file=sys.stderr)
        return 1
    problems = vm.dmesg_problems(results / "bench-dmesg.txt")
    if problems:
        print("bench: guest kernel log has problems:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    c = json.loads((results / "bench-c.json").read_text())
    py = json.loads((results / "bench-py.json").read_text())
    data = {
        "date": datetime.date.today().isoformat(),
        "kernel": kernel,
        "c": c,
        "py": py,
        "ratios": ratios(c, py),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    table = render(data)
    (OUT / "results.md").write_text(table)
    if plot(data, OUT / "results.png"):
        table += "\n![cost per MSR read](bench/results/results.png)\n"
    update_readme(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
