// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv access policy.  Openers with CAP_SYS_RAWIO may read anything and
 * write anything the hardware accepts; everyone else may read but not write.
 * Writes are refused under kernel lockdown or with allow_writes=0, and taint
 * the kernel like the in-tree msr driver does.
 */

#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/security.h>

#include "msrdrv_policy.h"

static bool allow_writes = true;
module_param(allow_writes, bool, 0644);
MODULE_PARM_DESC(allow_writes, "Allow MSR writes at all (default Y)");

int msrdrv_policy_init(void)
{
	return 0;
}

void msrdrv_policy_exit(void)
{
}

void msrdrv_policy_begin(struct msrdrv_policy_ctx *ctx, bool rawio)
{
	ctx->rawio = rawio;
	ctx->writes_checked = false;
	ctx->write_err = 0;
	ctx->tainted = false;
}

/* Lockdown and the switch are asked once per batch, on its first write. */
static int msrdrv_policy_write_gate(struct msrdrv_policy_ctx *ctx)
{
	if (!ctx->writes_checked) {
		ctx->writes_checked = true;
		if (!READ_ONCE(allow_writes))
			ctx->write_err = -EPERM;
		else
			ctx->write_err = security_locked_down(LOCKDOWN_MSR);
	}
	return ctx->write_err;
}

int msrdrv_policy_check(struct msrdrv_policy_ctx *ctx, struct msrdrv_op *op)
{
	int err;

	if (op->op != MSRDRV_OP_WRITE)
		return 0;
	if (!ctx->rawio)
		return -EPERM;
	err = msrdrv_policy_write_gate(ctx);
	if (err)
		return err;
	if (!ctx->tainted) {
		add_taint(TAINT_CPU_OUT_OF_SPEC, LOCKDEP_STILL_OK);
		ctx->tainted = true;
	}
	return 0;
}

void msrdrv_policy_end(struct msrdrv_policy_ctx *ctx)
{
}

u32 msrdrv_policy_access(void)
{
	u32 access = 0;

	if (READ_ONCE(allow_writes))
		access |= MSRDRV_ACCESS_WRITE;
	return access;
}

u32 msrdrv_policy_entries(void)
{
	return 0;
}

long msrdrv_policy_ioctl(struct file *file, unsigned int cmd,
			 void __user *uarg)
{
	return -ENOTTY;
}
