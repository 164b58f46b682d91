#!/usr/bin/env python3
"""Boot Debian's kernel under QEMU (virtme-ng, TCG) and run a command in it.

The guest sees the host's root file system read-only with copy-on-write
overlays (/etc, /tmp, /var, ...), so it can install files and add users
without touching the host; `results` is the one directory shared read-write.

    python tests/vm.py [--kernel VER] [--cpus N] [--results DIR] -- CMD...

--kernel-image boots another kernel than /boot/vmlinuz-VER: a bzImage or a
kernel build tree (virtme-ng then takes the tree's own modules); VER is then
only what the guest is told (MSRDRV_KVER).

Exit status: the command's, or 125 when the guest never reported one.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# What the test run treats as a kernel bug in the guest's log.
DMESG_BAD = re.compile(r"\bBUG:|\bOops\b|\bWARNING:|general protection|Call Trace:|Kernel panic")
# The same for a debug kernel (tests/debug): the sanitizers' and lockdep's own
# words too, in case a report comes without one of the lines above.
DMESG_DEBUG_BAD = re.compile(
    DMESG_BAD.pattern + r"|BUG: KASAN|UBSAN:|KFENCE:|possible circular locking|possible recursive locking"
    r"|suspicious RCU usage|sleeping function called from invalid context|inconsistent lock state"
    r"|\bODEBUG:|lock held when returning to user space"
)


def kernel_versions() -> list[str]:
    """Kernels that have both an image in /boot and headers to build against."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        ver = image.name[len("vmlinuz-") :]
        if Path(f"/lib/modules/{ver}/build/Makefile").exists():
            found.append(ver)
    return sorted(found, key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)])


def default_kernel() -> str:
    vers = kernel_versions()
    if not vers:
        sys.exit("vm.py: no /boot/vmlinuz-* with matching headers; run tests/bootstrap.sh (installs linux-image-amd64)")
    return vers[-1]


def vng_binary() -> str:
    here = Path(sys.executable).parent / "vng"
    found = str(here) if here.exists() else shutil.which("vng")
    if not found:
        sys.exit("vm.py: virtme-ng (vng) not found; run tests/bootstrap.sh")
    return found


def boot(
    command: str,
    kernel: str,
    cpus: int = 2,
    memory: str = "2G",
    results: Path | None = None,
    timeout: int = 1800,
    append: list[str] | None = None,
    pin: bool = False,
    kernel_image: str | None = None,
) -> int:
    """Run `command` (a shell line) as root in a fresh guest; returns its exit status.

    pin: vng pins vCPU n to host CPU n modulo the host's CPUs (for benchmarks).
    kernel_image: boot this bzImage or kernel build tree instead of /boot/vmlinuz-`kernel`."""
    results = (results or REPO / "results").resolve()
    results.mkdir(parents=True, exist_ok=True)
    rc_file = results / f"guest-rc.{os.getpid()}"  # several guests may share results/
    rc_file.unlink(missing_ok=True)
    wrapped = (
        f"cd {shlex.quote(str(REPO))}; "
        f"export MSRDRV_RESULTS={shlex.quote(str(results))} MSRDRV_KVER={shlex.quote(kernel)}; "
        f"({command}); echo $? > {shlex.quote(str(rc_file))}"
    )
    argv = [
        vng_binary(),
        "--run",
        kernel_image or f"/boot/vmlinuz-{kernel}",
        "--disable-kvm",  # no KVM on the build machines: TCG emulation
        "--cpus",
        str(cpus),
        "--memory",
        memory,
        "--rwdir",
        str(results),
        "--exec",
        wrapped,
    ]
    # A second kernel console, warnings and worse, into a file (vng's serial console
    # goes to /dev/null, and the 8250 driver has one console only): a virtio console on
    # a bus of its own.  When a guest hangs, its soft-lockup, RCU-stall or hung-task
    # lines survive it.
    console = results / f"console.{os.getpid()}.log"
    kept = results / "console.log"  # where the console is kept after the guest
    argv += [
        f"--qemu-opts=-device virtio-serial-pci,id=kcon -chardev file,id=kcons,path={console} "
        "-device virtconsole,bus=kcon.0,chardev=kcons",
        "--append",
        "console=hvc0",
        "--append",
        "loglevel=5",
    ]
    for a in append or []:
        argv += ["--append", a]
    if pin:
        argv.append("--pin")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    start = time.monotonic()
    try:
        if not run_piped(argv, env, timeout):
            print(f"vm.py: guest did not finish within {timeout} s", file=sys.stderr)
            _console_tail(console, kept)
            return 124
        print(f"vm.py: guest ran for {time.monotonic() - start:.1f} s", file=sys.stderr)
        try:
            return int(rc_file.read_text().strip())
        except (OSError, ValueError):
            print("vm.py: the guest reported no exit status (crashed or did not boot)", file=sys.stderr)
            _console_tail(console, kept)
            return 125
    finally:
        rc_file.unlink(missing_ok=True)
        if console.exists():
            console.replace(kept)


def _console_tail(path: Path, kept: Path, lines: int = 60) -> None:
    """The last lines the guest kernel printed on its console (warnings and worse); the whole
    file is kept as `kept`."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    print(f"vm.py: the guest kernel's console, last {len(tail)} lines (all in {kept}):", file=sys.stderr)
    for line in tail:
        print(f"  {line}", file=sys.stderr)


def _pump(src: Any, dst: Any) -> None:
    for chunk in iter(lambda: src.read1(65536), b""):
        dst.write(chunk)
        dst.flush()


def run_piped(argv: list[str], env: dict[str, str], timeout: float) -> bool:
    """Run argv with its output passed on through pipes; False if it outlived timeout.

    QEMU opens its console chardevs as /proc/self/fd/1 and /2 with O_TRUNC: given
    our own stdout, it would empty a redirected log (`make test > log`) of every
    stage before the boot.  Through a pipe, the truncation has nothing to cut."""
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stdout.buffer), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr.buffer), daemon=True),
    ]
    for t in pumps:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # QEMU too, not only vng
        proc.wait()
        return False
    finally:
        for t in pumps:
            t.join(timeout=10)
    return True


def dmesg_problems(path: Path, bad: re.Pattern[str] = DMESG_BAD) -> list[str]:
    """Lines of a saved guest dmesg that show a kernel bug (DMESG_DEBUG_BAD for a debug kernel)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [f"{path}: missing (the guest did not save its kernel log)"]
    return [line for line in text.splitlines() if bad.search(line)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", help="kernel version (default: newest with headers)")
    ap.add_argument("--kernel-image", metavar="PATH", help="boot this bzImage or kernel build tree instead")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--memory", default="2G")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--append", action="append", default=[], help="extra kernel command-line option")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command to run in the guest after --")
    return boot(
        shlex.join(cmd),
        args.kernel or default_kernel(),
        args.cpus,
        args.memory,
        args.results,
        args.timeout,
        args.append,
        kernel_image=args.kernel_image,
    )


if __name__ == "__main__":
    sys.exit(main())
