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
#include "msrdrv_compat.h"
#include "msrdrv_policy.h"
#include "msrdrv_sampler.h"

#ifndef MSRDRV_VERSION
#define MSRDRV_VERSION "unknown"
#endif

/* The ABI is only useful if both word sizes agree on it. */
static_assert(sizeof(struct msrdrv_op) == 32);
static_assert(sizeof(struct msrdrv_batch) == 32);
static_assert(sizeof(struct msrdrv_info) == 96);
static_assert(sizeof(struct msrdrv_legacy_cmd) == 16);
static_assert(sizeof(struct msrdrv_sampler_start) == 104);
static_assert(sizeof(struct msrdrv_sampler_header) == 128);
static_assert(sizeof(struct msrdrv_ring_header) == 64);
static_assert(sizeof(struct msrdrv_record) == 32);
static_assert(sizeof(struct msrdrv_sampler_consume) == 16);

#define MSRDRV_MAX_OPS_LIMIT	65536U
#define MSRDRV_SECTION_LIMIT	4096U
/* Batches this small live on the stack: no allocation on the common path. */
#define MSRDRV_STACK_OPS	8

/*
 * For buffers filled before use: spares them the zeroing that
 * CONFIG_INIT_STACK_ALL_ZERO would do on every call.
 */
#ifndef __uninitialized
#define __uninitialized
#endif

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

/* AMD's read-only copy of MPERF; 6.1's msr-index.h does not name it. */
#define MSRDRV_AMD_MPERF_RO	0xc00000e7

/*
 * What PR_SET_TSC takes from a task: RDTSC, the MSR that holds the TSC,
 * and the counters that tick at its rate (MPERF, AMD's read-only MPERF,
 * the fixed reference-cycles counter), each as good a clock as the TSC.
 */
