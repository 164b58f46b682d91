/* SPDX-License-Identifier: GPL-2.0 */
/* msrdrv access policy: who may read and write which MSR. */
#ifndef _MSRDRV_POLICY_H
#define _MSRDRV_POLICY_H

#include <linux/fs.h>
#include <linux/list.h>
#include <linux/types.h>

#include "msrdrv.h"

struct msrdrv_allowlist_k;

/* Per open file: the opener's privileges, fixed at open like the msr driver. */
struct msrdrv_file {
	bool rawio;	/* CAP_SYS_RAWIO: anything the hardware and lockdown allow */
	bool admin;	/* CAP_SYS_ADMIN: may replace the allowlist */
};

/*
 * One batch's view of the policy.  gate() fixes the opener's rights and
 * whether writes may happen at all (it may sleep).  Then either begin() ..
 * end(), an SRCU read-side section that may sleep, or, with preemption off
 * throughout, begin_atomic() .. end_atomic(), an RCU-sched one.  The ops
 * run inside, so a SET_ALLOWLIST that returns has waited for every batch
 * that saw the old list.
 */
struct msrdrv_policy {
	const struct msrdrv_allowlist_k *list;
	int srcu_idx;
	bool rawio;
	bool has_writes;
	int write_err;	/* 0, or why every write of this batch is refused */
};

/*
 * A standing reader of MSRs (a sampler): its READ ops are checked when it
 * is added and again under every new allowlist.  revoke() is called, under
 * the allowlist's mutex (it may not take it), with the ops the new list
 * denies; when SET returns, every RCU-sched reader (an hrtimer callback)
 * that could have missed it has finished.
 */
struct msrdrv_policy_watch {
	struct list_head node;
	const struct msrdrv_op *ops;
	u32 nops;
	bool rawio;
	void (*revoke)(struct msrdrv_policy_watch *w, u64 denied);
};

int msrdrv_policy_init(void);
void msrdrv_policy_exit(void);
void msrdrv_policy_gate(struct msrdrv_policy *pol, const struct file *file,
			bool has_writes);
void msrdrv_policy_begin(struct msrdrv_policy *pol);
void msrdrv_policy_begin_atomic(struct msrdrv_policy *pol);
int msrdrv_policy_check(const struct msrdrv_policy *pol,
			const struct msrdrv_op *op);
u64 msrdrv_policy_write_mask(const struct msrdrv_policy *pol,
			     const struct msrdrv_op *op, bool *may_read);
void msrdrv_policy_rawio_writes(u32 msr, unsigned int cpu, u32 nwrites);
void msrdrv_policy_end(struct msrdrv_policy *pol);
void msrdrv_policy_end_atomic(struct msrdrv_policy *pol);
int msrdrv_policy_watch_add(struct msrdrv_policy_watch *w);
void msrdrv_policy_watch_del(struct msrdrv_policy_watch *w);
u32 msrdrv_policy_access(const struct file *file);
u32 msrdrv_policy_entries(void);
long msrdrv_policy_ioctl(struct file *file, unsigned int cmd,
			 void __user *uarg);

#endif /* _MSRDRV_POLICY_H */
