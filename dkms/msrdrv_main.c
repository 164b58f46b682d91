// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv: batched, fault-safe access to x86 model-specific registers.
 *
 * One ioctl on /dev/msrdrv carries an array of ops.  The array is copied in,
 * validated and checked against the access policy, then the ops are grouped
 * by target CPU and run by one cross-call: each CPU runs its own ops in array
 * order with interrupts off, so a batch is an atomic snapshot on that CPU.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/uaccess.h>
#include <asm/msr.h>
#include <asm/tsc.h>

#include "msrdrv.h"
#include "msrdrv_policy.h"

#ifndef MSRDRV_VERSION
#define MSRDRV_VERSION "unknown"
#endif

/* 6.16 renamed the 64-bit MSR accessors; Kbuild detects which we have. */
#ifdef MSRDRV_HAVE_RDMSRQ
#define msrdrv_rdmsr_safe(msr, p)	rdmsrq_safe(msr, p)
#define msrdrv_wrmsr_safe(msr, v)	wrmsrq_safe(msr, v)
#else
#define msrdrv_rdmsr_safe(msr, p)	rdmsrl_safe(msr, p)
#define msrdrv_wrmsr_safe(msr, v)	wrmsrl_safe(msr, v)
#endif

/* The ABI is only useful if both word sizes agree on it. */
static_assert(sizeof(struct msrdrv_op) == 32);
static_assert(sizeof(struct msrdrv_batch) == 32);
static_assert(sizeof(struct msrdrv_info) == 96);
static_assert(sizeof(struct msrdrv_legacy_cmd) == 16);

#define MSRDRV_MAX_OPS_LIMIT	65536U

static unsigned int max_ops = 4096;
module_param(max_ops, uint, 0444);
MODULE_PARM_DESC(max_ops, "Most ops in one batch (1-65536, default 4096)");

/* Per open file: the opener's privilege, fixed at open like the msr driver. */
struct msrdrv_file {
	bool rawio;
};

/* A multi-CPU batch's cross-call: the ops, and each CPU's slice of order[]. */
struct msrdrv_run {
	struct msrdrv_op *ops;
	u32 *order;	/* indices of runnable ops grouped by CPU, array order kept */
	u32 *start;	/* start[cpu]..start[cpu + 1] is that CPU's slice */
};

/* A single-CPU batch: every runnable op (err still 0) targets one CPU. */
struct msrdrv_single {
	struct msrdrv_op *ops;
	u32 n;
};

static void msrdrv_exec_op(struct msrdrv_op *op)
{
	u64 val, old;
	int err = 0;

	switch (op->op) {
	case MSRDRV_OP_READ:
		err = msrdrv_rdmsr_safe(op->msr, &val);
		if (!err)
			op->value = val;
		break;
	case MSRDRV_OP_WRITE:
		val = op->value;
		if (op->flags & MSRDRV_OPF_MASKED) {
			err = msrdrv_rdmsr_safe(op->msr, &old);
			if (err)
				break;
			val = (old & ~op->mask) | (val & op->mask);
		}
		err = msrdrv_wrmsr_safe(op->msr, val);
		if (!err)
			op->value = val;
		break;
	case MSRDRV_OP_RDTSC:
		op->value = rdtsc_ordered();
		break;
	}
	op->err = err ? -EIO : 0;
}

/* Runs on each target CPU in IPI context (or locally) with IRQs off. */
static void msrdrv_exec_cpu(void *info)
{
	struct msrdrv_run *run = info;
	unsigned int cpu = smp_processor_id();
	u32 i;

	for (i = run->start[cpu]; i < run->start[cpu + 1]; i++)
		msrdrv_exec_op(&run->ops[run->order[i]]);
}

static void msrdrv_exec_single(void *info)
{
	struct msrdrv_single *one = info;
	u32 i;

	for (i = 0; i < one->n; i++)
		if (!one->ops[i].err)
			msrdrv_exec_op(&one->ops[i]);
}

/*
 * Check op codes and flags; returns the number of ops up to and including
 * the first STOP, or -EINVAL.  Nothing has run yet, so a bad batch loses
 * nothing.
 */
