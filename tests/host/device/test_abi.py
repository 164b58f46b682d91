"""The cffi declarations in msrctl/device/abi.py match the real dkms/msrdrv.h, compiled by cc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

STRUCTS = {
    "msrdrv_op": ["op", "flags", "cpu", "msr", "err", "value", "mask"],
    "msrdrv_batch": ["abi_version", "flags", "nops", "ndone", "nerrs", "self_cpu", "ops"],
    "msrdrv_info": [
        "abi_version",
        "max_ops",
        "features",
        "nr_cpu_ids",
        "access",
        "allowlist_entries",
        "section_ops",
        "version",
        "sampler_min_period_ns",
        "sampler_max_ops",
        "sampler_max_kib",
        "reserved",
    ],
    "msrdrv_allow_entry": ["msr", "flags", "write_mask"],
    "msrdrv_allowlist": ["abi_version", "nentries", "entries"],
    "msrdrv_legacy_cmd": ["op", "ecx", "value"],
    "msrdrv_sampler_start": ["abi_version", "flags", "nops", "nrecords", "period_ns", "ops", "cpus", "cpus_size",
                             "watermark", "nrings", "record_size", "ring_stride", "mmap_size", "reserved"],
    "msrdrv_sampler_header": ["abi_version", "nrings", "nops", "record_size", "nrecords", "watermark", "period_ns",
                              "ring_offset", "ring_stride", "data_offset", "revoked", "tsc_khz", "reserved0",
                              "reserved"],
    "msrdrv_ring_header": ["cpu", "state", "head", "tail", "dropped", "missed", "revoked", "reserved"],
    "msrdrv_record": ["seq", "tsc", "errs", "type", "cpu", "values"],
    "msrdrv_sampler_consume": ["abi_version", "nrings", "tails"],
}  # fmt: skip
# Flexible array members: no size of their own in C.
FLEXIBLE = {"msrdrv_record.values"}
# C macro -> attribute of msrctl.device.abi
CONSTANTS = {
    "MSRDRV_ABI_VERSION": "ABI_VERSION",
    "MSRDRV_OP_NOP": "OP_NOP",
    "MSRDRV_OP_READ": "OP_READ",
    "MSRDRV_OP_WRITE": "OP_WRITE",
    "MSRDRV_OP_STOP": "OP_STOP",
    "MSRDRV_OP_RDTSC": "OP_RDTSC",
    "MSRDRV_OPF_MASKED": "OPF_MASKED",
    "MSRDRV_BATCH_SNAPSHOT": "BATCH_SNAPSHOT",
    "MSRDRV_CPU_SELF": "CPU_SELF",
    "MSRDRV_FEAT_MASKED_WRITE": "FEAT_MASKED_WRITE",
    "MSRDRV_FEAT_MULTI_CPU": "FEAT_MULTI_CPU",
    "MSRDRV_FEAT_LEGACY_CMDS": "FEAT_LEGACY_CMDS",
    "MSRDRV_FEAT_ALLOWLIST": "FEAT_ALLOWLIST",
    "MSRDRV_FEAT_SNAPSHOT": "FEAT_SNAPSHOT",
    "MSRDRV_FEAT_PROTECTED": "FEAT_PROTECTED",
    "MSRDRV_FEAT_SAMPLER": "FEAT_SAMPLER",
    "MSRDRV_FEAT_KERNEL_CONTROL": "FEAT_KERNEL_CONTROL",
    "MSRDRV_ACCESS_RAWIO": "ACCESS_RAWIO",
    "MSRDRV_ACCESS_WRITE": "ACCESS_WRITE",
    "MSRDRV_ACCESS_LOCKDOWN": "ACCESS_LOCKDOWN",
    "MSRDRV_ACCESS_ADMIN": "ACCESS_ADMIN",
    "MSRDRV_ACCESS_FMODE_WRITE": "ACCESS_FMODE_WRITE",
    "MSRDRV_ALLOW_READ": "ALLOW_READ",
    "MSRDRV_ALLOWLIST_MAX": "ALLOWLIST_MAX",
    "MSR_VEC_LIMIT": "MSR_VEC_LIMIT",
    "MSRDRV_SAMPLER_MAX_OPS": "SAMPLER_MAX_OPS",
    "MSRDRV_SAMPLER_CPUS_SIZE_MAX": "SAMPLER_CPUS_SIZE_MAX",
    "MSRDRV_SAMPLER_PERIOD_MAX_NS": "SAMPLER_PERIOD_MAX_NS",
    "MSRDRV_RING_OFFLINE": "RING_OFFLINE",
    "MSRDRV_RING_RUNNING": "RING_RUNNING",
    "MSRDRV_RING_STOPPED": "RING_STOPPED",
    "MSRDRV_REC_SAMPLE": "REC_SAMPLE",
    "MSRDRV_REC_OFFLINE": "REC_OFFLINE",
    "MSRDRV_REC_ONLINE": "REC_ONLINE",
    "MSRDRV_REC_REVOKED": "REC_REVOKED",
    "MSRDRV_IOC_SAMPLER_START": "IOC_SAMPLER_START",
    "MSRDRV_IOC_SAMPLER_CONSUME": "IOC_SAMPLER_CONSUME",
    "MSRDRV_IOC_SAMPLER_STOP": "IOC_SAMPLER_STOP",
    "MSRDRV_IOC_MAGIC": "IOC_MAGIC",
    "MSRDRV_IOC_INFO": "IOC_INFO",
    "MSRDRV_IOC_BATCH": "IOC_BATCH",
    "MSRDRV_IOC_SET_ALLOWLIST": "IOC_SET_ALLOWLIST",
    "MSRDRV_IOC_GET_ALLOWLIST": "IOC_GET_ALLOWLIST",
    "IOCTL_MSR_CMDS": "IOCTL_MSR_CMDS",
}


def c_program() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "msrdrv.h"', "int main(void) {"]
    for struct, fields in STRUCTS.items():
        lines.append(f'printf("sizeof {struct} %zu\\n", sizeof(struct {struct}));')
        for f in fields:
            lines.append(f'printf("offsetof {struct}.{f} %zu\\n", offsetof(struct {struct}, {f}));')
            if f"{struct}.{f}" not in FLEXIBLE:
                lines.append(f'printf("fieldsize {struct}.{f} %zu\\n", sizeof(((struct {struct} *)0)->{f}));')
    for macro in CONSTANTS:
        lines.append(f'printf("const {macro} %llu\\n", (unsigned long long)({macro}));')
    lines.append('printf("device %s\\n", MSRDRV_DEVICE);')
    lines.append("return 0; }")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if CC is None:
        pytest.skip("no C compiler (cc/gcc/clang) to compile dkms/msrdrv.h")
    tmp = tmp_path_factory.mktemp("abi")
    src = tmp / "abi.c"
    src.write_text(c_program())
    exe = tmp / "abi"
    subprocess.run([CC, "-Wall", "-Werror", "-I", str(ROOT / "dkms"), "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return dict(line.rsplit(" ", 1) for line in out.splitlines())


def test_struct_layout(c_facts: dict[str, str]) -> None:
    from msrctl.device.abi import ffi

    for struct, fields in STRUCTS.items():
        ctype = f"struct {struct}"
        assert ffi.sizeof(ctype) == int(c_facts[f"sizeof {struct}"]), struct
        for f in fields:
            assert ffi.offsetof(ctype, f) == int(c_facts[f"offsetof {struct}.{f}"]), f"{struct}.{f}"
            if f"{struct}.{f}" in FLEXIBLE:
                continue
            field_type = dict(ffi.typeof(ctype).fields)[f].type
            assert ffi.sizeof(field_type) == int(c_facts[f"fieldsize {struct}.{f}"]), f"{struct}.{f}"


def test_constants(c_facts: dict[str, str]) -> None:
    from msrctl.device import abi

    for macro, attr in CONSTANTS.items():
        assert getattr(abi, attr) == int(c_facts[f"const {macro}"]), macro
    assert abi.DEVICE == c_facts["device"]


# Macros with no msrctl.device.abi counterpart: masks of the others, the device path
# (checked above), the version buffer (checked as a field size).
UNMIRRORED = {"MSRDRV_OP_MAX", "MSRDRV_OPF_ALL", "MSRDRV_BATCH_ALL", "MSRDRV_ALLOW_ALL", "MSRDRV_VERSION_LEN"}


def test_every_header_constant_is_mirrored() -> None:
    """A bit added to msrdrv.h must be added to msrctl.device.abi (and to CONSTANTS) too."""
    import re

    header = (ROOT / "dkms" / "msrdrv.h").read_text()
    macros = set(re.findall(r"^#define\s+((?:MSRDRV|MSR|IOCTL)_[A-Z0-9_]+)\s+\S", header, re.M))
    macros -= {"MSRDRV_DEVICE", *UNMIRRORED}
    macros -= {m for m in macros if m.startswith("MSR_") and m != "MSR_VEC_LIMIT"}  # the seed's op aliases
    assert macros <= set(CONSTANTS), sorted(macros - set(CONSTANTS))
