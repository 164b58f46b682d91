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
 * One operation.  Ops aimed at the same CPU run in array order; ops for
 * different CPUs run concurrently.  A CPU runs its ops with interrupts off
 * in sections of at most msrdrv_info.section_ops ops, letting interrupts
 * and other tasks in between sections: a batch is an atomic snapshot on a
 * CPU only within one section, or as a whole with MSRDRV_BATCH_SNAPSHOT.
 * Even within a section, NMIs (perf's handler writes the PMU's global
 * control) and SMIs may run between two ops.  A STOP ends the batch: later
 * ops must be readable but are neither validated, run nor written back.
 *
 * The kernel writes only value and err; op, flags, cpu, msr and mask are
 * never written, so a batch can be submitted again unchanged.
 *
 * value: READ and RDTSC return the value here; WRITE takes it from here and,
 *        with MSRDRV_OPF_MASKED, returns the full value it wrote, but to an
 *        opener without CAP_SYS_RAWIO only when its allowlist entry allows
 *        READ (otherwise value is left as it was).
 * err:   written back for every op run: 0 or a negative errno:
 *        -EIO    the MSR faulted (not implemented, or a reserved bit set)
 *        -ENXIO  the CPU is offline or does not exist
 *        -EBADF  a WRITE on a file not opened for writing
 *        -EPERM  a write refused by kernel lockdown or allow_writes=N, or,
 *                for a task that disabled the TSC (PR_SET_TSC), RDTSC or
 *                a READ of a register that counts at its rate: the TSC
 *                (0x10), MPERF (0xe7), AMD's read-only MPERF (0xc00000e7)
 *                and the reference-cycles counter IA32_FIXED_CTR2 (0x30b)
 *        -EACCES a masked write whose mask is 0 (it would only put back
 *                what it read); and for openers without CAP_SYS_RAWIO: no
 *                allowlist is loaded, the allowlist does not permit this
 *                access, a masked write would change no permitted bit, or
 *                a WRITE to a kernel-control MSR
 * A WRITE whose effective mask is all ones is a plain write: the register
 * is not read first, so write-only MSRs can be listed with mask ~0.
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

/* msrdrv_batch.flags: run each CPU's ops in one interrupts-off section. */
#define MSRDRV_BATCH_SNAPSHOT	_BITUL(0)
#define MSRDRV_BATCH_ALL	MSRDRV_BATCH_SNAPSHOT

/*
 * Batch header.  The ioctl returns 0 once the batch ran, even when some ops
 * failed (nerrs counts them).  A negative errno means no MSR was written:
 * EPROTO (abi_version), EINVAL (unknown op or flag), E2BIG (nops above the
 * file's max_ops, or with MSRDRV_BATCH_SNAPSHOT more than section_ops ops
 * that would run on one CPU), EBADF (file not opened for reading), ENOMEM,
 * EFAULT (the header or the ops up to the first STOP are not readable and
 * writable).  A batch with WRITE ops is checked writable before any op
 * runs; one that only reads may have read MSRs before its results could
 * not be stored.  The one exception: if another thread unmaps or
 * write-protects the memory while the batch runs, the ops ran and the call
 * still fails with EFAULT.  The kernel writes only the header's ndone,
 * nerrs and self_cpu.
 */
struct msrdrv_batch {
	__u32 abi_version;
	__u32 flags;		/* MSRDRV_BATCH_* */
	__u32 nops;
	__u32 ndone;		/* out: ops processed, a STOP included */
	__u32 nerrs;		/* out: processed ops whose err is not 0 */
	__u32 self_cpu;		/* out: the CPU that ran MSRDRV_CPU_SELF ops */
	__u64 ops;		/* user address of struct msrdrv_op[nops] */
};

/* msrdrv_info.features */
#define MSRDRV_FEAT_MASKED_WRITE	_BITULL(0)
#define MSRDRV_FEAT_MULTI_CPU		_BITULL(1)
#define MSRDRV_FEAT_LEGACY_CMDS		_BITULL(2)
#define MSRDRV_FEAT_ALLOWLIST		_BITULL(3)
#define MSRDRV_FEAT_SNAPSHOT		_BITULL(4)	/* MSRDRV_BATCH_SNAPSHOT */
#define MSRDRV_FEAT_PROTECTED		_BITULL(5)	/* kernel-address MSRs refused */
#define MSRDRV_FEAT_SAMPLER		_BITULL(6)	/* MSRDRV_IOC_SAMPLER_START */
#define MSRDRV_FEAT_KERNEL_CONTROL	_BITULL(7)	/* no member writes kernel control */

