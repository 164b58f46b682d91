"""Refused ops explained: EACCES says exactly what to ask an admin for; EBADF, EPERM; status for group members."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from msrctl import errors
from msrctl.admin import diagnose, status, system
from msrctl.admin.allowlist import Entry

NONE_LOADED = "no msrdrv allowlist is loaded, and without one group msr may read and write nothing"


def refused(kind: str, msr: int, name: str | None, entries: list[Entry] | None, mask: int | None = None) -> str:
    err = diagnose.op_error(kind, 0, msr, name, errno.EACCES, mask=mask, entries=entries)
    assert err.code == errors.PERMISSION
    return err.message


@pytest.mark.parametrize(
    ("kind", "msr", "name", "entries", "mask", "message"),
    [
        (
            "read",
            0x10,
            "IA32_TIME_STAMP_COUNTER",
            [],
            None,
            f"read of MSR 0x10 (IA32_TIME_STAMP_COUNTER) on CPU 0 refused: {NONE_LOADED}; "
            "ask an admin to run: sudo msrctl allowlist load --profile telemetry",
        ),
        (
            "read",
            0x611,
            None,
            [],
            None,
            f"{NONE_LOADED}; ask an admin to run: sudo msrctl allowlist load --profile energy",
        ),
        (
            "write",
            0x186,
            None,
            [],
            0x400000,
            f"{NONE_LOADED}; ask an admin to run: sudo msrctl allowlist load --profile perfmon",
        ),
        (
            "write",
            0x186,
            None,
            [],
            1 << 17,  # the OS bit: no profile grants it
            f"{NONE_LOADED}; ask an admin to run: echo '0x186 0x20000' | sudo msrctl allowlist load - (no shipped",
        ),
        (
            "read",
            0x1B,
            "IA32_APIC_BASE",
            [Entry(0x10)],
            None,
            "the msrdrv allowlist in force does not list it; ask an admin to add the line '0x1b 0x0' to it",
        ),
        (
            "read",
            0xC0000103,
            None,
            [Entry(0xC0000103, 0xFF00, read=False)],
            None,
            "lets group members write it but not read it (write-only)",
        ),
        ("write", 0x10, None, [Entry(0x10)], None, "lets group members read it but not write it (write mask 0)"),
        (
            "write",
            0xC0000103,
            None,
            [Entry(0xC0000103, 0xFF00)],
            0xFF,
            "lets group members write only bits 0xff00 of it, and this write may change none of them (mask 0xff)",
        ),
        (
            "read",
            0xC0000082,
            "IA32_LSTAR",
            [Entry(0x10)],
            None,
            "refused: MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR); "
            "msrdrv never lets group members read or write it; run it as root (CAP_SYS_RAWIO)",
        ),
        (
            "read",
            0x10,
            None,
            None,  # the list could not be read: the library's generic advice
            None,
            "not permitted by the msrdrv allowlist (none loaded, or it does not list this MSR for this access); "
            "ask an admin to run: sudo msrctl allowlist load --profile telemetry",
        ),
    ],
)
def test_eacces_says_what_to_ask_for(
    kind: str, msr: int, name: str | None, entries: list[Entry] | None, mask: int | None, message: str
) -> None:
    text = refused(kind, msr, name, entries, mask)
    assert message in text, text


def test_ebadf_eperm() -> None:
    err = diagnose.op_error("write", 1, 0xC0000103, "IA32_TSC_AUX", errno.EBADF)
    assert err.code == errors.PERMISSION
    assert err.message == (
        "write to MSR 0xc0000103 (IA32_TSC_AUX) on CPU 1 refused: /dev/msrdrv was opened read-only "
        "(the node gives this user read access only); "
        "ask an admin for a group read-write node (MODE 0660 in the udev rule), or run as root"
    )
    err = diagnose.op_error("rdtsc", 0, 0, None, errno.EPERM)
    assert "disabled the TSC (prctl PR_SET_TSC" in err.message and err.code == errors.PERMISSION
    err = diagnose.op_error("read", 0, 0x10, "IA32_TIME_STAMP_COUNTER", errno.EPERM)
    assert err.message.startswith("read of MSR 0x10 (IA32_TIME_STAMP_COUNTER) on CPU 0 refused: this process disabled")
    err = diagnose.op_error("write", 0, 0x10, None, errno.EPERM, writes_reason="disabled")
    assert "allow_writes=0" in err.message
    err = diagnose.op_error("write", 0, 0x10, None, errno.EPERM)
    assert "kernel lockdown or allow_writes=0" in err.message


def abi_info(**over: Any) -> dict[str, Any]:
    info = {"rawio": False, "writable": True, "writes_allowed": True, "lockdown": False, "allowlist_entries": 0}
    info.update(over)
    return info


USER = system.User("ann", 1000, ("ann", "msr"), True, True, True)


def test_status_member_without_a_list_is_a_problem() -> None:
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    status._access(abi_info(), USER, problems, notes)
    assert problems == [
        {
            "problem": "no allowlist is loaded, so ann (no CAP_SYS_RAWIO) may read and write no MSR",
            "fix": "ask an admin to run: sudo msrctl allowlist load --profile telemetry",
            "code": errors.PERMISSION,
        }
    ]


def test_status_member_with_a_list_read_only_node() -> None:
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    status._access(abi_info(allowlist_entries=10, writable=False), USER, problems, notes)
    assert problems == []
    assert any("read-only" in n and "EBADF" in n for n in notes), notes
    assert any("10 entries" in n for n in notes), notes


def test_status_root_without_a_list_is_only_a_note() -> None:
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    root = system.User("root", 0, ("root",), True, False, False)
    status._access(abi_info(rawio=True), root, problems, notes)
    assert problems == []
    assert notes == [
        "no allowlist loaded: group msr may read and write nothing; "
        "load one: sudo msrctl allowlist load --profile telemetry"
    ]


def test_try_open_falls_back_to_read_only(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = tmp_path / "node"
    path.write_bytes(b"")
    assert system.try_open(str(path)) == (0, True)
    real = os.open

    def no_write(p: str, flags: int) -> int:
        if flags & os.O_ACCMODE == os.O_RDWR:
            raise OSError(errno.EACCES, "Permission denied")
        return real(p, flags)

    monkeypatch.setattr(os, "open", no_write)
    assert system.try_open(str(path)) == (0, False)
    assert system.try_open(str(tmp_path / "none")) == (errno.ENOENT, False)
