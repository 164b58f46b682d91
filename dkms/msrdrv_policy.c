// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv access policy.
 *
 * Openers with CAP_SYS_RAWIO may read anything and write anything the
 * hardware accepts; their writes taint the kernel like the in-tree msr
 * driver's.  Everyone else (members of group msr) is bound by the allowlist
 * an admin loaded: a listed MSR may be read if its entry says so, and written
 * only in the bits of its write mask (the write becomes a masked
 * read-modify-write).  While no list is loaded they may read any MSR (unless
 * read_without_allowlist=N) and write none.  All writes are refused under
 * kernel lockdown and with allow_writes=N.
 */

#include <linux/bsearch.h>
#include <linux/capability.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "msrdrv_policy.h"

static bool allow_writes = true;
module_param(allow_writes, bool, 0644);
MODULE_PARM_DESC(allow_writes, "Allow MSR writes at all (default Y)");

static bool read_without_allowlist = true;
module_param(read_without_allowlist, bool, 0644);
MODULE_PARM_DESC(read_without_allowlist,
		 "While no allowlist is loaded, let openers without CAP_SYS_RAWIO read any MSR (default Y)");

struct msrdrv_allowlist_k {
	u32 n;
	struct msrdrv_allow_entry e[];	/* sorted by msr, no duplicates */
};

/* Readers take RCU; a SET swaps the whole list so a batch sees one list. */
static struct msrdrv_allowlist_k __rcu *allowlist;
static DEFINE_MUTEX(allowlist_lock);

int msrdrv_policy_init(void)
{
	return 0;
}

void msrdrv_policy_exit(void)
{
	kvfree(rcu_dereference_protected(allowlist, true));
	RCU_INIT_POINTER(allowlist, NULL);
}

void msrdrv_policy_begin(struct msrdrv_policy_ctx *ctx, bool rawio)
{
	ctx->rawio = rawio;
	ctx->writes_checked = false;
	ctx->write_err = 0;
	ctx->tainted = false;
	rcu_read_lock();
	ctx->list = rcu_dereference(allowlist);
}

