"""Signature enforcement, Secure Boot and lockdown: msrctl load's diagnosis on a fake sysfs.

The kernel side (a real refusal under module.sig_enforce=1 and lockdown=integrity) is
tested in the booted system image (tests/system); here, the reading of each file and
the wording for each combination."""

from __future__ import annotations

from pathlib import Path

import pytest

from msrctl import errors
from msrctl.admin import modtool, signing

KEY_REJECTED = "modprobe: ERROR: could not insert 'msrdrv': Key was rejected by service\n"
NOT_PERMITTED = "modprobe: ERROR: could not insert 'msrdrv': Operation not permitted\n"
SB_VAR = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def write(root: Path, rel: str, data: str | bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MSRCTL_SYSROOT", str(tmp_path))
    monkeypatch.setattr(signing, "module_signer", lambda path: "DKMS module signing key")
    return tmp_path


def test_secure_boot_from_the_efi_variable(root: Path) -> None:
    assert signing.secure_boot() is False  # booted by BIOS: no /sys/firmware/efi
    (root / "sys/firmware/efi/efivars").mkdir(parents=True)
    assert signing.secure_boot() is None  # UEFI, variable unreadable
    write(root, SB_VAR, bytes([6, 0, 0, 0, 0]))  # 4 attribute bytes, then the value
    assert signing.secure_boot() is False
    write(root, SB_VAR, bytes([6, 0, 0, 0, 1]))
    assert signing.secure_boot() is True


def test_sig_enforce_parameter(root: Path) -> None:
    assert signing.sig_enforce() is None  # a kernel without module signing
    write(root, "sys/module/module/parameters/sig_enforce", "N\n")
    assert signing.sig_enforce() is False
    write(root, "sys/module/module/parameters/sig_enforce", "Y\n")
    assert signing.sig_enforce() is True


def test_secure_boot_refusal_names_the_key_and_the_enrollment(root: Path) -> None:
    write(root, SB_VAR, bytes([6, 0, 0, 0, 1]))
    write(root, "sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    write(root, "var/lib/dkms/mok.pub", "key")
    err = modtool.explain_load_failure(KEY_REJECTED, "6.1.0-57-amd64", "/lib/modules/x/msrdrv.ko")
    assert err.code == errors.MODULE
    assert "Secure Boot is on and kernel lockdown (integrity)" in err.why
    assert "signed by 'DKMS module signing key', a key this kernel does not trust" in err.why
    assert "sudo mokutil --import /var/lib/dkms/mok.pub" in err.fix and "MokManager" in err.fix
    assert "\n" not in err.why + err.fix


def test_sig_enforce_without_uefi_says_mokmanager_cannot_help(root: Path) -> None:
    write(root, "sys/module/module/parameters/sig_enforce", "Y\n")
    write(root, "proc/cmdline", "root=/dev/vda rw module.sig_enforce=1\n")
    write(root, "var/lib/dkms/mok.pub", "key")
    err = modtool.explain_load_failure(KEY_REJECTED, "6.1.0-57-amd64")
    assert "(module.sig_enforce=1)" in err.why
    assert err.fix.startswith("boot without module.sig_enforce=1 (no Secure Boot") and "mokutil --import" in err.fix


def test_lockdown_from_the_command_line_without_uefi(root: Path) -> None:
    write(root, "sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    write(root, "proc/cmdline", "root=/dev/vda rw lockdown=integrity\n")
    write(root, "var/lib/dkms/mok.pub", "key")
    err = modtool.explain_load_failure(NOT_PERMITTED, "6.1.0-57-amd64")
    assert err.fix.startswith("boot without lockdown=integrity (no Secure Boot")


def test_mokutil_missing_is_named_before_its_command(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from msrctl.admin import system

    real_tool = system.tool
    write(root, SB_VAR, bytes([6, 0, 0, 0, 1]))
    write(root, "var/lib/dkms/mok.pub", "key")
    monkeypatch.setattr(system, "tool", lambda name: None if name == "mokutil" else real_tool(name))
    err = modtool.explain_load_failure(KEY_REJECTED, "6.1.0-57-amd64")
    assert "sudo apt install mokutil; sudo mokutil --import /var/lib/dkms/mok.pub" in err.fix


def test_an_unsigned_module_without_a_dkms_key(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "module_signer", lambda path: "")
    write(root, "sys/module/module/parameters/sig_enforce", "Y\n")
    err = modtool.explain_load_failure(KEY_REJECTED, "6.1.0-57-amd64")
    assert "msrdrv.ko is not signed" in err.why
    assert "DKMS 3.0 or later" in err.fix and "mokutil --import /var/lib/dkms/mok.pub" in err.fix
    # bookworm's dkms signs nothing without openssl (it makes its key with it): say so first
    from msrctl.admin import system

    real_tool = system.tool
    monkeypatch.setattr(system, "tool", lambda name: None if name == "openssl" else real_tool(name))
    err = modtool.explain_load_failure(KEY_REJECTED, "6.1.0-57-amd64")
    assert err.fix.startswith("install openssl (DKMS makes its signing key with it), then rebuild")


def test_lockdown_turns_eperm_into_the_signature_story(root: Path) -> None:
    write(root, "sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    write(root, "var/lib/dkms/mok.pub", "key")
    err = modtool.explain_load_failure(NOT_PERMITTED, "6.1.0-57-amd64")
    assert "(kernel lockdown (integrity))" in err.why and "mokutil --import" in err.fix
    # without lockdown, EPERM is still the missing capability / modules_disabled
    write(root, "sys/kernel/security/lockdown", "[none] integrity confidentiality\n")
    err = modtool.explain_load_failure(NOT_PERMITTED, "6.1.0-57-amd64")
    assert "CAP_SYS_MODULE" in err.why and err.code == errors.PERMISSION


def test_an_unsigned_dkms_build_is_rebuilt_then_its_key_enrolled(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "module_signer", lambda path: "")
    write(root, SB_VAR, bytes([6, 0, 0, 0, 1]))
    write(root, "var/lib/dkms/mok.pub", "key")
    (root / "var/lib/dkms/msrdrv/0.2.0").mkdir(parents=True)
    err = modtool.explain_load_failure(KEY_REJECTED, "6.1.0-57-amd64")
    assert err.fix.startswith("let DKMS rebuild and sign it (sudo dkms install --force msrdrv/0.2.0), then enroll")