static int msrdrv_validate(const struct msrdrv_op *ops, u32 n)
{
	u32 i;

	for (i = 0; i < n; i++) {
		if (ops[i].op > MSRDRV_OP_MAX)
			return -EINVAL;
		if (ops[i].flags & ~MSRDRV_OPF_ALL)
			return -EINVAL;
		if (ops[i].flags && ops[i].op != MSRDRV_OP_WRITE)
			return -EINVAL;
		if (ops[i].op == MSRDRV_OP_STOP)
			return i + 1;
	}
	return n;
}

/* NOP and STOP do nothing on any CPU: they need neither a check nor an IPI. */
static bool msrdrv_op_needs_cpu(const struct msrdrv_op *op)
{
	return op->op != MSRDRV_OP_NOP && op->op != MSRDRV_OP_STOP;
}

/* Still to run: needs a CPU and was refused nothing (err is still 0). */
static bool msrdrv_op_runnable(const struct msrdrv_op *op)
{
	return !op->err && msrdrv_op_needs_cpu(op);
}

/*
 * Several target CPUs: group the runnable ops by CPU (counting sort, O(n +
 * CPUs), array order kept per CPU) and run them with one cross-call, each
 * CPU with interrupts off.  Called with CPU hotplug held off and preemption
 * disabled, with buffers for n ops and nr_cpu_ids + 1 slice starts.
 */
static void msrdrv_run_multi(struct msrdrv_op *ops, u32 n, u32 *order,
			     u32 *start, struct cpumask *mask)
{
	struct msrdrv_run run = { .ops = ops, .order = order, .start = start };
	unsigned int cpu;
	u32 i;

	for (i = 0; i < n; i++) {
		if (!msrdrv_op_runnable(&ops[i]))
			continue;
		start[ops[i].cpu + 1]++;
		cpumask_set_cpu(ops[i].cpu, mask);
	}
	for (cpu = 0; cpu < nr_cpu_ids; cpu++)
		start[cpu + 1] += start[cpu];
	for (i = 0; i < n; i++) {
		if (!msrdrv_op_runnable(&ops[i]))
			continue;
		order[start[ops[i].cpu]++] = i;
	}
	/* The fill above advanced each start to its end: shift back. */
	for (cpu = nr_cpu_ids; cpu > 0; cpu--)
		start[cpu] = start[cpu - 1];
	start[0] = 0;
	on_each_cpu_mask(mask, msrdrv_exec_cpu, &run, true);
}

/*
 * Run n validated ops.  Every op's err is set: policy refusals and absent
 * CPUs are decided here, the rest by the CPU that runs the op.  A batch
 * whose ops all target one CPU (the common case) needs no grouping: it runs
 * locally with interrupts off, or through one smp_call_function_single().
 * Returns 0 or -ENOMEM (then nothing ran).
 */