void msrdrv_policy_end(struct msrdrv_policy_ctx *ctx)
{
	ctx->list = NULL;
	rcu_read_unlock();
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

static int msrdrv_entry_cmp(const void *key, const void *elt)
{
	u32 msr = *(const u32 *)key;
	const struct msrdrv_allow_entry *e = elt;

	if (msr < e->msr)
		return -1;
	return msr > e->msr;
}

static const struct msrdrv_allow_entry *
msrdrv_policy_lookup(const struct msrdrv_allowlist_k *list, u32 msr)
{
	return bsearch(&msr, list->e, list->n, sizeof(list->e[0]),
		       msrdrv_entry_cmp);
}

/* Ops of openers without CAP_SYS_RAWIO, judged by the allowlist. */
static int msrdrv_policy_check_listed(struct msrdrv_policy_ctx *ctx,
				      struct msrdrv_op *op)
{
	const struct msrdrv_allow_entry *e;
	int err;

	if (!ctx->list) {
		if (op->op == MSRDRV_OP_READ)
			return READ_ONCE(read_without_allowlist) ? 0 : -EACCES;
		return -EPERM;
	}
	e = msrdrv_policy_lookup(ctx->list, op->msr);
	if (!e)
		return -EACCES;
	if (op->op == MSRDRV_OP_READ)
		return e->flags & MSRDRV_ALLOW_READ ? 0 : -EACCES;
	if (!e->write_mask)
		return -EACCES;
	err = msrdrv_policy_write_gate(ctx);
	if (err)
		return err;
	/* Bits outside the entry's mask keep their value. */
	if (!(op->flags & MSRDRV_OPF_MASKED))
		op->mask = ~0ULL;
	op->mask &= e->write_mask;
	op->flags |= MSRDRV_OPF_MASKED;
	return 0;
}

int msrdrv_policy_check(struct msrdrv_policy_ctx *ctx, struct msrdrv_op *op)
{
	int err;

	if (op->op != MSRDRV_OP_READ && op->op != MSRDRV_OP_WRITE)
		return 0;
	if (!ctx->rawio)
		return msrdrv_policy_check_listed(ctx, op);
	if (op->op == MSRDRV_OP_READ)
		return 0;
	err = msrdrv_policy_write_gate(ctx);
	if (err)
		return err;
	if (!ctx->tainted) {
		add_taint(TAINT_CPU_OUT_OF_SPEC, LOCKDEP_STILL_OK);
		ctx->tainted = true;
	}
	return 0;
}

u32 msrdrv_policy_access(void)
{
	u32 access = 0;

	if (READ_ONCE(allow_writes))
		access |= MSRDRV_ACCESS_WRITE;
	/* Under lockdown this also logs a rate-limited notice: fine here. */
	if (security_locked_down(LOCKDOWN_MSR))
		access |= MSRDRV_ACCESS_LOCKDOWN;
	return access;
}

u32 msrdrv_policy_entries(void)
{
	const struct msrdrv_allowlist_k *list;
	u32 n;

	rcu_read_lock();
	list = rcu_dereference(allowlist);
	n = list ? list->n : 0;
	rcu_read_unlock();
	return n;
}

static long msrdrv_policy_set(struct msrdrv_allowlist __user *uarg)
{
	struct msrdrv_allowlist hdr;
	struct msrdrv_allowlist_k *list = NULL, *old;
	u32 i;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&hdr, uarg, sizeof(hdr)))
		return -EFAULT;
	if (hdr.abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	if (hdr.nentries > MSRDRV_ALLOWLIST_MAX)
		return -E2BIG;
	if (hdr.nentries) {
		list = kvmalloc(struct_size(list, e, hdr.nentries),
				GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!list)
			return -ENOMEM;
		list->n = hdr.nentries;
		if (copy_from_user(list->e, u64_to_user_ptr(hdr.entries),
				   array_size(list->n, sizeof(list->e[0])))) {
			kvfree(list);
			return -EFAULT;
		}
		for (i = 0; i < list->n; i++) {
			if ((list->e[i].flags & ~MSRDRV_ALLOW_ALL) ||
			    (i && list->e[i].msr <= list->e[i - 1].msr)) {
				kvfree(list);
				return -EINVAL;
			}
		}
	}

	mutex_lock(&allowlist_lock);
	old = rcu_replace_pointer(allowlist, list,
				  lockdep_is_held(&allowlist_lock));
	mutex_unlock(&allowlist_lock);
	synchronize_rcu();
	kvfree(old);
	pr_info("allowlist %s: %u entries, by %s[%d]\n",
		list ? "loaded" : "cleared", hdr.nentries, current->comm,
		task_pid_nr(current));
	return 0;
}

static long msrdrv_policy_get(struct msrdrv_allowlist __user *uarg)
{
	struct msrdrv_allowlist hdr;
	const struct msrdrv_allowlist_k *list;
	struct msrdrv_allow_entry *copy = NULL;
	u32 n, room;
	long ret = 0;

	if (copy_from_user(&hdr, uarg, sizeof(hdr)))
		return -EFAULT;
	if (hdr.abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	room = min_t(u32, hdr.nentries, MSRDRV_ALLOWLIST_MAX);
	if (room) {
		copy = kvmalloc_array(room, sizeof(*copy),
				      GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!copy)
			return -ENOMEM;
	}
	/* Snapshot under RCU; copy to user space after, where we may sleep. */
	rcu_read_lock();
	list = rcu_dereference(allowlist);
	n = list ? list->n : 0;
	if (copy && list)
		memcpy(copy, list->e, array_size(min(room, n), sizeof(*copy)));
	rcu_read_unlock();

	if (copy && copy_to_user(u64_to_user_ptr(hdr.entries), copy,
				 array_size(min(room, n), sizeof(*copy))))
		ret = -EFAULT;
	hdr.nentries = n;
	if (!ret && copy_to_user(uarg, &hdr, sizeof(hdr)))
		ret = -EFAULT;
	kvfree(copy);
	return ret;
}

long msrdrv_policy_ioctl(struct file *file, unsigned int cmd,
			 void __user *uarg)
{
	switch (cmd) {
	case MSRDRV_IOC_SET_ALLOWLIST:
		return msrdrv_policy_set(uarg);
	case MSRDRV_IOC_GET_ALLOWLIST:
		return msrdrv_policy_get(uarg);
	default:
		return -ENOTTY;
	}
}