/* msrdrv_info.access: what this open file may do. */
#define MSRDRV_ACCESS_RAWIO		_BITUL(0)	/* opener had CAP_SYS_RAWIO */
#define MSRDRV_ACCESS_WRITE		_BITUL(1)	/* writes possible at all */
#define MSRDRV_ACCESS_LOCKDOWN		_BITUL(2)	/* kernel lockdown forbids writes */
#define MSRDRV_ACCESS_ADMIN		_BITUL(3)	/* opener had CAP_SYS_ADMIN */
#define MSRDRV_ACCESS_FMODE_WRITE	_BITUL(4)	/* file opened for writing */

#define MSRDRV_VERSION_LEN	32

struct msrdrv_info {
	__u32 abi_version;
	__u32 max_ops;		/* most ops in one batch on this file */
	__u64 features;
	__u32 nr_cpu_ids;
	__u32 access;
	__u32 allowlist_entries;
	__u32 section_ops;	/* most ops a CPU runs with interrupts off */
	char version[MSRDRV_VERSION_LEN];	/* module version, NUL-terminated */
	/* The sampler's bounds for this file (lower without CAP_SYS_RAWIO). */
	__u64 sampler_min_period_ns;
	__u32 sampler_max_ops;
	__u32 sampler_max_kib;	/* most memory one sampler's mapping may take */
	__u64 reserved[2];
};

/*
 * Allowlist for openers without CAP_SYS_RAWIO: each entry names an MSR, may
 * allow reading it (MSRDRV_ALLOW_READ) and allows writing the bits set in
 * write_mask (writes become masked read-modify-writes).  With no list
 * loaded such openers may read and write nothing.  MSRs that hold kernel
 * addresses or kernel control flow (SYSCALL/SYSENTER entry points, segment
 * bases, DS/PEBS/PT buffers, branch records, shadow stacks, ...) are never
 * theirs: a list naming one is refused.  MSRs that steer the kernel (EFER,
 * FMASK, the APIC, MTRRs and PAT, mitigation controls, the TSC and its
 * kin, machine-check banks, ...: MSRDRV_FEAT_KERNEL_CONTROL) are never
 * theirs to write: a list may make them readable, but an entry with a
 * write_mask on one is refused.
 *
 * SET needs a file opened for writing (else EBADF) by a CAP_SYS_ADMIN
 * opener (else EPERM) and replaces the whole list at once.  Errors (the
 * old list stays): EFAULT (the header or entries unreadable), EPROTO
 * (abi_version), E2BIG (nentries above MSRDRV_ALLOWLIST_MAX), ENOMEM,
 * EINVAL (entries not sorted by msr without duplicates, or unknown flags),
 * EACCES (a protected MSR, or a write mask on a kernel-control one).  When
 * SET returns, no op checked against the old list is still running.
 * nentries == 0 removes the list.  GET takes the room in nentries and
 * returns the number in force there; errors EBADF (file not opened for
 * reading), EFAULT, EPROTO, ENOMEM.
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

/* 0xC6: free in Documentation/userspace-api/ioctl/ioctl-number.rst */
#define MSRDRV_IOC_MAGIC	0xC6
#define MSRDRV_IOC_INFO		_IOR(MSRDRV_IOC_MAGIC, 0x00, struct msrdrv_info)
#define MSRDRV_IOC_BATCH	_IOWR(MSRDRV_IOC_MAGIC, 0x01, struct msrdrv_batch)
#define MSRDRV_IOC_SET_ALLOWLIST \
	_IOW(MSRDRV_IOC_MAGIC, 0x02, struct msrdrv_allowlist)
#define MSRDRV_IOC_GET_ALLOWLIST \
	_IOWR(MSRDRV_IOC_MAGIC, 0x03, struct msrdrv_allowlist)

