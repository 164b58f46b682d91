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


# --- the CPU model: --model, or this machine's (issue 27) ------------------------------------------

SKX_TRL = "0x1c1c1e1e20222224"  # 36, 34, 34, 32, 30, 30, 28, 28
SKX_TRL1 = "0x1c1a18120e0a0604"  # each bucket's active cores: 4, 6, 10, 14, 18, 24, 26, 28


def write_cpuinfo(env: dict[str, str], vendor: str, family: int, model: int) -> None:
    proc = Path(env["MSRCTL_SYSROOT"]) / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "cpuinfo").write_text(
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nstepping\t: 4\n\n"
    )


def test_turbo_buckets_take_their_core_counts_from_the_model(env: dict[str, str]) -> None:
    """SDM vol. 4 (Skylake-SP): MSR_TURBO_RATIO_LIMIT1 holds each bucket's active-core count."""
    res = msrctl(env, "decode", "0x1ad", SKX_TRL, "--model", "intel:6:0x55", "--with", f"0x1ae={SKX_TRL1}")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "  RATIO_1C    7:0  0x24  bucket 0: up to 4 active cores: 36 x 100 MHz = 3600 MHz" in lines
    assert "  RATIO_8C  63:56  0x1c  bucket 7: up to 28 active cores: 28 x 100 MHz = 2800 MHz" in lines
    assert lines[-1] == "  (model: Skylake-SP, Cascade Lake, Cooper Lake (intel:0x6:0x55))"
    res = msrctl(env, "decode", "0x1ae", SKX_TRL1, "--model", "intel:6:0x55", "--json")
    fields = json.loads(res.stdout)[0]["fields"]
    assert [f["value"] for f in fields] == [4, 6, 10, 14, 18, 24, 26, 28]  # counts, not ratios
    res = msrctl(env, "decode", "0x1ad", SKX_TRL, "--model", "intel:6:0x3f")  # Haswell-EP: byte n is n+1 cores
    assert "  RATIO_1C    7:0  0x24  1 core active: 36 x 100 MHz = 3600 MHz" in res.stdout.splitlines()


def test_a_given_value_says_which_model_it_assumed(env: dict[str, str]) -> None:
    write_cpuinfo(env, "GenuineIntel", 6, 0x8F)
    res = msrctl(env, "decode", "0x619", "0x1000", "--units", "0xa0e03")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert "250 mJ" in lines[1]  # Sapphire Rapids: 2^-14 J per count, not 15.3 uJ
    assert lines[-1] == (
        "  (model: Sapphire Rapids (intel:0x6:0x8f:4), assumed (this machine's); "
        "give --model VENDOR:FAMILY:MODEL for another)"
    )
    res = msrctl(env, "decode", "0x619", "0x1000", "--units", "0xa0e03", "--model", "intel:6:0x55")
    assert "62.67 mJ" in res.stdout and "assumed" not in res.stdout  # Skylake-SP: 15.3 uJ per count
    rec = json.loads(msrctl(env, "decode", "0x619", "0x1000", "--units", "0xa0e03", "--json").stdout)[0]
    assert rec["context"]["model"] == {"cpu": "intel:0x6:0x8f:4", "name": "Sapphire Rapids", "known": True,
                                       "assumed": True}  # fmt: skip


def test_tcc_offset_and_cstate_limit_by_model(env: dict[str, str]) -> None:
    res = msrctl(env, "decode", "0x1a2", "0x1a64100d", "--model", "intel:6:0x9e", "--with", "0xce=0x40000000")
    lines = res.stdout.splitlines()
    # 6 bits of offset (turbostat tcc_offset_bits): 0x1a = 26 below TjMax 100 -> 74 C
    assert any("TCC_OFFSET" in line and ": 26 C (6 bits" in line for line in lines)
    assert any("TCC_ACTIVATION" in line and "74 C (TjMax 100 C - offset 26 C)" in line for line in lines)
    res = msrctl(env, "decode", "0x1a2", "0x1a64100d", "--model", "intel:6:0x9e", "--with", "0xce=0")
    assert "MSR_PLATFORM_INFO reads 0" in res.stdout  # the switch is unknown: no made-up offset
    res = msrctl(env, "decode", "0xe2", "0x1e008003", "--model", "intel:6:0x55")
    assert "deepest package C-state allowed: 3 (pc6r)" in res.stdout  # SKX's table: code 3 is PC6 retention
    res = msrctl(env, "decode", "0xe2", "0x1e008003", "--model", "intel:6:0x9e")
    assert "deepest package C-state allowed: 3 (pc6)" in res.stdout  # Haswell's table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "intel:6"], "malformed CPU 'intel:6': it needs a vendor, a family and a model"),
        (["--model", "arm:8:0xd0c"], "unknown CPU vendor 'arm'"),
        (["--with", "0x1ae"], "malformed --with '0x1ae': it needs MSR=VALUE"),
        (["--with", "0x611=5"], "--with 0x611: nothing to take from it"),
        (["--with", "0x1ae=0xzz"], "malformed --with value '0xzz'"),
    ],
)
def test_model_and_with_errors(env: dict[str, str], args: list[str], message: str) -> None:
    res = msrctl(env, "decode", "0x1ad", SKX_TRL, *args)
    assert res.returncode == errors.USAGE and one_error(res).startswith(message)
