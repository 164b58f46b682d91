"""Build-time: the C declarations of dkms/msrdrv.h for cffi.

`python -m msrctl.device.abi_build` writes msrctl/device/_abi_cffi.py (out-of-line ABI
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
    uint64_t sampler_min_period_ns;
    uint32_t sampler_max_ops;
    uint32_t sampler_max_kib;
    uint64_t reserved[2];
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
struct msrdrv_sampler_start {
    uint32_t abi_version;
    uint32_t flags;
    uint32_t nops;
    uint32_t nrecords;
    uint64_t period_ns;
    uint64_t ops;
    uint64_t cpus;
    uint32_t cpus_size;
    uint32_t watermark;
    uint32_t nrings;
    uint32_t record_size;
    uint64_t ring_stride;
    uint64_t mmap_size;
    uint64_t reserved[4];
};
struct msrdrv_sampler_header {
    uint32_t abi_version;
    uint32_t nrings;
    uint32_t nops;
    uint32_t record_size;
    uint32_t nrecords;
    uint32_t watermark;
    uint64_t period_ns;
    uint64_t ring_offset;
    uint64_t ring_stride;
    uint64_t data_offset;
    uint64_t revoked;
    uint32_t tsc_khz;
    uint32_t reserved0;
    uint64_t reserved[7];
};
struct msrdrv_ring_header {
    uint32_t cpu;
    uint32_t state;
    uint64_t head;
    uint64_t tail;
    uint64_t dropped;
    uint64_t missed;
    uint64_t revoked;
    uint64_t throttled;
    uint64_t reserved[1];
};
struct msrdrv_record {
    uint64_t seq;
    uint64_t tsc;
    uint64_t errs;
    uint32_t type;
    uint32_t cpu;
    uint64_t values[];
};
struct msrdrv_sampler_consume {
    uint32_t abi_version;
    uint32_t nrings;
    uint64_t tails;
};
int ioctl(int fd, unsigned long request, ...);
"""

MODULE = "msrctl.device._abi_cffi"


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
