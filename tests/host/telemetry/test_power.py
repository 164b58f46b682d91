"""RAPL power-limit arithmetic (msrctl/telemetry/power.py) against values worked out from the
Intel SDM's MSR_RAPL_POWER_UNIT / MSR_PKG_POWER_LIMIT / MSR_PKG_POWER_INFO layouts,
and the `msrctl power` command's parsing and the power-capping profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakecpu import write_sysfs

from msrctl.admin import allowlist
from msrctl.cli.power import _SECONDS, _WATTS, _packages, parse_quantity
from msrctl.decode.units import rapl_window
from msrctl.errors import UsageError
from msrctl.telemetry.power import (
    DOMAINS,
    MASK_ONE,
    MASK_TWO,
    PowerError,
    Request,
    apply,
    encode_watts,
    encode_window,
    plan,
    power_range,
    state,
    with_raw,
)

ROOT = Path(__file__).resolve().parents[3]
UNITS = 0xA0E03  # 1/8 W, 2^-14 J, 2^-10 s
PKG = DOMAINS["package"]
DRAM = DOMAINS["dram"]
# PL1 95 W (760 = 0x2F8) enabled, clamp, window 28 s (Y=14, Z=3: 2^14 * 1.75 / 1024);
# PL2 120 W (960 = 0x3C0) enabled, window 2^1 * 1.25 / 1024 s (Y=1, Z=1)
PL1_WORD = 0x2F8 | 1 << 15 | 1 << 16 | (14 | 3 << 5) << 17
PL2_WORD = 0x3C0 | 1 << 15 | (1 | 1 << 5) << 17
LIMIT = PL2_WORD << 32 | PL1_WORD
# TDP 95 W, min 40 W (320), max 200 W (1600), max window 40 s (Y=15, Z=1: 2^15 * 1.25 / 1024)
INFO = (15 | 1 << 5) << 48 | 1600 << 32 | 320 << 16 | 760


def pkg_state(limit: int = LIMIT, info: int | None = INFO) -> object:
    return state(PKG, UNITS, limit, info)


def test_state_decodes_both_limits_and_the_range() -> None:
    st = pkg_state()
    assert (st.pl1.watts, st.pl1.seconds, st.pl1.enabled, st.pl1.clamp) == (95.0, 28.0, True, True)
    assert st.pl2 is not None
    assert (st.pl2.watts, st.pl2.enabled, st.pl2.clamp) == (120.0, True, False)
    assert st.pl2.seconds == pytest.approx(2.5 / 1024)
    assert not st.locked
    assert st.range == power_range(INFO, st.units)
    assert (st.range.tdp, st.range.min_watts, st.range.max_watts, st.range.max_seconds) == (95.0, 40.0, 200.0, 40.0)


def test_zero_fields_of_power_info_mean_not_specified() -> None:
    rng = power_range(760, state(PKG, UNITS, 0).units)
    assert (rng.tdp, rng.min_watts, rng.max_watts, rng.max_seconds) == (95.0, None, None, None)


def test_absent_rapl_is_an_error_not_zero_watts() -> None:
    with pytest.raises(PowerError) as e:
        state(PKG, 0, 0)
    assert "reads 0" in e.value.why


def test_encode_watts_and_windows() -> None:
    units = pkg_state().units
    assert encode_watts(95, units, "PL1") == 760
    assert encode_watts(95.06, units, "PL1") == 760  # nearest 1/8 W
    assert encode_window(28, units, "w") == 14 | 3 << 5
    assert rapl_window(encode_window(1.0, units, "w"), units.seconds) == 1.0
    # 10 ms is not representable: the nearest window is within one step (<= 12.5 %)
    got = rapl_window(encode_window(0.010, units, "w"), units.seconds)
    assert abs(got - 0.010) / 0.010 <= 0.125
    for bad in (0, -1, 0x8000 / 8):
        with pytest.raises(PowerError):
            encode_watts(bad, units, "PL1")
    with pytest.raises(PowerError, match="windows run from"):
        encode_window(1e9, units, "w")


def test_plan_changes_only_the_requested_fields_and_never_the_lock_bit() -> None:
    st = pkg_state()
    value, mask = plan(st, Request(pl1=100))
    assert mask == 0x7FFF and value == 800
    after = with_raw(st, apply(st.raw, value, mask))
    assert after.pl1.watts == 100 and after.pl1.seconds == 28.0 and after.pl2 == st.pl2
    value, mask = plan(st, Request(pl1=90, pl1_window=1, pl2=150, pl2_window=0.01, enable=True, clamp=False))
    assert mask & ~MASK_TWO == 0 and not mask >> 63
    after = with_raw(st, apply(st.raw | 1 << 62, value, mask))
    assert after.raw >> 62 & 1  # a bit outside the fields survives
    assert (after.pl1.watts, after.pl1.seconds, after.pl1.enabled, after.pl1.clamp) == (90, 1.0, True, False)
    assert after.pl2 is not None and (after.pl2.watts, after.pl2.clamp) == (150, False)
    value, mask = plan(state(DRAM, UNITS, 0x0), Request(pl1=20, enable=True))
    assert mask & ~MASK_ONE == 0 and value == 160 | 1 << 15


def test_plan_refuses_what_the_package_does_not_allow() -> None:
    st = pkg_state()
    cases = [
        (Request(pl1=30), "below the package's minimum of 40 W"),
        (Request(pl1=250, pl2=260), "above the package's maximum of 200 W"),
        (Request(pl1_window=60), "longer than the package's maximum window of 40 s"),
        (Request(pl1=130), "must not be lower"),  # PL2 stays 120 W
        (Request(), "no limit"),
    ]
    for req, why in cases:
        with pytest.raises(PowerError) as e:
            plan(st, req)
        assert why in e.value.why, (req, e.value.why)
    with pytest.raises(PowerError, match="locked"):
        plan(pkg_state(LIMIT | 1 << 63), Request(pl1=100))
    with pytest.raises(PowerError, match="one limit"):
        plan(state(DRAM, UNITS, 0), Request(pl2=10))
    with pytest.raises(PowerError, match="chooses"):
        plan(state(DOMAINS["psys"], UNITS, 0), Request(pl2_window=1))


def test_parse_quantity() -> None:
    assert parse_quantity("95", "--pl1", _WATTS, "") == 95.0
    assert parse_quantity("95.5W", "--pl1", _WATTS, "") == 95.5
    assert parse_quantity("2.44ms", "--w", _SECONDS, "") == pytest.approx(0.00244)
    assert parse_quantity("1min", "--w", _SECONDS, "") == 60.0
    for bad in ("", "W", "9x", "-5", "1..2"):
        with pytest.raises(UsageError):
            parse_quantity(bad, "--pl1", _WATTS, "95W")


def test_power_capping_profile_never_grants_a_lock_bit() -> None:
    entries = allowlist.parse(allowlist.render_profile("power-capping", vendor="intel"))
    masks = {e.msr: e.write_mask for e in entries}
    assert masks[0x610] == MASK_TWO and masks[0x618] == masks[0x638] == masks[0x640] == MASK_ONE
    assert not masks[0x610] >> 63 and not masks[0x618] >> 31
    assert masks[0x606] == masks[0x614] == masks[0x61C] == 0
    assert 0x611 not in masks  # energy (a side channel) stays in its own profile


def test_packages_from_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sysfs(tmp_path, {0: (1, 0), 1: (1, 1), 2: (0, 0), 3: (0, 1)}, monkeypatch)
    assert _packages(None) == {0: 2, 1: 0}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MSRCTL_DEVICE="/nonexistent/msrdrv")
    return subprocess.run([sys.executable, "-m", "msrctl", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args, text",
    [
        (["power", "set"], "nothing to set"),
        (["power", "set", "--pl1", "9x"], "malformed --pl1 '9x'"),
        (["power", "set", "--pl1", "90", "--domain", "gpu"], "unknown power domain 'gpu'"),
        (["power", "show", "-d", "cpu"], "unknown power domain 'cpu'"),
    ],
)
def test_usage_errors_are_one_line_exit_64(args: list[str], text: str) -> None:
    r = run(*args)
    assert r.returncode == 64, r.stderr
    assert r.stderr.count("\n") == 1 and text in r.stderr and "Traceback" not in r.stderr
