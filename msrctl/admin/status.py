"""The `msrctl status` report: what state msrdrv is in and what to do about each problem."""

from __future__ import annotations

import errno
import os
from typing import Any

from .. import errors
from ..errors import ASK_FOR_LIST, LOAD_TELEMETRY, MsrctlError
from . import diagnose, system
from .modtool import not_installed

# msrdrv_info.features, bit by bit (MSRDRV_FEAT_*).
FEATURES = ("masked_write", "multi_cpu", "legacy_cmds", "allowlist", "snapshot", "protected")


def _abi(device: str) -> dict[str, Any] | MsrctlError:
    """INFO ioctl results for this user's open file, or why they could not be had."""
    from ..device import abi
    from ..device.msrdrv import Device, DeviceError

    try:
        with Device(device) as dev:
            info = dev.info()
            writable = dev.writable
    except DeviceError as e:
        if e.errno == errno.ENOTTY:
            return MsrctlError(
                "msrdrv does not answer msrctl's INFO ioctl",
                f"it is another version (msrctl uses ioctl magic {abi.IOC_MAGIC:#x}; older msrdrv used 0xb7)",
                "install matching versions of msrdrv-dkms and msrctl, then: sudo msrctl unload && sudo msrctl load",
            )
        return MsrctlError(f"INFO ioctl failed: {e}", "", "reload msrdrv; see dmesg")
    return {
        "version": info.abi_version,
        "expected": abi.ABI_VERSION,
        "module_version": info.version,
        "max_ops": info.max_ops,  # per open file: lower for openers without CAP_SYS_RAWIO
        "section_ops": info.section_ops,
        "nr_cpu_ids": info.nr_cpu_ids,
        "features": [name for bit, name in enumerate(FEATURES) if info.features >> bit & 1],
        "rawio": info.rawio,
        "admin": info.admin,
        "writable": writable,
        "writes_allowed": info.writes_allowed,
        "lockdown": info.lockdown,
        "allowlist_entries": info.allowlist_entries,
    }


def _access(abi_info: dict[str, Any], user: system.User, problems: list[dict[str, Any]], notes: list[str]) -> None:
    """What this user may do through the open file, and what to ask for when it is nothing."""
    entries = abi_info["allowlist_entries"]
    if abi_info["lockdown"]:
        notes.append("kernel lockdown forbids MSR writes (reads work)")
    elif not abi_info["writes_allowed"]:
        notes.append("writes are disabled (allow_writes=0)")
    if not abi_info["writable"]:
        notes.append(
            f"{user.name} may open the node read-only (mode 0640 for the group): "
            "every write fails (EBADF), reads follow the allowlist"
        )
    if abi_info["rawio"]:
        if not entries:
            notes.append(
                f"no allowlist loaded: group {system.GROUP} may read and write nothing; load one: {LOAD_TELEMETRY}"
            )
        return
    if not entries:
        _problem(
            problems,
            errors.PERMISSION,
            f"no allowlist is loaded, so {user.name} (no CAP_SYS_RAWIO) may read and write no MSR",
            ASK_FOR_LIST,
        )
    else:
        notes.append(f"{user.name} may access what the allowlist's {entries} entries permit (`msrctl allowlist show`)")


def _pmu() -> dict[str, Any]:
    """The core PMU, for `msrctl stat` (not a problem when absent: reads and writes work)."""
    from ..perf import pmu

    info = pmu.detect()
    return {**info.as_dict(), "nmi_watchdog": pmu.nmi_watchdog_on()}


def _problem(problems: list[dict[str, Any]], code: int, problem: str, fix: str) -> None:
    problems.append({"problem": problem, "fix": fix, "code": code})


def _backend(device: str, backend: str | None) -> dict[str, Any]:
    """Which driver read/write/batch would use, and for the stock one whether this user can open it."""
    from ..device import backend as backends

    chosen = backends.choose(device, backend)
    rep: dict[str, Any] = {"name": chosen, "requested": backends.requested(backend)}
    if chosen == backends.MSR:
        node = backends.stock_node()
        err, _ = system.try_open(node)
        rep.update(node=node, can_open=err == 0, open_errno=err, caveat=backends.caveat())
    return rep


