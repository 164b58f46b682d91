"""Build-time: the C declarations of dkms/msrdrv.h for cffi.

`python -m msrctl.abi_build` writes msrctl/_abi_cffi.py (out-of-line ABI
mode: no compiler needed, and no C parser at import time).  A host test
rebuilds it and checks the committed file still matches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

CDEF = """
struct msrdrv_op {
    uint16_t op;
    uint16_t flags;
    uint32_t cpu;
    uint32_t msr;
    int32_t err;
    uint64_t value;
    uint64_t mask;
};
struct msrdrv_batch {
    uint32_t abi_version;
    uint32_t flags;
    uint32_t nops;
    uint32_t ndone;
    uint32_t nerrs;
    uint32_t self_cpu;
    uint64_t ops;
};
struct msrdrv_info {
    uint32_t abi_version;
    uint32_t max_ops;
    uint64_t features;
    uint32_t nr_cpu_ids;
    uint32_t access;
    uint32_t allowlist_entries;
    uint32_t section_ops;
    char version[32];
    uint64_t reserved[4];
};
struct msrdrv_allow_entry {
    uint32_t msr;
    uint32_t flags;
    uint64_t write_mask;
};
struct msrdrv_allowlist {
    uint32_t abi_version;
    uint32_t nentries;
    uint64_t entries;
};
struct msrdrv_legacy_cmd {
    uint32_t op;
    uint32_t ecx;
    uint64_t value;
};
int ioctl(int fd, unsigned long request, ...);
"""

MODULE = "msrctl._abi_cffi"


def make_ffi() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source(MODULE, None)
    return ffi


def build(outdir: Path) -> Path:
    """Write _abi_cffi.py into outdir; returns its path."""
    target = outdir / "_abi_cffi.py"
    make_ffi().emit_python_code(str(target))
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent))
