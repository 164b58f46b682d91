"""tests/vm.py keeps a redirected log whole although QEMU truncates its stdout and stderr.

QEMU opens its console chardevs as /proc/self/fd/1 and /2 with O_TRUNC.  A
stand-in for vng does the same here, then runs the --exec line, so the
harness is tested without booting a guest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_VNG = """\
import os, subprocess, sys
line = sys.argv[sys.argv.index("--exec") + 1]
for fd in (1, 2):  # what QEMU's chardev file backend does with path=/proc/self/fd/N
    new = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_TRUNC)
    os.dup2(new, fd)
    os.close(new)
os.write(1, b"guest console\\n")
sys.exit(subprocess.run(["sh", "-c", line]).returncode)
"""

DRIVER = """\
import sys
sys.path.insert(0, sys.argv[1])
import vm
vm.vng_binary = lambda: sys.argv[2]
print("stage before the boot", flush=True)
print("stderr before the boot", file=sys.stderr, flush=True)
sys.exit(vm.boot("echo guest command", "0.0-test", results=__import__("pathlib").Path(sys.argv[3])))
"""


def test_a_redirected_log_keeps_what_came_before_the_guest(tmp_path: Path) -> None:
    vng = tmp_path / "vng"
    vng.write_text(f"#!{sys.executable}\n{FAKE_VNG}")
    vng.chmod(0o755)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("w") as o, err.open("w") as e:
        rc = subprocess.run(
            [sys.executable, "-c", DRIVER, str(ROOT / "tests"), str(vng), str(tmp_path / "results")],
            stdout=o, stderr=e, check=False, timeout=60,
        ).returncode  # fmt: skip
    assert rc == 0
    assert out.read_text().splitlines() == ["stage before the boot", "guest console", "guest command"]
    assert err.read_text().splitlines()[0] == "stderr before the boot"


HUNG_VNG = """\
import re, sys
opts = next(a for a in sys.argv if a.startswith("--qemu-opts="))
path = re.search(r"chardev file,id=kcons,path=(\\S+)", opts).group(1)
with open(path, "w") as f:  # what the guest kernel's hvc0 console would hold
    f.write("[  100.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [python3:512]\\n")
sys.exit(0)  # the command never ran: no exit status
"""


def test_a_guest_that_never_reports_shows_its_kernel_console(tmp_path: Path) -> None:
    """The guest's kernel console goes to a file (warnings and worse): when no exit status
    comes back, its last lines are printed, and the whole file stays in results/console.log."""
    vng = tmp_path / "vng"
    vng.write_text(f"#!{sys.executable}\n{HUNG_VNG}")
    vng.chmod(0o755)
    r = subprocess.run(
        [sys.executable, "-c", DRIVER, str(ROOT / "tests"), str(vng), str(tmp_path / "results")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert r.returncode == 125, r.stderr
    assert "reported no exit status" in r.stderr
    assert "soft lockup - CPU#1 stuck for 22s" in r.stderr
    assert "soft lockup" in (tmp_path / "results" / "console.log").read_text()
