"""Load and unload the msrdrv module with modprobe/insmod/rmmod, explaining failures."""

from __future__ import annotations

import os
import subprocess
import time

from .. import errors
from ..errors import MsrctlError
from . import system

MAX_OPS_LIMIT = 65536  # MSRDRV_MAX_OPS_LIMIT in the module
INSTALL_FIX = (
    "install it: sudo apt install msrdrv-dkms (DKMS builds it for each kernel), "
    "or load a module you built with: msrctl load --ko dkms/msrdrv.ko"
)


def not_installed(release: str) -> MsrctlError:
    """msrdrv.ko is missing for this kernel: say which step is missing, not just "install it"."""
    what = "cannot load msrdrv"
    versions = system.dkms_versions()
    if not versions:
        return MsrctlError(what, f"msrdrv is not installed for kernel {release}", INSTALL_FIX, errors.MODULE)
    have = f"DKMS has msrdrv {versions[-1]} but has not built it for kernel {release}"
    if not system.headers_installed(release):
        return MsrctlError(
            what,
            f"{have}: the kernel headers are not installed",
            f"install them: sudo apt install linux-headers-{release} (DKMS then builds msrdrv by itself)",
            errors.MODULE,
        )
    return MsrctlError(
        what, have, f"build it: sudo dkms autoinstall -k {release} (its log says why it failed)", errors.MODULE
    )


def _need_root(action: str) -> None:
    if os.geteuid() != 0:
        raise MsrctlError(f"cannot {action} msrdrv", "this needs root", f"run: sudo msrctl {action}", errors.PERMISSION)


def _tool(name: str) -> str:
    path = system.tool(name)
    if path is None:
        raise MsrctlError(f"cannot find {name}", "it is not installed or not on PATH", "install kmod", errors.MODULE)
    return path


def _signature_refusal(why: str, module_path: str | None) -> MsrctlError:
    from . import signing

    pol = signing.policy(module_path)
    reasons = " and ".join(pol.reasons) or why
    return MsrctlError(
        "cannot load msrdrv",
        f"this kernel loads only modules signed by a key it trusts ({reasons}), and {pol.module_state}",
        pol.fix(),
        errors.MODULE,
    )


def explain_load_failure(stderr: str, release: str, module_path: str | None = None) -> MsrctlError:
    """Map modprobe/insmod messages to a cause and a fix."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no message"
    what = "cannot load msrdrv"
    if "Key was rejected by service" in text:  # EKEYREJECTED: signature enforcement
        return _signature_refusal("signature enforcement", module_path)
    if "Operation not permitted" in text and system.lockdown() not in (None, "none"):
        # Lockdown without sig_enforce: an unverifiable module gets EPERM.
        return _signature_refusal("kernel lockdown", module_path)
    if "Invalid module format" in text or "Exec format error" in text:
        return MsrctlError(
            what,
            f"the module was built for another kernel than {release}",
            f"rebuild it: sudo dkms autoinstall -k {release} (or make -C dkms), then retry",
            errors.MODULE,
        )
    if "not found in directory" in text or "Module msrdrv not found" in text:
        return not_installed(release)
    if "Operation not permitted" in text:
        return MsrctlError(
            what,
            "the kernel refused to load modules (no CAP_SYS_MODULE, or kernel.modules_disabled=1)",
            "run as root; if modules are disabled, reboot to re-enable them",
            errors.PERMISSION,
        )
    if "Unknown symbol" in text:
        return MsrctlError(
            what, "the module needs symbols this kernel lacks", "rebuild it for this kernel; see dmesg", errors.MODULE
        )
    return MsrctlError(what, last, "see dmesg for the kernel's reason", errors.MODULE)


def wait_for_node(path: str, timeout: float) -> bool:
    """Poll until devtmpfs (and udev) created the node."""
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def load(ko: str | None, max_ops: int | None, device: str, timeout: float) -> list[str]:
    """Load msrdrv (modprobe, or insmod of ko) and wait for the node; returns lines to print."""
    release = system.kernel_release()
    lines: list[str] = []
    if system.module_loaded():
        lines.append(f"msrdrv {system.module_version() or '(unknown version)'} is already loaded")
        if max_ops is not None and system.module_params().get("max_ops") != str(max_ops):
            lines.append("note: max_ops is set at load time; run `msrctl unload` first to change it")
    else:
        if not system.module_support():
            raise MsrctlError(
                "cannot load msrdrv",
                "this kernel has no loadable module support (/proc/modules is missing)",
                "boot a kernel built with CONFIG_MODULES=y",
                errors.MODULE,
            )
        params = [f"max_ops={max_ops}"] if max_ops is not None else []
        if ko is not None:
            if not os.path.isfile(ko):
                raise MsrctlError(
                    f"cannot load {ko}", "no such file", "give the path of a built msrdrv.ko", errors.USAGE
                )
            _need_root("load")
            argv = [_tool("insmod"), ko, *params]
        else:
            if not system.modules_dir_exists():
                raise MsrctlError(
                    "cannot load msrdrv",
                    f"there is no /lib/modules/{release} for the running kernel",
                    "install the modules package for this kernel, or reboot into an installed kernel",
                    errors.MODULE,
                )
            if system.module_file() is None:
                raise not_installed(release)
            _need_root("load")
            argv = [_tool("modprobe"), system.MODULE, *params]
        try:
            res = system.run_tool(argv)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MsrctlError("cannot load msrdrv", str(e), "see dmesg", errors.MODULE) from None
        if res.returncode != 0 and not system.module_loaded():
            raise explain_load_failure(res.stderr or res.stdout, release, ko)
        lines.append(f"loaded msrdrv {system.module_version() or ''}".rstrip())
    if not wait_for_node(device, timeout):
        raise MsrctlError(
            f"msrdrv is loaded but {device} did not appear within {timeout:g} s",
            "udev or devtmpfs did not create the node",
            "check that systemd-udevd runs and devtmpfs is mounted (udevadm settle; ls -l /dev/msrdrv)",
            errors.NOT_LOADED,
        )
    udevadm = system.tool("udevadm")
    if udevadm:
        # devtmpfs makes the node root:root at once; wait for udev's rule (group msr)
        try:
            system.run_tool([udevadm, "settle", f"--timeout={max(1, int(timeout))}"], timeout=timeout + 5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    node = system.node(device)
    lines.append(f"{device} is ready ({node.owner}:{node.group} {node.mode:04o})")
    return lines


def unload() -> list[str]:
    """rmmod msrdrv unless it is in use; returns lines to print."""
    if not system.module_loaded():
        return ["msrdrv is not loaded"]
    in_use = MsrctlError(
        "cannot unload msrdrv",
        f"it is in use ({system.module_refcnt()} open handle(s) of /dev/msrdrv)",
        "close the programs using it (see: fuser -v /dev/msrdrv) and try again",
        errors.MODULE,
    )
    if (system.module_refcnt() or 0) > 0:
        raise in_use
    _need_root("unload")
    res = system.run_tool([_tool("rmmod"), system.MODULE])
    if res.returncode != 0:
        text = (res.stderr or res.stdout).strip()
        if "in use" in text or "Resource temporarily unavailable" in text:
            raise in_use
        raise MsrctlError(
            "cannot unload msrdrv", text.splitlines()[-1] if text else "rmmod failed", "see dmesg", errors.MODULE
        )
    return ["unloaded msrdrv"]
