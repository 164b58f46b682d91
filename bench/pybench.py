"""In-guest: the Python library against C for the same 32-read batch, and
CLI start-up against the interpreter's own and against importing typer alone.

One run is one block of bench/run.py; it prints one JSON object.  Run as root
in the benchmark guest (bench/guest.sh) with MSRBENCH_LIB pointing at
msrbench.c built as a shared object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REGS = [0x10, 0x1B, 0x277, 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000084, 0xC0000103]
WARMUP_NS = 500_000_000  # untimed, as msrbench.c's pairs: TCG's caches settle on this workload


def library(reps: int) -> dict[str, Any]:
    """Median ns of one prebuilt 32-read batch, four ways interleaved rep by
    rep in rotating order: Device.submit (after which the values are in the
    batch's buffer, as in C); submit plus the 32 values in one call (a numpy
    array when numpy is there, else a list); the same ioctl from C on the
    same buffers; and a bare fcntl.ioctl from Python, the interpreter's own
    floor for one call into the kernel."""
    import fcntl

    from cffi import FFI

    from msrctl.device import abi
    from msrctl.device.msrdrv import Batch, Device

    ffi = FFI()
    ffi.cdef("unsigned long long msrbench_submit_ns(int fd, void *hdr);")
    lib = ffi.dlopen(os.environ["MSRBENCH_LIB"])
    os.sched_setaffinity(0, {0})
    clock = time.perf_counter_ns
    try:
        import numpy  # noqa: F401

        results = "numpy"
    except ImportError:
        results = "list"
    with Device() as dev:
        batch = Batch(32)
        for i in range(32):
            batch.read(REGS[i % 8], 0)
        arg = ffi.cast("void *", abi.address(batch._hdr))  # the C side submits exactly the buffers Python does
        fetch = batch.array if results == "numpy" else batch.values
        fd, req, buf = dev.fd, abi.IOC_BATCH, batch._hdr_buf

        def submit_once() -> int:
            t0 = clock()
            dev.submit(batch)
            return clock() - t0

        def fetch_once() -> int:
            t0 = clock()
            dev.submit(batch)
            fetch()
            return clock() - t0

        def c_once() -> int:
            ns: int = lib.msrbench_submit_ns(fd, arg)
            if not ns:
                raise SystemExit("pybench: the C submit failed")
            return ns

        def floor_once() -> int:
            t0 = clock()
            fcntl.ioctl(fd, req, buf)
            return clock() - t0

        arms = [submit_once, fetch_once, c_once, floor_once]
        start = clock()
        while clock() - start < WARMUP_NS:
            for arm in arms:
                arm()
        times: list[list[int]] = [[] for _ in arms]
        for r in range(reps):
            for k in range(len(arms)):
                j = (r + k) % len(arms)
                times[j].append(arms[j]())
        batch.check()
        if len(fetch()) != 32:
            raise SystemExit("pybench: the library returned the wrong number of values")
    py, with_values, c, floor = (statistics.median(t) for t in times)
    return {"python_ns": py, "values_ns": with_values, "c_ns": c, "floor_ns": floor, "results": results}


def run_timed(cmd: list[str], env: dict[str, str], expect: int = 0) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of cmd, which
    must exit with status expect."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if expect else None, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != expect:
        raise SystemExit(f"pybench: {' '.join(cmd)} exited {proc.returncode}, not {expect}")
    return wall, usage.ru_utime + usage.ru_stime


def startup(runs: int, stacks: dict[str, str], warm: bool, msrctl_rc: int = 0) -> dict[str, dict[str, Any]]:
    """Least wall and CPU seconds of `msrctl read 0x10`, of `python3 -c pass` and of
    `python3 -c "import typer"` on each Python stack (name -> interpreter), with
    msrctl's bytecode compiled first, as an installed package has it.

    A start-up under TCG depends on what ran just before it: right after the
    PyPI stack's msrctl, `python3 -c pass` took 2-4x its usual CPU time.  So
    each stack's commands run on their own, interleaved run by run, after one
    untimed `-c pass` of that stack (two when warm: the guest's first block
    also has a cold page cache), and each command's fastest run counts: what
    slows a start-up here only ever adds time.  msrctl_rc: the exit status
    msrctl must give (on a host without the module: 5, no device)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for python in stacks.values():
        # PYTHONDONTWRITEBYTECODE may be set: compile explicitly.  In the guest the tree is
        # read-only and this fails, but the host compiled it before the guest booted.
        subprocess.run([python, "-m", "compileall", "-q", str(REPO / "msrctl")], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    groups: dict[str, dict[str, list[str]]] = {
        name: {
            "python_pass": [python, "-c", "pass"],
            "python_typer": [python, "-c", "import typer"],
            "msrctl_read": [python, "-m", "msrctl", "read", "0x10"],
        }
        for name, python in stacks.items()
    }
    rdmsr = shutil.which("rdmsr")
    if rdmsr and not msrctl_rc:
        groups["msr-tools"] = {"rdmsr": [rdmsr, "0x10"]}
    out: dict[str, dict[str, Any]] = {}
    for name, cmds in groups.items():
        first = next(iter(cmds.values()))
        for _ in range(1 + warm):
            run_timed(first, env)
        times: dict[str, list[tuple[float, float]]] = {what: [] for what in cmds}
        for _ in range(runs):
            for what, cmd in cmds.items():
                times[what].append(run_timed(cmd, env, msrctl_rc if what == "msrctl_read" else 0))
        out[name] = {}
        for what, v in times.items():
            out[name][f"{what}_s"] = min(w for w, _ in v)
            out[name][f"{what}_cpu_s"] = min(c for _, c in v)
            out[name][f"{what}_runs"] = v
    return out


def stacks_from_env() -> dict[str, str]:
    """MSRDRV_BENCH_STACKS: 'name=/path/to/python ...' (default: this interpreter)."""
    spec = os.environ.get("MSRDRV_BENCH_STACKS", "")
    pairs = [item.split("=", 1) for item in spec.split()]
    return {k: v for k, v in pairs if Path(v).exists()} or {"default": sys.executable}


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    warm = len(sys.argv) > 3 and sys.argv[3] == "warm"
    print(json.dumps({"library_read32": library(reps), "startup": startup(runs, stacks_from_env(), warm)}))


if __name__ == "__main__":
    main()
