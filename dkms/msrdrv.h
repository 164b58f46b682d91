/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * msrdrv user-space ABI: batched, fault-safe MSR access via /dev/msrdrv.
 *
 * Every structure uses fixed-width fields with explicit padding so that
 * 32-bit and 64-bit callers share one layout; user pointers travel as __u64.
 */
#ifndef _UAPI_LINUX_MSRDRV_H
#define _UAPI_LINUX_MSRDRV_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#define MSRDRV_DEVICE		"/dev/msrdrv"
#define MSRDRV_ABI_VERSION	1

/* Op codes: the seed driver's command set, with the same numbers. */
#define MSRDRV_OP_NOP		0
#define MSRDRV_OP_READ		1
#define MSRDRV_OP_WRITE		2
#define MSRDRV_OP_STOP		3
#define MSRDRV_OP_RDTSC		4
#define MSRDRV_OP_MAX		MSRDRV_OP_RDTSC

/* msrdrv_op.flags: WRITE changes only the bits set in mask. */
#define MSRDRV_OPF_MASKED	_BITUL(0)
#define MSRDRV_OPF_ALL		MSRDRV_OPF_MASKED

/* msrdrv_op.cpu: run on whichever CPU issues the ioctl. */
#define MSRDRV_CPU_SELF		0xffffffffU

/*
 * One operation.  Ops aimed at the same CPU run in array order inside one
 * cross-call with interrupts off; ops for different CPUs run concurrently.
 * A STOP ends the batch: later ops are neither run nor written back.
 *
 * value: READ and RDTSC return the value here; WRITE takes it from here and,
 *        with MSRDRV_OPF_MASKED, returns the full value it wrote.
 * err:   written back for every op run: 0, or -EIO (MSR faulted),
 *        -ENXIO (CPU offline or absent), -EPERM (write refused: no
 *        CAP_SYS_RAWIO, lockdown or writes disabled), -EACCES (not allowed
 *        by the allowlist).
 */
struct msrdrv_op {
	__u16 op;
	__u16 flags;
	__u32 cpu;
	__u32 msr;
	__s32 err;
	__u64 value;
	__u64 mask;
};

/*
 * Batch header.  The ioctl returns 0 once the batch ran, even when some ops
 * failed (nerrs counts them); a negative errno means nothing ran: EPROTO
 * (abi_version), EINVAL (unknown op or flag, nonzero reserved field),
 * E2BIG (nops above max_ops), EFAULT (bad pointer), ENOMEM.
 */
struct msrdrv_batch {
	__u32 abi_version;
	__u32 flags;		/* none defined yet: must be 0 */
	__u32 nops;
	__u32 ndone;		/* out: ops processed, a STOP included */
	__u32 nerrs;		/* out: processed ops whose err is not 0 */
	__u32 reserved;		/* must be 0 */
	__u64 ops;		/* user address of struct msrdrv_op[nops] */
};

/* msrdrv_info.features */
#define MSRDRV_FEAT_MASKED_WRITE	_BITULL(0)
#define MSRDRV_FEAT_MULTI_CPU		_BITULL(1)
#define MSRDRV_FEAT_LEGACY_CMDS		_BITULL(2)
#define MSRDRV_FEAT_ALLOWLIST		_BITULL(3)

/* msrdrv_info.access: what this open file may do. */
#define MSRDRV_ACCESS_RAWIO		_BITUL(0)	/* opener had CAP_SYS_RAWIO */
#define MSRDRV_ACCESS_WRITE		_BITUL(1)	/* writes possible at all */
#define MSRDRV_ACCESS_LOCKDOWN		_BITUL(2)	/* kernel lockdown forbids writes */

#define MSRDRV_VERSION_LEN	32

struct msrdrv_info {
	__u32 abi_version;
	__u32 max_ops;
	__u64 features;
	__u32 nr_cpu_ids;
	__u32 access;
	__u32 allowlist_entries;
	__u32 reserved0;
	char version[MSRDRV_VERSION_LEN];	/* module version, NUL-terminated */
	__u64 reserved[4];
};

/*
 * Allowlist for openers without CAP_SYS_RAWIO: each entry names an MSR, may
 * allow reading it (MSRDRV_ALLOW_READ) and allows writing the bits set in
 * write_mask (writes become masked read-modify-writes).  SET needs
 * CAP_SYS_ADMIN and replaces the whole list at once; entries must be sorted
 * by msr without duplicates.  nentries == 0 removes the list.  GET takes the
 * room in nentries and returns the number in force there.
 */
#define MSRDRV_ALLOW_READ	_BITUL(0)
#define MSRDRV_ALLOW_ALL	MSRDRV_ALLOW_READ
#define MSRDRV_ALLOWLIST_MAX	4096

struct msrdrv_allow_entry {
	__u32 msr;
	__u32 flags;
	__u64 write_mask;
};

struct msrdrv_allowlist {
	__u32 abi_version;
	__u32 nentries;
	__u64 entries;		/* user address of struct msrdrv_allow_entry[] */
};

#define MSRDRV_IOC_MAGIC	0xB7
#define MSRDRV_IOC_INFO		_IOR(MSRDRV_IOC_MAGIC, 0x00, struct msrdrv_info)
#define MSRDRV_IOC_BATCH	_IOWR(MSRDRV_IOC_MAGIC, 0x01, struct msrdrv_batch)
#define MSRDRV_IOC_SET_ALLOWLIST \
	_IOW(MSRDRV_IOC_MAGIC, 0x02, struct msrdrv_allowlist)
#define MSRDRV_IOC_GET_ALLOWLIST \
	_IOWR(MSRDRV_IOC_MAGIC, 0x03, struct msrdrv_allowlist)

/*
 * The seed driver's interface, kept for existing programs: an array of at
 * most MSR_VEC_LIMIT commands (the seed's struct MsrInOut, same layout),
 * run in order on the calling CPU until a MSR_STOP.  READ and RDTSC store
 * their result in value.  The ioctl fails with EIO if an op faulted and
 * EPERM if a write was refused; values of the ops that did run are still
 * copied back.
 */
#define MSR_NOP			MSRDRV_OP_NOP
#define MSR_READ		MSRDRV_OP_READ
#define MSR_WRITE		MSRDRV_OP_WRITE
#define MSR_STOP		MSRDRV_OP_STOP
#define MSR_RDTSC		MSRDRV_OP_RDTSC
#define MSR_VEC_LIMIT		32

struct msrdrv_legacy_cmd {
	__u32 op;
	__u32 ecx;
	union {
		struct {
			__u32 eax;
			__u32 edx;
		};
		__u64 value;
	};
};

#define IOCTL_MSR_CMDS		_IO(223, 1)

#endif /* _UAPI_LINUX_MSRDRV_H */
