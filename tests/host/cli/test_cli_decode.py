"""`msrctl decode` without a device: VALUE decoding, text and JSON, error paths and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msrctl import errors

ROOT = Path(__file__).resolve().parents[3]
# PL1 15 W over 28 s, enabled and clamped; PL2 25 W over 2.441 ms, enabled; locked (units 0xa0e03)
PKG_LIMIT = "0x804280c800dd8078"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No device (an empty sysroot): decode falls back to what the options give."""
    e = dict(os.environ)
    e.update(
        PYTHONPATH=str(ROOT),
        MSRCTL_DEVICE=str(tmp_path / "root/dev/msrdrv"),
        MSRCTL_SYSROOT=str(tmp_path / "root"),
    )
    e.pop("MSRCTL_DEBUG", None)
    return e


def msrctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msrctl", *args], capture_output=True, text=True, env=env, check=False)


def one_error(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("msrctl: error: ") and "Traceback" not in res.stderr, res.stderr
    return lines[0][len("msrctl: error: ") :]


def test_decode_a_value_with_units(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "MSR_PKG_POWER_LIMIT", PKG_LIMIT, "--units", "0xa0e03")
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [
        "MSR_PKG_POWER_LIMIT (0x610) = 0x804280c800dd8078",
        "  PL1         14:0  0x78  long-term limit: 15 W",
        "  PL1_EN        15  1     PL1 enforced: yes",
        "  PL1_CLAMP     16  1     may go below the requested P-state for PL1: yes",
        "  PL1_TIME   23:17  0x6e  PL1 averaging window: 28 s (2^14 x 1.75 time units)",
        "  PL2        46:32  0xc8  short-term limit: 25 W",
        "  PL2_EN        47  1     PL2 enforced: yes",
        "  PL2_CLAMP     48  0     may go below the requested P-state for PL2: no",
        "  PL2_TIME   55:49  0x21  PL2 averaging window: 2.441 ms (2^1 x 1.25 time units)",
        "  LOCK          63  1     locked until reset: yes",
    ]


def test_decode_json(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "pkg_power_limit", PKG_LIMIT, "--units", "0xa0e03", "--json")
    assert res.returncode == 0, res.stderr
    (rec,) = json.loads(res.stdout)
    assert (rec["cpu"], rec["msr"], rec["name"], rec["hex"]) == (None, "0x610", "MSR_PKG_POWER_LIMIT", PKG_LIMIT)
    assert rec["context"]["rapl"] == {"watts": 0.125, "joules": 2**-14, "seconds": 2**-10}
    fields = {f["name"]: f for f in rec["fields"]}
    assert (fields["PL1"]["value"], fields["PL1"]["unit"], fields["PL1"]["raw"]) == (15.0, "W", 0x78)
    assert fields["PL1_TIME"]["value"] == pytest.approx(28.0)
    assert fields["LOCK"]["value"] is True and fields["LOCK"]["kind"] == "flag"
    assert rec["implausible"] is None


def test_fields_that_need_context_say_so(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "pkg_power_limit", PKG_LIMIT)  # no --units, no device
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "  PL1         14:0  0x78  long-term limit: needs RAPL units" in lines
    assert lines[-1].startswith("  (RAPL units: MSR_RAPL_POWER_UNIT not read: ")
    assert lines[-1].endswith("; give --units)")
    (rec,) = json.loads(msrctl(env, "decode", "pkg_power_limit", PKG_LIMIT, "--json").stdout)
    assert {f["name"]: f["value"] for f in rec["fields"]}["PL1"] is None
    assert rec["context"]["missing"]["rapl"].endswith("give --units")


def test_temperature_and_ratios(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "IA32_THERM_STATUS", "0x882a0000", "--tjmax", "100")
    assert "  DIGITAL_READOUT         22:16  0x2a  core temperature: 58 C (42 below TjMax 100 C)" in res.stdout
    res = msrctl(env, "decode", "platform_info", "0x1800")
    assert res.stdout.splitlines()[1] == (
        "  MAX_NON_TURBO_RATIO    15:8  0x18  base frequency; the invariant TSC runs at it: 24 x 100 MHz = 2400 MHz"
    )
    res = msrctl(env, "decode", "platform_info", "0x1800", "--bclk", "133.33")
    assert "24 x 133.3 MHz = 3200 MHz" in res.stdout
    res = msrctl(env, "decode", "pkg_c6_residency", "3000000000", "--tsc-mhz", "2000")
    assert "1.5 s at 2000 MHz" in res.stdout


def test_zero_is_flagged_not_decoded(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "MSR_RAPL_POWER_UNIT", "0")
    assert res.returncode == 0
    assert res.stdout.splitlines() == [
        "MSR_RAPL_POWER_UNIT (0x606) = 0x0",
        "  reads 0: not implemented here? (0 is not a plausible value of this register; not decoded)",
    ]
    (rec,) = json.loads(msrctl(env, "decode", "pkg_energy_status", "0", "--json").stdout)
    assert rec["implausible"] == "reads 0: not implemented here?"
    assert all(f["value"] is None for f in rec["fields"])


def test_registers_without_fields(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "IA32_TSC_ADJUST", "5")
    assert res.stdout.splitlines() == [
        "IA32_TSC_ADJUST (0x3b) = 0x5",
        "  no fields in the register table: the raw value is all there is",
    ]
    res = msrctl(env, "decode", "0x123", "5")
    assert (res.returncode, res.stdout.splitlines()[1]) == (0, "  not in the register table: no fields to decode")


def test_registers_lists_units(env: dict[str, str]) -> None:
    res = msrctl(env, "registers", "0x610")
    assert "PL1 14:0 [W], PL1_EN 15, PL1_CLAMP 16, PL1_TIME 23:17 [s]" in res.stdout
    (reg,) = json.loads(msrctl(env, "registers", "0x19c", "--json").stdout)
    assert reg["kinds"]["DIGITAL_READOUT"] == "below_tjmax" and reg["units"]["DIGITAL_READOUT"] == "C"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["apic_bas", "1"], errors.USAGE, "unknown register 'apic_bas': not in the bundled register table; did you"),
        (["apic_base", "zz"], errors.USAGE, "malformed value 'zz': not a number"),
        (["apic_base", "1", "-a"], errors.USAGE, "-a does not apply with VALUE"),
        (["apic_base", "1", "-p", "0,1"], errors.USAGE, "-p 0,1 names several CPUs"),
        (["apic_base", "-a", "-p", "1"], errors.USAGE, "-a and -p conflict"),
        (["pkg_power_limit", "1", "--units", "0"], errors.USAGE, "--units 0 is not a RAPL unit value"),
        (["pkg_power_limit", "1", "--units", "0x"], errors.USAGE, "malformed --units value '0x'"),
        (["therm_status", "1", "--tjmax", "300"], errors.USAGE, "msrctl decode: Invalid value for '--tjmax'"),
        (["apic_base"], errors.NOT_LOADED, "cannot open "),  # live, and no device
    ],
)
def test_errors(env: dict[str, str], args: list[str], code: int, message: str) -> None:
    res = msrctl(env, "decode", *args)
    assert res.returncode == code
    assert one_error(res).startswith(message)
    assert res.stdout == ""


LAZY = """
import sys
from msrctl.cli import main as cli
code = cli.main(sys.argv[1:])
print(code, ",".join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "device"),
    [
        (["decode", "apic_base", "0x900"], False),  # needs no other register
        (["decode", "pkg_power_limit", "1", "--units", "0xa0e03"], False),  # given
        (["decode", "pkg_power_limit", "1"], True),  # tries this machine's MSR_RAPL_POWER_UNIT
    ],
)
def test_decode_opens_the_device_only_for_context(env: dict[str, str], args: list[str], device: bool) -> None:
    res = subprocess.run([sys.executable, "-c", LAZY, *args], capture_output=True, text=True, env=env, check=False)
    loaded = set(res.stderr.splitlines()[-1].split(" ", 1)[1].split(","))
    assert ("msrctl.device.msrdrv" in loaded) == device
    assert "jinja2" not in loaded
