// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv: batched, fault-safe access to x86 model-specific registers.
 *
 * One ioctl on /dev/msrdrv carries an array of ops.  The array is copied in,
 * validated and proven writable, then checked against the access policy
 * and run: ops are grouped by target CPU and each CPU runs its own ops in
 * array order with interrupts off, in sections of at most section_ops ops,
 * with interrupts and preemption let in between.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/nospec.h>
#include <linux/sched.h>
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
#define MSRDRV_SECTION_LIMIT	4096U
/* Batches this small live on the stack: no allocation on the common path. */
#define MSRDRV_STACK_OPS	8

static unsigned int max_ops = 4096;
module_param(max_ops, uint, 0444);
MODULE_PARM_DESC(max_ops, "Most ops in one batch (1-65536, default 4096)");

static unsigned int max_ops_user = 1024;
module_param(max_ops_user, uint, 0444);
MODULE_PARM_DESC(max_ops_user,
		 "Most ops in one batch for openers without CAP_SYS_RAWIO (1-65536, default 1024, never above max_ops)");

static unsigned int section_ops = 64;
module_param(section_ops, uint, 0444);
MODULE_PARM_DESC(section_ops,
		 "Most ops a CPU runs in one interrupts-off section (1-4096, default 64)");

/* One batch on its way through the CPUs. */
struct msrdrv_exec {
	struct msrdrv_op *ops;
	const struct msrdrv_policy *pol;
	u32 n;
	u32 nwrites;	/* runnable WRITE ops, the first one's MSR and CPU */
	u32 wmsr;
	unsigned int wcpu;
	u32 pos;	/* single CPU: next op to look at */
	u32 left;	/* single CPU: runnable ops not run yet */
	u32 *order;	/* several CPUs: runnable ops grouped by CPU */
	u32 *start;	/* start[cpu]..start[cpu + 1] is that CPU's slice */
	u32 round;	/* several CPUs: the section of each slice to run */
};

