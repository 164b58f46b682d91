"""Templates render the generated files; the committed udev rule is the rendered one."""

from __future__ import annotations

from pathlib import Path

from msrctl.admin import render

ROOT = Path(__file__).resolve().parents[3]


def test_committed_udev_rule_is_rendered() -> None:
    assert (ROOT / "udev" / render.UDEV_RULE_FILE).read_text() == render.udev_rule()


def test_udev_rule() -> None:
    rule = render.udev_rule("wheel", "0640")
    lines = [line for line in rule.splitlines() if not line.startswith("#")]
    assert lines == ['KERNEL=="msrdrv", SUBSYSTEM=="misc", GROUP="wheel", MODE="0640"']
    assert rule.startswith("# 60-msrdrv.rules") and rule.endswith("\n")


def test_modprobe_conf() -> None:
    assert "options msrdrv max_ops=64 allow_writes=1\n" in render.modprobe_conf(64, True)
    assert "options msrdrv allow_writes=0\n" in render.modprobe_conf(None, False)
    assert "options" not in render.modprobe_conf().replace("# No options", "")


def report(**over: object) -> dict:
    rep: dict = {
        "kernel": "6.1.0-56-amd64",
        "backend": {"name": "msrdrv", "requested": "auto"},
        "module": {"loaded": True, "version": "0.1.0", "refcnt": 0, "parameters": {"max_ops": "4096"}, "file": None},
        "device": {
            "path": "/dev/msrdrv",
            "exists": True,
            "char_device": True,
            "mode": "0660",
            "owner": "root",
            "group": "msr",
        },
        "user": {"name": "root", "groups": ["root"], "can_open": True, "can_write": True, "open_error": None},
        "abi": {
            "version": 1,
            "expected": 1,
            "max_ops": 4096,
            "section_ops": 64,
            "nr_cpu_ids": 2,
            "features": ["masked_write", "multi_cpu", "snapshot", "protected"],
            "rawio": True,
            "admin": True,
            "writable": True,
            "writes_allowed": True,
            "lockdown": False,
            "allowlist_entries": 0,
        },
        "lockdown": "none",
        "dkms": "msrdrv/0.1.0, 6.1.0-56-amd64, x86_64: installed",
        "pmu": {"present": True, "description": "INTEL PMU v4: 4 general counters (48 bits), 3 fixed (48 bits)"},
        "problems": [],
        "notes": [],
    }
    rep.update(over)
    return rep


def test_status_ready() -> None:
    text = render.status_text(report())
    assert "module:    msrdrv 0.1.0 loaded, 0 user(s) (max_ops=4096)\n" in text
    assert "device:    /dev/msrdrv root:msr 0660\n" in text
    assert "access:    root can open it read-write; groups: root\n" in text
    assert "abi:       version 1 (msrctl expects 1), 2 CPU ids\n" in text
    assert "limits:    max_ops 4096 per batch for root, section_ops 64 per interrupts-off section\n" in text
    assert "features:  masked_write, multi_cpu, snapshot, protected\n" in text
    assert "allowlist: none loaded (binds group members; root has CAP_SYS_RAWIO)\n" in text
    assert "writes:    allowed\n" in text
    assert "dkms:      msrdrv/0.1.0, 6.1.0-56-amd64, x86_64: installed\n" in text
    assert "pmu:       INTEL PMU v4: 4 general counters (48 bits), 3 fixed (48 bits)\n" in text
    assert text.endswith("status:    ready\n")


def test_status_problems() -> None:
    text = render.status_text(
        report(
            module={"loaded": False, "version": None, "refcnt": None, "parameters": {}, "file": None},
            device={
                "path": "/dev/msrdrv",
                "exists": False,
                "char_device": False,
                "mode": None,
                "owner": None,
                "group": None,
            },
            user={"name": "bob", "groups": ["bob"], "can_open": False, "open_error": "No such file or directory"},
            abi=None,
            dkms=None,
            problems=[{"problem": "msrdrv module not loaded", "fix": "run: sudo msrctl load", "code": 5}],
            notes=["dkms is not installed"],
        )
    )
    assert "module:    not loaded (not installed for this kernel)\n" in text
    assert "device:    /dev/msrdrv missing\n" in text
    assert "access:    bob cannot open it (No such file or directory)" in text
    assert "dkms:      not installed\n" in text
    assert "note:      dkms is not installed\n" in text
    assert text.endswith("problem:   msrdrv module not loaded\n  fix:     run: sudo msrctl load\n")
    assert "abi:" not in text


def test_status_optional_parts() -> None:
    rep = report()
    rep["module"]["parameters"] = {}
    rep["device"]["char_device"] = False
    text = render.status_text(rep)
    assert "module:    msrdrv 0.1.0 loaded, 0 user(s)\n" in text
    assert "root:msr 0660 (not a character device!)\n" in text


def member(entries: int, writable: bool = True) -> dict:
    rep = report()
    rep["user"] = {"name": "ann", "groups": ["ann", "msr"], "can_open": True, "can_write": writable, "open_error": None}
    rep["abi"].update(max_ops=1024, rawio=False, admin=False, writable=writable, allowlist_entries=entries)
    return rep


def test_status_group_member() -> None:
    text = render.status_text(member(0))
    assert "access:    ann can open it read-write; groups: ann,msr\n" in text
    assert "limits:    max_ops 1024 per batch for ann," in text
    assert "allowlist: none loaded: ann may read and write nothing\n" in text
    assert "writes:    only the bits the allowlist's write masks permit\n" in text
    text = render.status_text(member(10, writable=False))
    assert "access:    ann can open it read-only; groups: ann,msr\n" in text
    assert "allowlist: 10 entries: ann may access what they permit\n" in text
    assert "writes:    refused: the node is open read-only (EBADF)\n" in text