static bool msrdrv_op_reads_tsc(const struct msrdrv_op *op)
{
	if (op->op == MSRDRV_OP_RDTSC)
		return true;
	if (op->op != MSRDRV_OP_READ)
		return false;
	switch (op->msr) {
	case MSR_IA32_TSC:
	case MSR_IA32_MPERF:
	case MSRDRV_AMD_MPERF_RO:
	case MSR_CORE_PERF_FIXED_CTR2:
		return true;
	}
	return false;
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
static u32 msrdrv_group(struct msrdrv_exec *x, struct cpumask *mask)
{
	u32 *start = x->start, i, longest = 0;
	unsigned int cpu;

	for (i = 0; i < x->n; i++) {
		if (!msrdrv_op_runnable(&x->ops[i]))
			continue;
		cpu = x->ops[i].cpu;	/* clamped by msrdrv_prepare() */
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
		cpu = x->ops[i].cpu;
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
	bool notsc = test_thread_flag(TIF_NOTSC), bad;

	*multi = false;
	for (i = 0; i < x->n; i++) {
		struct msrdrv_op *op = &x->ops[i];

		op->err = 0;
		if (!msrdrv_op_needs_cpu(op))
			continue;
		cpu = msrdrv_target(op, self);
		bad = cpu >= nr_cpu_ids;
		/*
		 * Spectre v1: clamp once and keep the clamped CPU in the op;
		 * every later index (start[], order[], the masks) takes it.
		 */
		cpu = array_index_nospec(cpu, nr_cpu_ids);
		op->cpu = cpu;
		if (bad || !cpu_online(cpu))
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

/* What one pass over a batch, before anything runs, finds out. */
struct msrdrv_scan {
	u32 n;		/* ops up to and including the first STOP */
	u32 named;	/* a CPU some op names, or MSRDRV_CPU_SELF */
	bool multi;	/* the ops may need more than one CPU */
	bool has_writes;
};

/*
 * Check op codes and flags, and see which CPUs the ops name and whether
 * any writes.  Returns 0 or -EINVAL; nothing has run yet, so a bad batch
 * loses nothing.
 */
static int msrdrv_scan(const struct msrdrv_op *ops, u32 n,
		       struct msrdrv_scan *s)
{
	bool self = false;
	u32 i;

	*s = (struct msrdrv_scan){ .n = n, .named = MSRDRV_CPU_SELF };
	for (i = 0; i < n; i++) {
		const struct msrdrv_op *op = &ops[i];

		if (op->op > MSRDRV_OP_MAX || op->flags & ~MSRDRV_OPF_ALL)
			return -EINVAL;
		if (op->flags && op->op != MSRDRV_OP_WRITE)
			return -EINVAL;
		if (op->op == MSRDRV_OP_STOP) {
			s->n = i + 1;
			break;
		}
		if (!msrdrv_op_needs_cpu(op))
			continue;
		if (op->op == MSRDRV_OP_WRITE)
			s->has_writes = true;
		if (op->cpu == MSRDRV_CPU_SELF)
			self = true;
		else if (s->named == MSRDRV_CPU_SELF)
			s->named = op->cpu;
		else if (op->cpu != s->named)
			s->multi = true;
	}
	if (self && s->named != MSRDRV_CPU_SELF)
		s->multi = true;
	return 0;
}

/*
 * The common case: every op on the calling CPU, all in one section.  With
 * preemption off that CPU stays ours and online, so this needs no hotplug
 * lock, no SRCU (the allowlist is read under RCU-sched) and no cross-call.
 * Returns false, having done nothing, if the ops name another CPU.
 */
static bool msrdrv_run_local(struct msrdrv_exec *x, struct msrdrv_policy *pol,
			     u32 named, u32 *self_cpu)
{
	unsigned int self, target;
	unsigned long irqflags;
	bool multi;

	preempt_disable();
	self = smp_processor_id();
	if (named != MSRDRV_CPU_SELF && named != self) {
		preempt_enable();
		return false;
	}
	msrdrv_policy_begin_atomic(pol);
	x->left = msrdrv_prepare(x, self, &multi, &target);
	if (x->left) {
		if (x->nwrites && pol->rawio)
			msrdrv_policy_rawio_writes(x->wmsr, x->wcpu, x->nwrites);
		/* At most section_ops ops: one section runs them all. */
		local_irq_save(irqflags);
		msrdrv_exec_single(x);
		local_irq_restore(irqflags);
	}
	msrdrv_policy_end_atomic(pol);
	preempt_enable();
	*self_cpu = self;
	return true;
}

/*
 * Run the scanned ops; every op's err is set.  Buffers come first, then
 * CPU hotplug is held off and the policy fixed (SRCU) until the last op
 * ran, so a revoked allowlist never outlives its SET.  CPU_SELF means the
 * CPU the caller was on at the start, for every section.  Returns 0,
 * -ENOMEM or -E2BIG (a snapshot too long for one section); then nothing
 * ran.
 */
static int msrdrv_execute(struct file *file, struct msrdrv_op *ops,
			  const struct msrdrv_scan *s, u32 flags, u32 *self_cpu)
{
	struct msrdrv_policy pol;
	struct msrdrv_exec x __uninitialized;
	cpumask_var_t mask;
	unsigned int self, target = 0;
	bool multi, have_mask = false;
	u32 nrun, longest;
	int ret = 0;

	/* Field by field: an initializer would zero all of x with a string store. */
	x.ops = ops;
	x.pol = &pol;
	x.n = s->n;
	x.nwrites = 0;
	x.pos = 0;
	x.order = NULL;
	x.start = NULL;
	msrdrv_policy_gate(&pol, file, s->has_writes);
	if (!s->multi && s->n <= section_ops &&
	    msrdrv_run_local(&x, &pol, s->named, self_cpu))
		return 0;
	if (s->multi) {
		x.order = kvmalloc_array(s->n, sizeof(*x.order),
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
	msrdrv_policy_begin(&pol);
	self = raw_smp_processor_id();
	*self_cpu = self;
	nrun = msrdrv_prepare(&x, self, &multi, &target);
	longest = nrun;
	if (multi)
		longest = msrdrv_group(&x, mask);
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

/* The most ops one batch may carry on this file. */
static u32 msrdrv_max_ops(const struct file *file)
{
	const struct msrdrv_file *mf = file->private_data;

	return mf->rawio ? max_ops : min(max_ops, max_ops_user);
}

/*
 * User memory is read and written field by field rather than with
 * copy_{from,to}_user(): for the few bytes of a small batch single moves
 * beat a string copy (under emulation by far), and no field but value and
 * err (and the header's out fields) is ever written.
 */
static int msrdrv_get_batch(struct msrdrv_batch *h,
			    const struct msrdrv_batch __user *u)
{
	if (!user_read_access_begin(u, sizeof(*u)))
		return -EFAULT;
	unsafe_get_user(h->abi_version, &u->abi_version, efault);
	unsafe_get_user(h->flags, &u->flags, efault);
	unsafe_get_user(h->nops, &u->nops, efault);
	unsafe_get_user(h->ndone, &u->ndone, efault);
	unsafe_get_user(h->nerrs, &u->nerrs, efault);
	unsafe_get_user(h->self_cpu, &u->self_cpu, efault);
	unsafe_get_user(h->ops, &u->ops, efault);
	user_read_access_end();
	return 0;
efault:
	user_read_access_end();
	return -EFAULT;
}

static int msrdrv_get_ops(struct msrdrv_op *ops,
			  const struct msrdrv_op __user *u, u32 n)
{
	u32 i;

	if (!user_read_access_begin(u, array_size(n, sizeof(*u))))
		return -EFAULT;
	for (i = 0; i < n; i++) {
		unsafe_get_user(ops[i].op, &u[i].op, efault);
		unsafe_get_user(ops[i].flags, &u[i].flags, efault);
		unsafe_get_user(ops[i].cpu, &u[i].cpu, efault);
		unsafe_get_user(ops[i].msr, &u[i].msr, efault);
		unsafe_get_user(ops[i].err, &u[i].err, efault);
		unsafe_get_user(ops[i].value, &u[i].value, efault);
		unsafe_get_user(ops[i].mask, &u[i].mask, efault);
	}
	user_read_access_end();
	return 0;
efault:
	user_read_access_end();
	return -EFAULT;
}

/* The out fields: each op's value and err, then the header's counts. */
static int msrdrv_put_batch(struct msrdrv_batch __user *uh,
			    const struct msrdrv_batch *h,
			    const struct msrdrv_op *ops, u32 n)
{
	struct msrdrv_op __user *u = u64_to_user_ptr(h->ops);
	u32 i;

	if (!user_write_access_begin(u, array_size(n, sizeof(*u))))
		return -EFAULT;
	for (i = 0; i < n; i++) {
		unsafe_put_user(ops[i].err, &u[i].err, efault);
		unsafe_put_user(ops[i].value, &u[i].value, efault);
	}
	user_write_access_end();
	if (!user_write_access_begin(uh, sizeof(*uh)))
		return -EFAULT;
	unsafe_put_user(h->ndone, &uh->ndone, efault);
	unsafe_put_user(h->nerrs, &uh->nerrs, efault);
	unsafe_put_user(h->self_cpu, &uh->self_cpu, efault);
	user_write_access_end();
	return 0;
efault:
	user_write_access_end();
	return -EFAULT;
}

static long msrdrv_ioctl_batch(struct file *file,
			       struct msrdrv_batch __user *uhdr)
{
	struct msrdrv_op stack_ops[MSRDRV_STACK_OPS] __uninitialized;
	struct msrdrv_op *ops = stack_ops;
	struct msrdrv_batch hdr;
	struct msrdrv_scan scan;
	u32 i, nerrs = 0, self = 0;
	int ret;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	if (msrdrv_get_batch(&hdr, uhdr))
		return -EFAULT;
	if (hdr.abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	if (hdr.flags & ~MSRDRV_BATCH_ALL)
		return -EINVAL;
	if (hdr.nops > msrdrv_max_ops(file))
		return -E2BIG;

	if (hdr.nops > MSRDRV_STACK_OPS) {
		ops = kvmalloc_array(hdr.nops, sizeof(*ops),
				     GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!ops)
			return -ENOMEM;
	}
	ret = msrdrv_get_ops(ops, u64_to_user_ptr(hdr.ops), hdr.nops);
	if (ret)
		goto out;
	ret = msrdrv_scan(ops, hdr.nops, &scan);
	if (ret)
		goto out;
	/*
	 * A batch that writes MSRs first proves every out field writable, by
	 * writing back what it holds, so EFAULT still means nothing was
	 * written.  A batch that only reads changes nothing if its results
	 * cannot be stored: it skips that.
	 */
	if (scan.has_writes) {
		ret = msrdrv_put_batch(uhdr, &hdr, ops, scan.n);
		if (ret)
			goto out;
	}
	ret = msrdrv_execute(file, ops, &scan, hdr.flags, &self);
	if (ret)
		goto out;
	for (i = 0; i < scan.n; i++)
		nerrs += ops[i].err != 0;
	hdr.ndone = scan.n;
	hdr.nerrs = nerrs;
	hdr.self_cpu = self;
	ret = msrdrv_put_batch(uhdr, &hdr, ops, scan.n);
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
	struct msrdrv_scan scan;
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
	/* As for a batch: EFAULT must mean nothing was written. */
	ret = -EFAULT;
	if (copy_to_user(ucmds, cmds, array_size(n, sizeof(*cmds))))
		goto out;
	ret = msrdrv_scan(ops, n, &scan);
	if (!ret)
		ret = msrdrv_execute(file, ops, &scan, 0, &self);
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
			    MSRDRV_FEAT_SNAPSHOT | MSRDRV_FEAT_PROTECTED |
			    MSRDRV_FEAT_KERNEL_CONTROL,
		.nr_cpu_ids = nr_cpu_ids,
		.section_ops = section_ops,
	};

	info.access = msrdrv_policy_access(file);
	info.allowlist_entries = msrdrv_policy_entries();
	msrdrv_sampler_info(file, &info);
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
	case MSRDRV_IOC_SAMPLER_START:
		return msrdrv_sampler_start(file, uarg);
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
	err = msrdrv_sampler_init();
	if (err)
		goto out_policy;
	err = misc_register(&msrdrv_misc);
	if (err)
		goto out_sampler;
	pr_info("version %s, ABI %d, max_ops %u (%u without CAP_SYS_RAWIO), section_ops %u\n",
		MSRDRV_VERSION, MSRDRV_ABI_VERSION, max_ops,
		min(max_ops, max_ops_user), section_ops);
	return 0;
out_sampler:
	msrdrv_sampler_exit();
out_policy:
	msrdrv_policy_exit();
	return err;
}

static void __exit msrdrv_exit(void)
{
	misc_deregister(&msrdrv_misc);
	msrdrv_sampler_exit();
	msrdrv_policy_exit();
}

module_init(msrdrv_init);
module_exit(msrdrv_exit);

MODULE_DESCRIPTION("Batched, fault-safe access to x86 MSRs");
MODULE_LICENSE("GPL");
MODULE_VERSION(MSRDRV_VERSION);