def report(device: str, backend: str | None = None) -> dict[str, Any]:
    """Everything `status` shows; report['problems'] lists blocking issues, ['notes'] the others.

    backend as for backend.open_device: with the kernel's msr driver usable, msrdrv
    not being loaded is a note, not a problem."""
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    loaded = system.module_loaded()
    chosen = _backend(device, backend)
    stock_ok = bool(chosen.get("can_open"))
    module: dict[str, Any] = {
        "loaded": loaded,
        "version": system.module_version(),
        "refcnt": system.module_refcnt(),
        "parameters": system.module_params(),
        "module_support": system.module_support(),
        "file": None if loaded else system.module_file(),
    }
    node = system.node(device)
    user = system.user()
    open_err, writable = system.try_open(device) if node.exists else (errno.ENOENT, False)
    rep: dict[str, Any] = {
        "kernel": system.kernel_release(),
        "module": module,
        "device": {
            "path": device,
            "exists": node.exists,
            "char_device": node.is_char,
            "mode": f"{node.mode:04o}" if node.exists else None,
            "owner": node.owner or None,
            "group": node.group or None,
        },
        "user": {
            "name": user.name,
            "uid": user.uid,
            "groups": list(user.groups),
            "in_group": user.group_member,
            "listed_in_group": user.group_listed,
            "can_open": open_err == 0,
            "can_write": writable,
            "open_error": os.strerror(open_err) if open_err else None,
        },
        "backend": {k: v for k, v in chosen.items() if k != "open_errno"},
        "abi": None,
        "lockdown": system.lockdown(),
        "dkms": system.dkms_status(),
        "pmu": _pmu(),
    }
    pol = _signing(rep, module["file"])
    if stock_ok and not loaded:  # read/write/batch work through the stock driver
        notes.append("msrdrv is not loaded: msrctl uses the kernel's msr driver (see backend)")
    elif not module["module_support"]:  # not loaded (5), and why it cannot be
        _problem(
            problems,
            errors.NOT_LOADED,
            "msrdrv module not loaded, and this kernel cannot load modules (no /proc/modules)",
            diagnose.NO_MODULES_FIX,
        )
    elif not loaded:
        if module["file"]:
            if pol.reasons:  # `msrctl load` will be refused unless the key is trusted
                _problem(
                    problems,
                    errors.NOT_LOADED,
                    f"msrdrv module not loaded, and this kernel loads only modules signed by a key it trusts "
                    f"({' and '.join(pol.reasons)}): {pol.module_state}, unless its key is enrolled",
                    f"try: sudo msrctl load; if it is refused, {pol.fix()}",
                )
            else:
                _problem(problems, errors.NOT_LOADED, "msrdrv module not loaded", "run: sudo msrctl load")
        else:
            err = not_installed(system.kernel_release())
            _problem(problems, errors.NOT_LOADED, f"msrdrv module not loaded: {err.why}", err.fix)
    if chosen["name"] == "msr" and not stock_ok:
        err = diagnose.stock_open_error(chosen["node"], chosen["open_errno"])
        _problem(problems, err.code, f"{user.name} {err.what}: {err.why}", err.fix)
    if loaded and not node.exists:
        _problem(
            problems,
            errors.NOT_LOADED,
            f"{device} does not exist although msrdrv is loaded",
            "let udev create it: sudo udevadm trigger (check devtmpfs is mounted)",
        )
    if node.exists and open_err:
        err = diagnose.open_error(device, open_err)
        _problem(problems, err.code, f"{user.name} cannot open {device}: {err.why}", err.fix)
    if open_err == 0:
        abi_info = _abi(device)
        if isinstance(abi_info, MsrctlError):
            what = f"{abi_info.what}: {abi_info.why}" if abi_info.why else abi_info.what
            _problem(problems, errors.FAILURE, what, abi_info.fix)
        else:
            rep["abi"] = abi_info
            if abi_info["version"] != abi_info["expected"]:
                _problem(
                    problems,
                    errors.FAILURE,
                    f"msrdrv speaks ABI {abi_info['version']}, msrctl expects {abi_info['expected']}",
                    "install matching versions of msrdrv-dkms and msrctl",
                )
            _access(abi_info, user, problems, notes)
    if rep["dkms"] is None:
        notes.append("dkms is not installed: the module will not be rebuilt for new kernels")
    elif not rep["dkms"]:
        notes.append("dkms does not know msrdrv: install msrdrv-dkms to rebuild it for new kernels")
    if not rep["pmu"]["present"]:
        notes.append(f"msrctl stat cannot count events here: {rep['pmu']['reason']}")
    elif rep["pmu"]["nmi_watchdog"]:
        notes.append("the NMI watchdog holds a performance counter: sysctl kernel.nmi_watchdog=0 frees it")
    rep["problems"] = problems
    rep["notes"] = notes
    rep["ok"] = not problems
    return rep


def _signing(rep: dict[str, Any], module_file: str | None) -> Any:
    """The kernel's signature policy for the module file, recorded in the report."""
    from . import signing

    pol = signing.policy(module_file)
    rep["signing"] = {
        "secure_boot": pol.secure_boot,
        "sig_enforce": pol.sig_enforce,
        "required_by": pol.reasons,
        "module_signer": pol.signer,
        "dkms_key": signing.DKMS_KEY if pol.dkms_key else None,
    }
    return pol


def exit_code(rep: dict[str, Any]) -> int:
    problems = rep["problems"]
    return int(problems[0]["code"]) if problems else errors.OK
