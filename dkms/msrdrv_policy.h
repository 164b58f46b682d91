/* SPDX-License-Identifier: GPL-2.0 */
/* msrdrv access policy: who may read and write which MSR. */
#ifndef _MSRDRV_POLICY_H
#define _MSRDRV_POLICY_H

#include <linux/fs.h>
#include <linux/types.h>

#include "msrdrv.h"

struct msrdrv_allowlist_k;

/*
 * State held across one batch's policy checks.  begin() enters an RCU
 * read-side section that end() leaves: nothing in between may sleep.
 */
struct msrdrv_policy_ctx {
	const struct msrdrv_allowlist_k *list;
	bool rawio;
	bool writes_checked;
	int write_err;
	bool tainted;
};

int msrdrv_policy_init(void);
void msrdrv_policy_exit(void);
void msrdrv_policy_begin(struct msrdrv_policy_ctx *ctx, bool rawio);
int msrdrv_policy_check(struct msrdrv_policy_ctx *ctx, struct msrdrv_op *op);
void msrdrv_policy_end(struct msrdrv_policy_ctx *ctx);
u32 msrdrv_policy_access(void);
u32 msrdrv_policy_entries(void);
long msrdrv_policy_ioctl(struct file *file, unsigned int cmd,
			 void __user *uarg);

#endif /* _MSRDRV_POLICY_H */
