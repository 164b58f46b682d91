#!/usr/bin/env python3
"""Boot Debian's kernel under QEMU once and test the built .debs end to end
inside it (tests/deb/test_deb_e2e.py via tests/deb/run.sh), then check the
guest's kernel log for oopses and warnings.  `make test-deb` builds the .debs
first (`make deb`); they are never installed on the host.

    python tests/deb/e2e.py [--kernel VER] [--cpus N] [pytest args for the guest...]

Prints a closing 'deb: N passed, N failed, N skipped' line; exit status 0 only
when every test passed and the kernel log is clean.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vm
from suite import junit_counts

REPO = vm.REPO


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", help="kernel version (default: newest with headers)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--debs", type=Path, default=REPO / "build" / "deb", help="the .debs, .dsc and .changes")
    ap.add_argument(
        "--upgrade-debs", type=Path, default=REPO / "build" / "deb-upgrade", help="the newer release's .debs"
    )
    ap.add_argument(
        "--timeout",
        type=int,
        default=5400,
        help="backstop for the whole guest; each step has its own limit with its own message (test_deb_e2e.py)",
    )
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    kernel = args.kernel or vm.default_kernel()
    results = args.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    for name in ("deb.xml", "deb-dmesg.txt", "deb-timing.json"):
        (results / name).unlink(missing_ok=True)
    for where, make in ((args.debs, "make deb"), (args.upgrade_debs, "make deb-upgrade")):
        if not list(where.glob("*.deb")):
            print(f"e2e.py: no .debs in {where}; run {make}", file=sys.stderr)
            return 1

    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    guest_cmd = (
        f"MSRDRV_DEB_DIR={shlex.quote(str(args.debs.resolve()))} "
        f"MSRDRV_DEB_UPGRADE_DIR={shlex.quote(str(args.upgrade_debs.resolve()))} tests/deb/run.sh {shlex.join(extra)}"
    )
    t0 = time.monotonic()
    rc = vm.boot(guest_cmd, kernel, cpus=args.cpus, results=results, timeout=args.timeout)
    took = time.monotonic() - t0

    problems = vm.dmesg_problems(results / "deb-dmesg.txt")
    for line in problems:
        print(f"e2e.py: guest kernel log: {line}", file=sys.stderr)
    passed, failed, skipped = junit_counts(results / "deb.xml")
    try:
        timing = json.loads((results / "deb-timing.json").read_text())
    except (OSError, ValueError):
        timing = {}
    steps = ", ".join(f"{k[:-2]} {v} s" for k, v in timing.items() if k.endswith("_s"))
    print(f"e2e.py: kernel {kernel}, boot + package test {took:.1f} s; in the guest: {steps or 'no step timed'}")
    print(f"e2e.py: guest kernel log {'clean' if not problems else f'has {len(problems)} bad lines'}")
    if rc != 0 and not failed:
        failed = 1  # the guest crashed or the run broke before pytest reported
    print(f"deb: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if rc == 0 and not problems and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
