"""`msrctl power show|set` against the real module, inside the test VM.

QEMU TCG emulates no RAPL: MSR_RAPL_POWER_UNIT reads 0 without faulting.  So
here the commands must say RAPL is absent (exit 4), never show 0 W limits, and
a member's access must follow the power-capping profile.  The arithmetic of
real limits is pinned by tests/host/telemetry/test_power.py.
"""

from __future__ import annotations

import json
import sys

from conftest import Device, as_member, run_many

from msrctl.admin import allowlist

ABSENT = "RAPL absent: MSR_RAPL_POWER_UNIT reads 0 (not implemented here)"


def test_show_and_set_say_rapl_is_absent_here() -> None:
    (code, out, err), (jcode, jout, _), (scode, sout, serr), (pcode, _, perr) = run_many(
        [
            ["power", "show"],
            ["power", "show", "--json"],
            ["power", "set", "--pl1", "50"],
            ["power", "show", "--package", "7"],
        ]
    )
    assert code == 4
    assert out.splitlines() == [f"package 0 (CPU 0): {ABSENT}"]  # once, not once per domain
    assert " W" not in out
    assert err == "msrctl: error: no RAPL power limit could be read (see above)\n"
    assert jcode == 4 and json.loads(jout) == [{"package": 0, "cpu": 0, "absent": ABSENT.split(": ", 1)[1]}]
    assert (scode, sout) == (4, "")
    assert serr.splitlines() == [f"msrctl: error: package 0: {ABSENT}; run on hardware with Intel RAPL"]
    assert pcode == 2 and perr.startswith("msrctl: error: no package 7: this machine's packages are 0")


def test_member_follows_the_power_capping_profile() -> None:
    with Device() as dev:
        allowlist.clear(dev.fd)
        try:
            res = as_member(sys.executable, "-m", "msrctl", "power", "show")
            assert res.returncode == 3, res.stderr
            assert len(res.stderr.splitlines()) == 1 and "refused" in res.stderr
            assert "msrctl allowlist load" in res.stderr
            allowlist.load(dev.fd, allowlist.parse(allowlist.render_profile("power-capping", vendor="intel")))
            # listed: the registers read, and what stops it is the emulator's missing RAPL
            res = as_member(sys.executable, "-m", "msrctl", "power", "show")
            assert res.returncode == 4, res.stderr
            assert res.stdout.splitlines() == [f"package 0 (CPU 0): {ABSENT}"]
            res = as_member(sys.executable, "-m", "msrctl", "power", "set", "--pl1", "40", "--dry-run")
            assert res.returncode == 4 and ABSENT in res.stderr
        finally:
            allowlist.clear(dev.fd)