/*
 * Kernel-timed sampling.  SAMPLER_START registers an op set (READ and RDTSC
 * ops only, cpu MSRDRV_CPU_SELF: "the sampled CPU", flags and mask 0) with
 * a set of CPUs, a period and a ring size, and returns a new file
 * descriptor (O_RDONLY, close-on-exec): the sampler.  Each sampled CPU runs
 * the ops every period_ns from its own hrtimer with interrupts off and
 * appends one struct msrdrv_record to its own ring.  The sampler's file is
 * mapped read-only (mmap, MAP_SHARED, offset 0, mmap_size bytes): a
 * struct msrdrv_sampler_header page, then per sampled CPU, in ascending CPU
 * order, ring_stride bytes: a struct msrdrv_ring_header page followed by
 * nrecords records of record_size bytes.  Record seq lives at slot
 * seq % nrecords.  poll() reports EPOLLIN once a ring holds watermark
 * unread records or an unread OFFLINE, ONLINE or REVOKED record; the reader
 * hands records back with MSRDRV_IOC_SAMPLER_CONSUME on the sampler's fd.
 * A full ring drops (and counts) new records; unread ones are never
 * overwritten.  MSRDRV_IOC_SAMPLER_STOP on the sampler's fd stops every
 * ring for good (the records stay readable); closing its last fd and
 * mapping stops and frees it.  The module cannot be unloaded while a
 * sampler's fd or mapping exists.  A task that disabled the TSC
 * (PR_SET_TSC) can neither map a sampler nor CONSUME (EPERM); a mapping it
 * already holds, or shares with another task, stays readable.
 *
 * Errors (nothing started): EBADF the device file not opened for reading;
 * EFAULT; EPROTO abi_version; EINVAL flags, reserved or an op's flags,
 * mask or cpu not 0/0/MSRDRV_CPU_SELF, an unknown op code, nrecords not a
 * power of two (2 or more), watermark not 1..nrecords, an empty CPU set,
 * cpus_size 0 or above MSRDRV_SAMPLER_CPUS_SIZE_MAX; EOPNOTSUPP a WRITE,
 * NOP or STOP op; E2BIG nops 0 or above the file's sampler_max_ops;
 * ERANGE period_ns below the file's sampler_min_period_ns or above
 * MSRDRV_SAMPLER_PERIOD_MAX_NS; EFBIG mmap_size above sampler_max_kib KiB;
 * ENXIO a CPU at or above nr_cpu_ids or not possible (an offline CPU is
 * fine: its ring starts when it comes online); EACCES (no CAP_SYS_RAWIO)
 * an op the allowlist does not let this file read; EPERM the caller
 * disabled the TSC (PR_SET_TSC): every record carries it; ENOEXEC a 32-bit
 * (compat) caller, which cannot read the rings' 64-bit head and tail
 * without tearing them; EBUSY too many
 * samplers already (module parameters sampler_max, sampler_max_user);
 * EDQUOT one tick of the op set, timed at start, takes more of each period
 * than this opener's samplers may take of a CPU (sampler_cpu_pct,
 * sampler_cpu_pct_user); ENOMEM; EMFILE.
 *
 * Interrupt budget: per CPU, all samplers' ticks may take sampler_cpu_pct
 * percent of each 10 ms window, those of openers without CAP_SYS_RAWIO
 * sampler_cpu_pct_user; a CPU's samplers over it skip to the next window
 * and count the skipped periods in their ring's throttled.
 *
 * Policy: checked at start, and again whenever the allowlist is replaced:
 * an op the new list no longer lets the opener read is revoked for good.
 * When SET_ALLOWLIST returns no CPU reads it any more; each ring then
 * carries a REVOKED record (errs: the newly revoked ops), its later records
 * set those ops' errs bits with value 0, and both headers' revoked say so.
 */
#define MSRDRV_SAMPLER_MAX_OPS		64	/* errs is a 64-bit mask */
#define MSRDRV_SAMPLER_CPUS_SIZE_MAX	1024	/* bytes: 8192 CPUs */
#define MSRDRV_SAMPLER_PERIOD_MAX_NS	60000000000ULL

struct msrdrv_sampler_start {
	__u32 abi_version;
	__u32 flags;		/* none yet: 0 */
	__u32 nops;
	__u32 nrecords;		/* records per ring: a power of two */
	__u64 period_ns;
	__u64 ops;		/* user address of struct msrdrv_op[nops] */
	__u64 cpus;		/* user address of a CPU bitmap (bit n: CPU n) */
	__u32 cpus_size;	/* its size in bytes */
	__u32 watermark;	/* unread records in a ring that wake poll() */
	__u32 nrings;		/* out: the CPUs in the set */
	__u32 record_size;	/* out: bytes per record */
	__u64 ring_stride;	/* out: bytes from one ring header to the next */
	__u64 mmap_size;	/* out: bytes to map */
	__u64 reserved[4];	/* must be 0 */
};