static int msrdrv_execute(struct msrdrv_file *mf, struct msrdrv_op *ops,
			  u32 n)
{
	struct msrdrv_policy_ctx pctx;
	struct msrdrv_single one = { .ops = ops, .n = n };
	unsigned int self, cpu, target = UINT_MAX, named = UINT_MAX;
	cpumask_var_t mask;
	u32 *order = NULL, *start = NULL;
	bool multi = false, runnable = false, maybe_multi = false;
	bool has_self = false, have_mask = false;
	unsigned long flags;
	u32 i;
	int ret = 0;

	msrdrv_policy_begin(&pctx, mf->rawio);
	for (i = 0; i < n; i++) {
		struct msrdrv_op *op = &ops[i];

		op->err = 0;
		if (!msrdrv_op_needs_cpu(op))
			continue;
		op->err = msrdrv_policy_check(&pctx, op);
		if (op->cpu == MSRDRV_CPU_SELF)
			has_self = true;
		else if (named != UINT_MAX && op->cpu != named)
			maybe_multi = true;
		else
			named = op->cpu;
	}
	msrdrv_policy_end(&pctx);

	/* Only a batch for several CPUs needs grouping buffers: get them now. */
	if (maybe_multi || (has_self && named != UINT_MAX)) {
		order = kvmalloc_array(n, sizeof(*order),
				       GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		start = kvcalloc(nr_cpu_ids + 1, sizeof(*start),
				 GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		have_mask = order && start &&
			    zalloc_cpumask_var(&mask, GFP_KERNEL | __GFP_NOWARN);
		if (!have_mask) {
			ret = -ENOMEM;
			goto out;
		}
	}

	/* Hold CPUs online from the check until every op has run. */
	cpus_read_lock();
	self = get_cpu();
	for (i = 0; i < n; i++) {
		struct msrdrv_op *op = &ops[i];

		if (!msrdrv_op_runnable(op))
			continue;
		cpu = op->cpu == MSRDRV_CPU_SELF ? self : op->cpu;
		if (cpu >= nr_cpu_ids || !cpu_online(cpu)) {
			op->err = -ENXIO;
			continue;
		}
		op->cpu = cpu;
		if (runnable && cpu != target)
			multi = true;
		target = cpu;
		runnable = true;
	}

	if (!runnable) {
		/* nothing to run */
	} else if (!multi && target == self) {
		local_irq_save(flags);
		msrdrv_exec_single(&one);
		local_irq_restore(flags);
	} else if (!multi) {
		smp_call_function_single(target, msrdrv_exec_single, &one, 1);
	} else {
		msrdrv_run_multi(ops, n, order, start, mask);
	}
	put_cpu();
	cpus_read_unlock();
out:
	if (have_mask)
		free_cpumask_var(mask);
	kvfree(start);
	kvfree(order);
	return ret;
}

static long msrdrv_ioctl_batch(struct msrdrv_file *mf,
			       struct msrdrv_batch __user *uhdr)
{
	struct msrdrv_batch hdr;
	struct msrdrv_op __user *uops;
	struct msrdrv_op *ops;
	unsigned int limit = READ_ONCE(max_ops);
	u32 i, n, nerrs = 0;
	int ret;

	if (copy_from_user(&hdr, uhdr, sizeof(hdr)))
		return -EFAULT;
	if (hdr.abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	if (hdr.flags || hdr.reserved)
		return -EINVAL;
	if (hdr.nops > min(limit, MSRDRV_MAX_OPS_LIMIT))
		return -E2BIG;

	n = hdr.nops;
	uops = u64_to_user_ptr(hdr.ops);
	ops = NULL;
	if (n) {
		ops = kvmalloc_array(n, sizeof(*ops),
				     GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!ops)
			return -ENOMEM;
		if (copy_from_user(ops, uops, array_size(n, sizeof(*ops)))) {
			ret = -EFAULT;
			goto out;
		}
		ret = msrdrv_validate(ops, n);
		if (ret < 0)
			goto out;
		n = ret;
		ret = msrdrv_execute(mf, ops, n);
		if (ret)
			goto out;
		for (i = 0; i < n; i++)
			nerrs += ops[i].err != 0;
		if (copy_to_user(uops, ops, array_size(n, sizeof(*ops)))) {
			ret = -EFAULT;
			goto out;
		}
	}
	hdr.ndone = n;
	hdr.nerrs = nerrs;
	ret = copy_to_user(uhdr, &hdr, sizeof(hdr)) ? -EFAULT : 0;
out:
	kvfree(ops);
	return ret;
}

/*
 * The seed's IOCTL_MSR_CMDS: up to MSR_VEC_LIMIT commands, read one at a
 * time so a short array ending in STOP never faults on memory past it.
 */
static long msrdrv_ioctl_legacy(struct msrdrv_file *mf,
				struct msrdrv_legacy_cmd __user *ucmds)
{
	struct msrdrv_legacy_cmd *cmds;
	struct msrdrv_op *ops;
	u32 i, n = 0;
	long ret = -ENOMEM;

	cmds = kcalloc(MSR_VEC_LIMIT, sizeof(*cmds), GFP_KERNEL_ACCOUNT);
	ops = kcalloc(MSR_VEC_LIMIT, sizeof(*ops), GFP_KERNEL_ACCOUNT);
	if (!cmds || !ops)
		goto out;

	while (n < MSR_VEC_LIMIT) {
		if (copy_from_user(&cmds[n], &ucmds[n], sizeof(cmds[n]))) {
			ret = -EFAULT;
			goto out;
		}
		if (cmds[n].op > MSRDRV_OP_MAX) {
			ret = -EINVAL;
			goto out;
		}
		ops[n].op = cmds[n].op;
		ops[n].cpu = MSRDRV_CPU_SELF;
		ops[n].msr = cmds[n].ecx;
		ops[n].value = cmds[n].value;
		if (cmds[n++].op == MSRDRV_OP_STOP)
			break;
	}

	ret = msrdrv_execute(mf, ops, n);
	if (ret)
		goto out;
	for (i = 0; i < n; i++) {
		if (ops[i].op == MSRDRV_OP_READ || ops[i].op == MSRDRV_OP_RDTSC)
			cmds[i].value = ops[i].value;
		if (ops[i].err && !ret)
			ret = ops[i].err == -EIO ? -EIO : -EPERM;
	}
	if (copy_to_user(ucmds, cmds, array_size(n, sizeof(*cmds))))
		ret = -EFAULT;
out:
	kfree(ops);
	kfree(cmds);
	return ret;
}

static long msrdrv_ioctl_info(struct msrdrv_file *mf,
			      struct msrdrv_info __user *uinfo)
{
	struct msrdrv_info info = {
		.abi_version = MSRDRV_ABI_VERSION,
		.max_ops = min(READ_ONCE(max_ops), MSRDRV_MAX_OPS_LIMIT),
		.features = MSRDRV_FEAT_MASKED_WRITE | MSRDRV_FEAT_MULTI_CPU |
			    MSRDRV_FEAT_LEGACY_CMDS | MSRDRV_FEAT_ALLOWLIST,
		.nr_cpu_ids = nr_cpu_ids,
	};

	if (mf->rawio)
		info.access |= MSRDRV_ACCESS_RAWIO;
	info.access |= msrdrv_policy_access();
	info.allowlist_entries = msrdrv_policy_entries();
	strscpy(info.version, MSRDRV_VERSION, sizeof(info.version));
	return copy_to_user(uinfo, &info, sizeof(info)) ? -EFAULT : 0;
}

static long msrdrv_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	struct msrdrv_file *mf = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case MSRDRV_IOC_BATCH:
		return msrdrv_ioctl_batch(mf, uarg);
	case MSRDRV_IOC_INFO:
		return msrdrv_ioctl_info(mf, uarg);
	case IOCTL_MSR_CMDS:
		return msrdrv_ioctl_legacy(mf, uarg);
	default:
		return msrdrv_policy_ioctl(file, cmd, uarg);
	}
}

static int msrdrv_open(struct inode *inode, struct file *file)
{
	struct msrdrv_file *mf;

	mf = kzalloc(sizeof(*mf), GFP_KERNEL_ACCOUNT);
	if (!mf)
		return -ENOMEM;
	mf->rawio = capable(CAP_SYS_RAWIO);
	file->private_data = mf;
	return nonseekable_open(inode, file);
}

static int msrdrv_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

/* nonseekable_open() at open time makes seeks fail; no .llseek needed. */
static const struct file_operations msrdrv_fops = {
	.owner = THIS_MODULE,
	.open = msrdrv_open,
	.release = msrdrv_release,
	.unlocked_ioctl = msrdrv_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

/* The node is 0660 from birth; the udev rule gives it group msr. */
static struct miscdevice msrdrv_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "msrdrv",
	.fops = &msrdrv_fops,
	.mode = 0660,
};

static int __init msrdrv_init(void)
{
	int err;

	if (!boot_cpu_has(X86_FEATURE_MSR))
		return -ENODEV;
	if (max_ops < 1 || max_ops > MSRDRV_MAX_OPS_LIMIT) {
		pr_err("max_ops=%u out of range 1-%u\n", max_ops,
		       MSRDRV_MAX_OPS_LIMIT);
		return -EINVAL;
	}
	err = msrdrv_policy_init();
	if (err)
		return err;
	err = misc_register(&msrdrv_misc);
	if (err) {
		msrdrv_policy_exit();
		return err;
	}
	pr_info("version %s, ABI %d, max_ops %u\n", MSRDRV_VERSION,
		MSRDRV_ABI_VERSION, max_ops);
	return 0;
}

static void __exit msrdrv_exit(void)
{
	misc_deregister(&msrdrv_misc);
	msrdrv_policy_exit();
}

module_init(msrdrv_init);
module_exit(msrdrv_exit);

MODULE_DESCRIPTION("Batched, fault-safe access to x86 MSRs");
MODULE_LICENSE("GPL");
MODULE_VERSION(MSRDRV_VERSION);
