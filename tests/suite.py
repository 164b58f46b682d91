#!/usr/bin/env python3
"""Build msrdrv for Debian's kernel, boot that kernel under QEMU once and run
the in-guest suite (tests/guest) against the real module; then check the
guest's kernel log for oopses and warnings.

    python tests/suite.py [--kernel VER] [--cpus N] [pytest args for the guest...]

A debug kernel (tests/debug/run.sh): --kdir TREE builds the module against
that kernel build tree, --kernel-image boots it, --gcov DIR builds the module
with coverage and has the guest copy its .gcda files to DIR, --debug-dmesg
also flags the sanitizers' and lockdep's reports.

Prints a closing 'guest: N passed, N failed, N skipped' line; exit status 0
only when every guest test passed and the kernel log is clean.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm

REPO = vm.REPO


def build_module(kernel: str, kdir: Path | None = None, gcov: bool = False) -> None:
    make = ["make", "-s", "-C", str(REPO / "dkms"), f"KVER={kernel}", "MSRDRV_WERROR=1"]
    if kdir:
        make.append(f"KDIR={kdir}")
    if gcov:
        # Objects of another build would keep their flags: start clean, and
        # drop the counts of an earlier run.
        subprocess.run([*make, "clean"], check=True, stdout=subprocess.DEVNULL)
        for old in (REPO / "dkms").glob("*.gcda"):
            old.unlink()
        make.append("GCOV_PROFILE=y")
    subprocess.run(make, check=True)


def junit_counts(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a pytest junit file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 0, 0
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return tests - failed - skipped, failed, skipped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", help="kernel version (default: newest with headers)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter for the guest suite")
    ap.add_argument("--kdir", type=Path, help="build the module against this kernel build tree")
    ap.add_argument("--kernel-image", metavar="PATH", help="boot this bzImage or kernel build tree")
    ap.add_argument("--gcov", type=Path, metavar="DIR", help="module with coverage; the guest saves it in DIR")
    ap.add_argument("--debug-dmesg", action="store_true", help="flag sanitizer and lockdep reports too")
    ap.add_argument("--timeout", type=int, default=3600, help="limit for the whole guest run (s)")
    ap.add_argument("--append", action="append", default=[], help="extra kernel command-line option")
    # Several guests sharing one build (tests/debug/run.sh's shards): build
    # once, then boot each without rebuilding the module under the others.
    build = ap.add_mutually_exclusive_group()
    build.add_argument("--build-only", action="store_true", help="build the module, boot nothing")
    build.add_argument("--no-build", action="store_true", help="boot with the module already built")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.kdir:
        kernel = (args.kdir / "include/config/kernel.release").read_text().strip()
    else:
        kernel = args.kernel or vm.default_kernel()
    results = args.results.resolve()
    for name in ("guest.xml", "dmesg.txt"):
        (results / name).unlink(missing_ok=True)

    t0 = time.monotonic()
    python = args.python or sys.executable
    if not args.no_build:
        build_module(kernel, args.kdir, gcov=bool(args.gcov))
        # The guest's root is read-only: byte-compile here, or every guest
        # process compiles msrctl again from source, under emulation.
        subprocess.run([python, "-m", "compileall", "-q", str(REPO / "msrctl"), str(REPO / "tests")], check=False)
    t_build = time.monotonic() - t0
    if args.build_only:
        print(f"suite.py: module built for {kernel} in {t_build:.1f} s")
        return 0
    extra = shlex.join(args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args)
    # Debian's python3 (typer 0.7, cffi 1.15): the stack the msrctl package
    # runs on, and one that starts in about a second in the guest, where the
    # venv's interpreter takes many (its files come over 9p).  The latest
    # PyPI stack is covered by the host suite.
    guest_cmd = f"MSRDRV_PYTHON={python} MSRCTL_PYTHONS={python} tests/guest/run.sh {extra}"
    if args.gcov:
        args.gcov.mkdir(parents=True, exist_ok=True)
        guest_cmd = f"MSRDRV_GCOV_OUT={shlex.quote(str(args.gcov.resolve()))} {guest_cmd}"
    rc = vm.boot(
        guest_cmd,
        kernel,
        cpus=args.cpus,
        results=results,
        timeout=args.timeout,
        append=args.append,
        kernel_image=args.kernel_image,
    )
    t_total = time.monotonic() - t0

    bad = vm.DMESG_DEBUG_BAD if args.debug_dmesg else vm.DMESG_BAD
    problems = vm.dmesg_problems(results / "dmesg.txt", bad)
    for line in problems:
        print(f"suite.py: guest kernel log: {line}", file=sys.stderr)
    passed, failed, skipped = junit_counts(results / "guest.xml")
    print(f"suite.py: kernel {kernel}, module build {t_build:.1f} s, boot + guest suite {t_total - t_build:.1f} s")
    print(f"suite.py: guest kernel log {'clean' if not problems else f'has {len(problems)} bad lines'}")
    if rc == 125 and not failed:
        failed = 1
    print(f"guest: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if rc == 0 and not problems and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
