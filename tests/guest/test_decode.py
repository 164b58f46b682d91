"""`msrctl decode` live against the real module, inside the test VM.

Facts of the VM (QEMU TCG): IA32_APIC_BASE reads 0xfee00900 on CPU 0 (BSP) and
0xfee00800 elsewhere; RAPL registers are not emulated and read 0, which decode
must flag instead of showing as watts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import Device, as_member, online_cpus, run_many

from msrctl.admin import allowlist
from msrctl.admin.allowlist import Entry

ROOT = Path(__file__).resolve().parents[2]
CPUS = online_cpus()


def test_apic_base_on_every_cpu() -> None:
    (code, out, err), (jcode, jout, _) = run_many(
        [["decode", "-a", "IA32_APIC_BASE"], ["decode", "-a", "apic_base", "--json"]]
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:5] == [
        "IA32_APIC_BASE (0x1b) on CPU 0 = 0xfee00900",
        "  BSP       8  1        this CPU is the bootstrap processor: yes",
        "  EXTD     10  0        x2APIC mode: no",
        "  EN       11  1        local APIC enabled: yes",
        "  BASE  51:12  0xfee00  APIC registers' physical address: 0xfee00000",
    ]
    if len(CPUS) > 1:  # the others share one block: same value, BSP 0
        others = ",".join(str(c) for c in CPUS[1:]) if len(CPUS) == 2 else f"{CPUS[1]}-{CPUS[-1]}"
        assert lines[5] == f"IA32_APIC_BASE (0x1b) on CPU{'s' if len(CPUS) > 2 else ''} {others} = 0xfee00800"
        assert lines[6] == "  BSP       8  0        this CPU is the bootstrap processor: no"
        assert lines[9].endswith(": 0xfee00000")
    assert jcode == 0
    recs = json.loads(jout)
    assert [r["cpu"] for r in recs] == CPUS
    for r in recs:
        f = {x["name"]: x["value"] for x in r["fields"]}
        assert (f["BSP"], f["BASE"], f["EN"]) == (r["cpu"] == 0, 0xFEE00000, True)


def test_rapl_reads_zero_here_and_is_flagged_not_shown_as_watts() -> None:
    calls = [
        ["decode", "MSR_RAPL_POWER_UNIT"],
        ["decode", "MSR_PKG_ENERGY_STATUS", "--json"],
        ["decode", "MSR_PKG_POWER_LIMIT"],
        ["decode", "MSR_PKG_POWER_LIMIT", "--json"],
    ]
    (c1, unit, e1), (c2, energy, _), (c3, limit, e3), (c4, limit_json, _) = run_many(calls)
    assert (c1, e1) == (0, "")
    assert unit.splitlines() == [
        "MSR_RAPL_POWER_UNIT (0x606) on CPU 0 = 0x0",
        "  reads 0: not implemented here? (0 is not a plausible value of this register; not decoded)",
    ]
    (rec,) = json.loads(energy)
    assert (c2, rec["value"], rec["implausible"]) == (0, 0, "reads 0: not implemented here?")
    assert all(f["value"] is None for f in rec["fields"])
    # PKG_POWER_LIMIT itself may be 0 (no limits): its watts need units, which this machine lacks
    assert (c3, e3) == (0, "")
    assert " W" not in limit and "needs RAPL units" in limit
    assert "(RAPL units: MSR_RAPL_POWER_UNIT reads 0: not implemented here?; give --units)" in limit
    (rec,) = json.loads(limit_json)
    assert c4 == 0 and rec["context"]["rapl"] is None
    assert {f["name"]: f["value"] for f in rec["fields"]}["PL1"] is None


def test_an_absent_cpu_is_one_clear_error_and_the_others_still_decode() -> None:
    ((code, out, err),) = run_many([["decode", "-p", "0,4096", "apic_base"]])
    assert code == 2
    assert out.splitlines()[0] == "IA32_APIC_BASE (0x1b) on CPU 0 = 0xfee00900"
    assert "4096" not in out
    assert err.splitlines() == [
        f"msrctl: error: no such CPU 4096: it is absent or offline (online: {cpu_text()}); "
        "choose an online CPU with -p, or use -a for all"
    ]


def cpu_text() -> str:
    return f"{CPUS[0]}-{CPUS[-1]}" if len(CPUS) > 1 else str(CPUS[0])


def test_group_member_needs_an_allowlist_entry() -> None:
    with Device() as dev:
        allowlist.clear(dev.fd)
        try:
            res = as_member(sys.executable, "-m", "msrctl", "decode", "apic_base")
            assert res.returncode == 3, res.stderr
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr
            assert lines[0].startswith("msrctl: error: read of MSR 0x1b (IA32_APIC_BASE) on CPU 0 refused")
            assert "msrctl allowlist load" in lines[0]
            # listed: the register decodes; its context register, not listed, is named as refused
            allowlist.load(dev.fd, [Entry(0x1B, 0), Entry(0x610, 0)])
            res = as_member(sys.executable, "-m", "msrctl", "decode", "apic_base")
            assert (res.returncode, res.stderr) == (0, "")
            assert "BSP       8  1" in res.stdout
            res = as_member(sys.executable, "-m", "msrctl", "decode", "pkg_power_limit")
            assert (res.returncode, res.stderr) == (0, "")
            assert "(RAPL units: MSR_RAPL_POWER_UNIT refused: not in the allowlist; give --units)" in res.stdout
        finally:
            allowlist.clear(dev.fd)