static void msrdrv_exec_op(const struct msrdrv_exec *x, struct msrdrv_op *op)
{
	u64 val, mask;
	bool may_read;
	int err = 0;

	switch (op->op) {
	case MSRDRV_OP_READ:
		err = msrdrv_rdmsr_safe(op->msr, &val);
		if (!err)
			op->value = val;
		break;
	case MSRDRV_OP_WRITE:
		mask = msrdrv_policy_write_mask(x->pol, op, &may_read);
		val = op->value;
		/* All bits: a plain write, so write-only MSRs work. */
		if (mask != ~0ULL) {
			err = msrdrv_rdmsr_safe(op->msr, &val);
			if (err)
				break;
			val = (val & ~mask) | (op->value & mask);
		}
		err = msrdrv_wrmsr_safe(op->msr, val);
		if (!err && may_read && (op->flags & MSRDRV_OPF_MASKED))
			op->value = val;
		break;
	case MSRDRV_OP_RDTSC:
		op->value = rdtsc_ordered();
		break;
	}
	op->err = err ? -EIO : 0;
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

/* The TSC, as RDTSC or as the MSR that holds it: PR_SET_TSC covers both. */
static bool msrdrv_op_reads_tsc(const struct msrdrv_op *op)
{
	return op->op == MSRDRV_OP_RDTSC ||
	       (op->op == MSRDRV_OP_READ && op->msr == MSR_IA32_TSC);
}

/* Single target CPU, IRQs off: the next section_ops runnable ops. */
static void msrdrv_exec_single(void *info)
{
	struct msrdrv_exec *x = info;
	u32 done = 0, limit = section_ops;

	while (x->left && done < limit) {
		struct msrdrv_op *op = &x->ops[x->pos++];

		if (!msrdrv_op_runnable(op))
			continue;
		msrdrv_exec_op(x, op);
		x->left--;
		done++;
	}
}

/* Several target CPUs, IRQs off: this CPU's section of this round. */
static void msrdrv_exec_slice(void *info)
{
	struct msrdrv_exec *x = info;
	unsigned int cpu = smp_processor_id();
	u32 i = x->start[cpu] + x->round * section_ops;
	u32 end = min(x->start[cpu + 1], i + section_ops);

	for (; i < end; i++)
		msrdrv_exec_op(x, &x->ops[x->order[i]]);
}

static unsigned int msrdrv_target(const struct msrdrv_op *op,
				  unsigned int self)
{
	return op->cpu == MSRDRV_CPU_SELF ? self : op->cpu;
}

/*
 * Group the runnable ops by CPU (counting sort, O(n + CPUs), array order
 * kept per CPU) into x->order and x->start, and the CPUs into mask.
 * Returns the longest slice.
 */
static u32 msrdrv_group(struct msrdrv_exec *x, unsigned int self,
			struct cpumask *mask)
{
	u32 *start = x->start, i, longest = 0;
	unsigned int cpu;

	for (i = 0; i < x->n; i++) {
		if (!msrdrv_op_runnable(&x->ops[i]))
			continue;
		cpu = msrdrv_target(&x->ops[i], self);
		start[cpu + 1]++;
		cpumask_set_cpu(cpu, mask);
	}
	for_each_cpu(cpu, mask)
		longest = max(longest, start[cpu + 1]);
	for (cpu = 0; cpu < nr_cpu_ids; cpu++)
		start[cpu + 1] += start[cpu];
	for (i = 0; i < x->n; i++) {
		if (!msrdrv_op_runnable(&x->ops[i]))
			continue;
		cpu = msrdrv_target(&x->ops[i], self);
		x->order[start[cpu]++] = i;
	}
	/* The fill above advanced each start to its end: shift back. */
	for (cpu = nr_cpu_ids; cpu > 0; cpu--)
		start[cpu] = start[cpu - 1];
	start[0] = 0;
	return longest;
}

/* Round by round, each CPU runs its next section; CPUs drop out when done. */
static void msrdrv_run_multi(struct msrdrv_exec *x, struct cpumask *mask)
{
	unsigned int cpu;

	for (x->round = 0; !cpumask_empty(mask); x->round++) {
		on_each_cpu_mask(mask, msrdrv_exec_slice, x, true);
		for_each_cpu(cpu, mask)
			if (x->start[cpu + 1] - x->start[cpu] <=
			    (x->round + 1) * section_ops)
				cpumask_clear_cpu(cpu, mask);
		cond_resched();
	}
}

/*
 * Decide every op before any runs: -ENXIO for an absent or offline CPU,
 * the policy's verdict, -EPERM for RDTSC when the task disabled the TSC.
 * Returns the number of runnable ops; *multi is set when they target
 * several CPUs, else *target is their CPU.
 */
static u32 msrdrv_prepare(struct msrdrv_exec *x, unsigned int self,
			  bool *multi, unsigned int *target)
{
	u32 i, nrun = 0;
	unsigned int cpu;
	bool notsc = test_thread_flag(TIF_NOTSC);

	*multi = false;
	for (i = 0; i < x->n; i++) {
		struct msrdrv_op *op = &x->ops[i];

		op->err = 0;
		if (!msrdrv_op_needs_cpu(op))
			continue;
		cpu = msrdrv_target(op, self);
		if (cpu >= nr_cpu_ids) {
			op->err = -ENXIO;
			continue;
		}
		cpu = array_index_nospec(cpu, nr_cpu_ids);
		if (!cpu_online(cpu))
			op->err = -ENXIO;
		else if (notsc && msrdrv_op_reads_tsc(op))
			op->err = -EPERM;
		else
			op->err = msrdrv_policy_check(x->pol, op);
		if (op->err)
			continue;
		if (op->op == MSRDRV_OP_WRITE && !x->nwrites++) {
			x->wmsr = op->msr;
			x->wcpu = cpu;
		}
		if (nrun++ && cpu != *target)
			*multi = true;
		*target = cpu;
	}
	return nrun;
}

/*
 * One pass before any lock is taken: could these ops need grouping by CPU,
 * and does any write (then lockdown and the open mode are asked)?
 */
static bool msrdrv_maybe_multi(const struct msrdrv_op *ops, u32 n,
			       bool *has_writes)
{
	u32 i, named = MSRDRV_CPU_SELF;
	bool self = false, multi = false;

	*has_writes = false;
	for (i = 0; i < n; i++) {
		if (!msrdrv_op_needs_cpu(&ops[i]))
			continue;
		if (ops[i].op == MSRDRV_OP_WRITE)
			*has_writes = true;
		if (ops[i].cpu == MSRDRV_CPU_SELF)
			self = true;
		else if (named == MSRDRV_CPU_SELF)
			named = ops[i].cpu;
		else if (ops[i].cpu != named)
			multi = true;
	}
	return multi || (self && named != MSRDRV_CPU_SELF);
}

/*
 * Run n validated ops; every op's err is set.  Buffers come first, then
 * CPU hotplug is held off and the policy fixed (SRCU) until the last op
 * ran, so a revoked allowlist never outlives its SET.  CPU_SELF means the
 * CPU the caller was on at the start, for every section.  Returns 0,
 * -ENOMEM or -E2BIG (a snapshot too long for one section); then nothing
 * ran.
 */
static int msrdrv_execute(struct file *file, struct msrdrv_op *ops, u32 n,
			  u32 flags, u32 *self_cpu)
{
	struct msrdrv_policy pol;
	struct msrdrv_exec x = { .ops = ops, .pol = &pol, .n = n };
	cpumask_var_t mask;
	unsigned int self, target = 0;
	bool multi, has_writes, have_mask = false;
	u32 nrun, longest;
	int ret = 0;

	if (msrdrv_maybe_multi(ops, n, &has_writes)) {
		x.order = kvmalloc_array(n, sizeof(*x.order),
					 GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		x.start = kvcalloc(nr_cpu_ids + 1, sizeof(*x.start),
				   GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		have_mask = x.order && x.start &&
			    zalloc_cpumask_var(&mask, GFP_KERNEL | __GFP_NOWARN);
		if (!have_mask) {
			ret = -ENOMEM;
			goto out;
		}
	}

	cpus_read_lock();
	msrdrv_policy_begin(&pol, file, has_writes);
	self = raw_smp_processor_id();
	*self_cpu = self;
	nrun = msrdrv_prepare(&x, self, &multi, &target);
	longest = nrun;
	if (multi)
		longest = msrdrv_group(&x, self, mask);
	if ((flags & MSRDRV_BATCH_SNAPSHOT) && longest > section_ops) {
		ret = -E2BIG;
	} else if (nrun) {
		/* Taint and log only what will really run. */
		if (x.nwrites && pol.rawio)
			msrdrv_policy_rawio_writes(x.wmsr, x.wcpu, x.nwrites);
		if (multi) {
			msrdrv_run_multi(&x, mask);
		} else {
			x.left = nrun;
			while (x.left) {
				smp_call_function_single(target,
							 msrdrv_exec_single,
							 &x, 1);
				cond_resched();
			}
		}
	}
	msrdrv_policy_end(&pol);
	cpus_read_unlock();
out:
	if (have_mask)
		free_cpumask_var(mask);
	kvfree(x.start);
	kvfree(x.order);
	return ret;
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

/* The most ops one batch may carry on this file. */
static u32 msrdrv_max_ops(const struct file *file)
{
	const struct msrdrv_file *mf = file->private_data;

	return mf->rawio ? max_ops : min(max_ops, max_ops_user);
}

static long msrdrv_ioctl_batch(struct file *file,
			       struct msrdrv_batch __user *uhdr)
{
	struct msrdrv_op stack_ops[MSRDRV_STACK_OPS];
	struct msrdrv_batch hdr;
	struct msrdrv_op __user *uops;
	struct msrdrv_op *ops = stack_ops;
	u32 i, n, nerrs = 0, self = 0;
	int ret;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	if (copy_from_user(&hdr, uhdr, sizeof(hdr)))
		return -EFAULT;
	if (hdr.abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	if (hdr.flags & ~MSRDRV_BATCH_ALL)
		return -EINVAL;
	if (hdr.nops > msrdrv_max_ops(file))
		return -E2BIG;

	n = hdr.nops;
	uops = u64_to_user_ptr(hdr.ops);
	if (n > MSRDRV_STACK_OPS) {
		ops = kvmalloc_array(n, sizeof(*ops),
				     GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!ops)
			return -ENOMEM;
	}
	ret = -EFAULT;
	if (copy_from_user(ops, uops, array_size(n, sizeof(*ops))))
		goto out;
	ret = msrdrv_validate(ops, n);
	if (ret < 0)
		goto out;
	n = ret;
	/*
	 * Prove the header and the ops writable before anything runs, by
	 * writing back what they hold: EFAULT then still means nothing ran.
	 */
	ret = -EFAULT;
	if (copy_to_user(uhdr, &hdr, sizeof(hdr)) ||
	    copy_to_user(uops, ops, array_size(n, sizeof(*ops))))
		goto out;
	ret = msrdrv_execute(file, ops, n, hdr.flags, &self);
	if (ret)
		goto out;
	for (i = 0; i < n; i++)
		nerrs += ops[i].err != 0;
	hdr.ndone = n;
	hdr.nerrs = nerrs;
	hdr.self_cpu = self;
	ret = -EFAULT;
	if (copy_to_user(uops, ops, array_size(n, sizeof(*ops))) ||
	    copy_to_user(uhdr, &hdr, sizeof(hdr)))
		goto out;
	ret = 0;
out:
	if (ops != stack_ops)
		kvfree(ops);
	return ret;
}

/*
 * The seed's IOCTL_MSR_CMDS: up to MSR_VEC_LIMIT commands, read one at a
 * time so a short array ending in STOP never faults on memory past it.
 */
static long msrdrv_ioctl_legacy(struct file *file,
				struct msrdrv_legacy_cmd __user *ucmds)
{
	struct msrdrv_legacy_cmd *cmds;
	struct msrdrv_op *ops;
	u32 i, n = 0, self;
	long ret = -ENOMEM;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
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
	/* As for a batch: EFAULT must mean nothing ran. */
	ret = -EFAULT;
	if (copy_to_user(ucmds, cmds, array_size(n, sizeof(*cmds))))
		goto out;
	ret = msrdrv_execute(file, ops, n, 0, &self);
	if (ret)
		goto out;
	for (i = 0; i < n; i++) {
		if (ops[i].op == MSRDRV_OP_READ || ops[i].op == MSRDRV_OP_RDTSC)
			cmds[i].value = ops[i].value;
		if (ops[i].err && !ret)
			ret = ops[i].err;
	}
	if (copy_to_user(ucmds, cmds, array_size(n, sizeof(*cmds))))
		ret = -EFAULT;
out:
	kfree(ops);
	kfree(cmds);
	return ret;
}

static long msrdrv_ioctl_info(struct file *file,
			      struct msrdrv_info __user *uinfo)
{
	struct msrdrv_info info = {
		.abi_version = MSRDRV_ABI_VERSION,
		.max_ops = msrdrv_max_ops(file),
		.features = MSRDRV_FEAT_MASKED_WRITE | MSRDRV_FEAT_MULTI_CPU |
			    MSRDRV_FEAT_LEGACY_CMDS | MSRDRV_FEAT_ALLOWLIST |
			    MSRDRV_FEAT_SNAPSHOT | MSRDRV_FEAT_PROTECTED,
		.nr_cpu_ids = nr_cpu_ids,
		.section_ops = section_ops,
	};

	info.access = msrdrv_policy_access(file);
	info.allowlist_entries = msrdrv_policy_entries();
	strscpy(info.version, MSRDRV_VERSION, sizeof(info.version));
	return copy_to_user(uinfo, &info, sizeof(info)) ? -EFAULT : 0;
}

static long msrdrv_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case MSRDRV_IOC_BATCH:
		return msrdrv_ioctl_batch(file, uarg);
	case MSRDRV_IOC_INFO:
		return msrdrv_ioctl_info(file, uarg);
	case IOCTL_MSR_CMDS:
		return msrdrv_ioctl_legacy(file, uarg);
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
	/* _noaudit: a group member's open is no denial worth an LSM log. */
	mf->rawio = ns_capable_noaudit(&init_user_ns, CAP_SYS_RAWIO);
	mf->admin = ns_capable_noaudit(&init_user_ns, CAP_SYS_ADMIN);
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
	if (max_ops < 1 || max_ops > MSRDRV_MAX_OPS_LIMIT ||
	    max_ops_user < 1 || max_ops_user > MSRDRV_MAX_OPS_LIMIT) {
		pr_err("max_ops=%u, max_ops_user=%u: each must be 1-%u\n",
		       max_ops, max_ops_user, MSRDRV_MAX_OPS_LIMIT);
		return -EINVAL;
	}
	if (section_ops < 1 || section_ops > MSRDRV_SECTION_LIMIT) {
		pr_err("section_ops=%u out of range 1-%u\n", section_ops,
		       MSRDRV_SECTION_LIMIT);
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
	pr_info("version %s, ABI %d, max_ops %u (%u without CAP_SYS_RAWIO), section_ops %u\n",
		MSRDRV_VERSION, MSRDRV_ABI_VERSION, max_ops,
		min(max_ops, max_ops_user), section_ops);
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