/* Offset 0 of the mapping. */
struct msrdrv_sampler_header {
	__u32 abi_version;
	__u32 nrings;
	__u32 nops;
	__u32 record_size;
	__u32 nrecords;
	__u32 watermark;
	__u64 period_ns;
	__u64 ring_offset;	/* first ring header, from the mapping's start */
	__u64 ring_stride;
	__u64 data_offset;	/* first record, from its ring header */
	__u64 revoked;		/* ops revoked by allowlist changes: bit i, op i */
	__u32 tsc_khz;		/* the kernel's TSC frequency (0: unknown) */
	__u32 reserved0;
	__u64 reserved[7];
};

/* msrdrv_ring_header.state */
#define MSRDRV_RING_OFFLINE	0	/* the CPU is offline: no records */
#define MSRDRV_RING_RUNNING	1
#define MSRDRV_RING_STOPPED	2	/* MSRDRV_IOC_SAMPLER_STOP */

/* One per sampled CPU, read-only to user space like everything mapped. */
struct msrdrv_ring_header {
	__u32 cpu;
	__u32 state;		/* MSRDRV_RING_* */
	__u64 head;		/* records written: the next goes to slot head % nrecords */
	__u64 tail;		/* records handed back by SAMPLER_CONSUME */
	__u64 dropped;		/* records lost to a full ring */
	__u64 missed;		/* periods the timer skipped, having fired late */
	__u64 revoked;		/* the revoked ops this ring reported so far */
	__u64 throttled;	/* periods skipped over the interrupt budget */
	__u64 reserved[1];
};

/* msrdrv_record.type */
#define MSRDRV_REC_SAMPLE	0	/* the ops ran: values[] and errs */
#define MSRDRV_REC_OFFLINE	1	/* the CPU went offline: sampling stopped */
#define MSRDRV_REC_ONLINE	2	/* it came back: sampling resumed */
#define MSRDRV_REC_REVOKED	3	/* errs: ops revoked by the allowlist */

/*
 * One record: record_size bytes, nops values.  seq counts every record
 * this ring produced, dropped ones included, so a gap in seq is exactly
 * the records a full ring dropped there.  tsc is RDTSC when the record was
 * made.  errs bit i: op i gave no value (its MSR faulted, or it was
 * revoked); its value is then 0.
 */
struct msrdrv_record {
	__u64 seq;
	__u64 tsc;
	__u64 errs;
	__u32 type;		/* MSRDRV_REC_* */
	__u32 cpu;
	__u64 values[];
};

/*
 * On the sampler's fd: hand back records up to tails[i] in ring i (in
 * ring order); each must lie between the ring's tail and head (else
 * EINVAL, and no ring changes).  nrings must be the sampler's (EINVAL).
 * Also EFAULT; EPROTO abi_version; ENOMEM; EPERM the caller disabled the
 * TSC (PR_SET_TSC).
 */
struct msrdrv_sampler_consume {
	__u32 abi_version;
	__u32 nrings;
	__u64 tails;		/* user address of __u64[nrings] */
};

#define MSRDRV_IOC_SAMPLER_START \
	_IOWR(MSRDRV_IOC_MAGIC, 0x04, struct msrdrv_sampler_start)
#define MSRDRV_IOC_SAMPLER_CONSUME \
	_IOW(MSRDRV_IOC_MAGIC, 0x05, struct msrdrv_sampler_consume)
#define MSRDRV_IOC_SAMPLER_STOP		_IO(MSRDRV_IOC_MAGIC, 0x06)

/*
 * The seed driver's interface, kept for existing programs: an array of at
 * most MSR_VEC_LIMIT commands (the seed's struct MsrInOut, same layout),
 * run in order on the calling CPU until a MSR_STOP, under the same policy
 * as a batch.  READ and RDTSC store their result in value.  The commands up
 * to the STOP must be writable (else EFAULT and nothing ran).  If an op
 * fails the ioctl returns that op's error (EIO, EPERM, EACCES, EBADF, as
 * for a batch) after the values of the ops that ran are copied back.
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
