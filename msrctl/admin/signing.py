"""Whether the running kernel will load msrdrv.ko unsigned, and what to do when it will not.

Three things make a kernel refuse a module whose signature it cannot check
against a key it trusts: Secure Boot (Debian's kernel then locks down and
enforces signatures), `module.sig_enforce=1`, and lockdown (`integrity` or
`confidentiality`, from `lockdown=` or Secure Boot).  DKMS 3.0 and later
signs the modules it builds with its own key (/var/lib/dkms/mok.key); the
kernel trusts that key only once it is enrolled as a Machine Owner Key
through shim's MokManager, which needs a reboot at the console.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..device.cpus import sysroot
from . import system

DKMS_KEY = "/var/lib/dkms/mok.pub"
# The UEFI global variable GUID; the SecureBoot variable's 5th byte is 1 when on.
_SECURE_BOOT_VAR = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def secure_boot() -> bool | None:
    """True/False from the firmware's variable; False when not booted by UEFI; None unreadable."""
    root = sysroot()
    if not (root / "sys/firmware/efi").is_dir():
        return False
    try:
        data = (root / _SECURE_BOOT_VAR).read_bytes()
    except OSError:
        return None
    return len(data) >= 5 and data[4] == 1


def sig_enforce() -> bool | None:
    """module.sig_enforce (or a kernel built with CONFIG_MODULE_SIG_FORCE); None without module signing."""
    try:
        text = (sysroot() / "sys/module/module/parameters/sig_enforce").read_text().strip()
    except OSError:
        return None
    return text == "Y"


def module_signer(path: str | None) -> str | None:
    """The signer modinfo reports for a module file ('' unsigned); None if it cannot tell."""
    modinfo = system.tool("modinfo")
    if not path or modinfo is None:
        return None
    try:
        res = system.run_tool([modinfo, "-F", "signer", path], timeout=20)
    except OSError:
        return None
    return res.stdout.strip() if res.returncode == 0 else None


@dataclass(frozen=True)
class Policy:
    secure_boot: bool | None
    sig_enforce: bool | None
    lockdown: str | None
    signer: str | None  # of the module file that would be loaded
    dkms_key: bool  # DKMS's public key exists

    @property
    def reasons(self) -> list[str]:
        """Why this kernel requires trusted signatures, in words; empty when it does not."""
        out = []
        if self.secure_boot:
            out.append("Secure Boot is on")
        if self.sig_enforce:
            out.append("module.sig_enforce=1")
        if self.lockdown not in (None, "none"):
            out.append(f"kernel lockdown ({self.lockdown})")
        return out

    @property
    def module_state(self) -> str:
        if self.signer is None:
            return "msrdrv.ko's signature could not be read"
        if not self.signer:
            return "msrdrv.ko is not signed"
        return f"msrdrv.ko is signed by '{self.signer}', a key this kernel does not trust"

    def fix(self) -> str:
        """One line: enroll DKMS's key (or make DKMS sign first), or what else can be done."""
        mokutil = "" if system.tool("mokutil") else "sudo apt install mokutil; "
        versions = system.dkms_versions()
        rebuild = f"sudo dkms install --force msrdrv/{versions[-1]}" if versions else "sudo dkms autoinstall"
        sign = ""
        if not self.signer and versions:  # built before DKMS had its key, or by hand
            sign = f"let DKMS rebuild and sign it ({rebuild}), then "
        if not self.dkms_key and not self.signer:
            # DKMS makes its key with openssl and signs nothing without it (bookworm's dkms does not depend on it)
            need = "" if system.tool("openssl") else "install openssl (DKMS makes its signing key with it), then "
            return (
                f"{need}rebuild it with DKMS 3.0 or later, which signs with its key in /var/lib/dkms ({rebuild}), "
                f"then enroll that key: {mokutil}sudo mokutil --import {DKMS_KEY}, reboot and enroll it in MokManager"
            )
        enroll = (
            f"{sign}enroll DKMS's key once: {mokutil}sudo mokutil --import {DKMS_KEY}, reboot, choose 'Enroll MOK' "
            "in MokManager and confirm; then: sudo msrctl load"
        )
        options = self.boot_options()
        if self.secure_boot is False and options:
            drop = " and ".join(options)
            return f"boot without {drop} (no Secure Boot here: MokManager needs UEFI shim), or {enroll}"
        return enroll

    def boot_options(self) -> list[str]:
        """The kernel command line's options that demand signatures, as written there."""
        try:
            cmdline = (sysroot() / "proc/cmdline").read_text().split()
        except OSError:
            cmdline = []
        return [o for o in cmdline if o.startswith(("module.sig_enforce=", "lockdown="))]


def policy(module_path: str | None = None) -> Policy:
    path = module_path if module_path is not None else system.module_file()
    return Policy(
        secure_boot=secure_boot(),
        sig_enforce=sig_enforce(),
        lockdown=system.lockdown(),
        signer=module_signer(path),
        dkms_key=(sysroot() / DKMS_KEY.lstrip("/")).is_file(),
    )
