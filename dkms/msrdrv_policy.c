// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv access policy.
 *
 * Openers with CAP_SYS_RAWIO may read anything and write anything the
 * hardware accepts; their writes taint the kernel like the in-tree msr
 * driver's.  Everyone else (members of group msr) is bound by the allowlist
 * an admin loaded: a listed MSR may be read if its entry says so, and written
 * only in the bits of its write mask.  With no list loaded they may do
 * nothing (deny by default, as msr-safe), MSRs that hold kernel addresses
 * are never theirs, and MSRs that steer the kernel (its entry points,
 * interrupts, memory types, mitigations, time, machine checks) are never
 * theirs to write, whatever a list says.  All writes need a file
 * opened for writing and are refused under kernel lockdown and with
 * allow_writes=N.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bsearch.h>
#include <linux/capability.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/ratelimit.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/srcu.h>
#include <linux/uaccess.h>
#include <asm/special_insns.h>

#include "msrdrv_policy.h"

static bool allow_writes = true;
static struct srcu_struct msrdrv_srcu;

/*
 * Batches read allow_writes inside their SRCU or RCU-sched section (see
 * begin()), so setting it waits for both kinds of section, as SET does: when
 * a write of N returns, no write checked while it was Y can still run.
 */
static int msrdrv_allow_writes_set(const char *val,
				   const struct kernel_param *kp)
{
	int err = param_set_bool(val, kp);

	if (!err) {
		synchronize_srcu(&msrdrv_srcu);
		synchronize_rcu();
	}
	return err;
}

static const struct kernel_param_ops msrdrv_allow_writes_ops = {
	.set = msrdrv_allow_writes_set,
	.get = param_get_bool,
};

module_param_cb(allow_writes, &msrdrv_allow_writes_ops, &allow_writes, 0644);
MODULE_PARM_DESC(allow_writes,
		 "Allow MSR writes at all (default Y); setting N waits for running batches");

struct msrdrv_allowlist_k {
	u32 n;
	struct msrdrv_allow_entry e[];	/* sorted by msr, no duplicates */
};

/*
 * Batches hold SRCU from their policy checks until their last op ran, so
 * SET can wait for every batch that saw the old list (synchronous
 * revocation); SRCU because a batch sleeps between its sections.  A batch
 * that runs on its own CPU in one section keeps preemption off instead,
 * and SET waits for those with synchronize_rcu().
 */
static struct msrdrv_allowlist_k __rcu *allowlist;
static DEFINE_MUTEX(allowlist_lock);
/* Samplers, rechecked under allowlist_lock by every SET. */
static LIST_HEAD(msrdrv_watches);

/*
 * MSRs that hold kernel (or guest-physical) addresses or record kernel
 * control flow: reading one defeats KASLR or leaks another task's state,
 * writing one hijacks the kernel.  Only CAP_SYS_RAWIO openers reach them.
 * Inclusive ranges, sorted; msrctl/protected.py mirrors this table (a host
 * test compares the two).
 */
static const struct msrdrv_msr_range {
	u32 first, last;
} msrdrv_protected[] = {
	{ 0x00000000, 0x00000000 },	/* IA32_P5_MC_ADDR (Pentium) */
	{ 0x00000011, 0x00000012 },	/* KVM pvclock (old numbers): GPAs */
	{ 0x00000040, 0x00000047 },	/* LBR FROM_IP (Core, Atom) */
	{ 0x00000060, 0x00000067 },	/* LBR TO_IP (Core, Atom) */
	{ 0x0000009e, 0x0000009e },	/* IA32_SMBASE */
	{ 0x000000a0, 0x000000a1 },	/* MSR_SMRR_PHYSBASE/MASK (Core 2) */
	{ 0x00000174, 0x00000176 },	/* IA32_SYSENTER_CS/ESP/EIP */
	{ 0x000001cc, 0x000001d4 },	/* IA32_FRED_RSP0-3, STKLVLS, SSP1-3, CONFIG */
	{ 0x000001d7, 0x000001d8 },	/* MSR_LER_FROM_LIP, MSR_LER_TO_LIP (P4) */
	{ 0x000001db, 0x000001de },	/* LASTBRANCH/LER FROM/TO IP */
	{ 0x000001f2, 0x000001f5 },	/* IA32_SMRR_PHYSBASE/MASK, PRMRR_PHYS_BASE/MASK */
	{ 0x000002a0, 0x000002a7 },	/* MSR_PRMRR_BASE_0-7 */
	{ 0x000002f4, 0x000002f5 },	/* MSR_UNCORE_PRMRR_PHYS_BASE/MASK */
	{ 0x000003f4, 0x000003f5 },	/* IA32_PEBS_BASE, IA32_PEBS_INDEX */
	{ 0x00000560, 0x00000561 },	/* IA32_RTIT_OUTPUT_BASE, OUTPUT_MASK_PTRS */
	{ 0x00000572, 0x00000572 },	/* IA32_RTIT_CR3_MATCH */
	{ 0x00000580, 0x00000587 },	/* IA32_RTIT_ADDR0_A-ADDR3_B */
	{ 0x00000600, 0x00000600 },	/* IA32_DS_AREA */
	{ 0x00000680, 0x0000069f },	/* MSR_LASTBRANCH_0-31_FROM_IP */
	{ 0x000006a0, 0x000006a8 },	/* IA32_U_CET, S_CET, PL0-3_SSP, INT_SSP_TAB */
	{ 0x000006c0, 0x000006df },	/* MSR_LASTBRANCH_0-31_TO_IP */
	{ 0x00000983, 0x00000984 },	/* IA32_TME_EXCLUDE_MASK, TME_EXCLUDE_BASE */
	{ 0x00000985, 0x0000098a },	/* IA32_UINTR_RR, HANDLER, STACKADJUST, MISC, PD, TT */
	{ 0x00000d90, 0x00000d90 },	/* IA32_BNDCFGS */
	{ 0x00000dc0, 0x00000ddf },	/* MSR_LBR_INFO_0-31 */
	{ 0x00001200, 0x0000121f },	/* IA32_LBR_0-31_INFO */
	{ 0x00001400, 0x00001401 },	/* IA32_SEAMRR_PHYS_BASE, SEAMRR_PHYS_MASK */
	{ 0x00001500, 0x0000151f },	/* IA32_LBR_0-31_FROM_IP */
	{ 0x00001600, 0x0000161f },	/* IA32_LBR_0-31_TO_IP */
	{ 0x000017d0, 0x000017d0 },	/* IA32_HW_FEEDBACK_PTR */
	{ 0x40000000, 0x400000ff },	/* Hyper-V synthetic MSRs: GPAs */
	{ 0x40000100, 0x40000105 },	/* Hyper-V crash MSRs: panic RIP, parameters */
	{ 0x40000200, 0x40000200 },	/* Xen hypercall page (with Viridian): GPA */
	{ 0x40001082, 0x40001083 },	/* Hyper-V nested SIEFP, SIMP: GPAs */
	{ 0x4b564d00, 0x4b564d07 },	/* KVM paravirtual MSRs: GPAs */
	{ 0xc0000081, 0xc0000083 },	/* STAR, LSTAR, CSTAR */
	{ 0xc0000100, 0xc0000102 },	/* FS_BASE, GS_BASE, KERNEL_GS_BASE */
	{ 0xc0010111, 0xc0010113 },	/* AMD SMM_BASE, SMM_ADDR (TSEG), SMM_MASK */
	{ 0xc0010117, 0xc0010117 },	/* MSR_VM_HSAVE_PA */
	{ 0xc0010130, 0xc0010130 },	/* MSR_AMD64_SEV_ES_GHCB */
	{ 0xc0010132, 0xc0010133 },	/* AMD SNP RMP_BASE, RMP_END */
	{ 0xc0010300, 0xc001031f },	/* AMD LbrExtV2 FROM/TO */
	{ 0xc0011030, 0xc001103b },	/* AMD IBS fetch/op/data samples */
};

/*
 * MSRs that steer the kernel: writing one redirects or disables its entry
 * paths, interrupts, memory typing, speculation mitigations, time keeping,
 * machine-check handling or feature locks.  CAP_SYS_RAWIO openers only may
 * write them; a list may still let members read them.  Inclusive ranges,
 * sorted; docs/access-policy.md says why each is here and msrctl mirrors
 * the table.  PKRS (0x6e1) is in the table but counts only if the kernel
 * uses protection keys for supervisor pages (CR4.PKS).
 */
static const struct msrdrv_msr_range msrdrv_kernel_control[] = {
	{ 0x00000010, 0x00000010 },	/* IA32_TIME_STAMP_COUNTER */
	{ 0x0000001b, 0x0000001b },	/* IA32_APIC_BASE */
	{ 0x00000033, 0x00000033 },	/* MSR_TEST_CTRL (split-lock detect) */
	{ 0x0000003a, 0x0000003a },	/* IA32_FEATURE_CONTROL */
	{ 0x0000003b, 0x0000003b },	/* IA32_TSC_ADJUST */
	{ 0x00000048, 0x00000048 },	/* IA32_SPEC_CTRL */
	{ 0x0000004e, 0x0000004e },	/* MSR_PPIN_CTL */
	{ 0x00000079, 0x00000079 },	/* IA32_BIOS_UPDT_TRIG */
	{ 0x0000008c, 0x0000008f },	/* IA32_SGXLEPUBKEYHASH0-3 */
	{ 0x0000009b, 0x0000009b },	/* IA32_SMM_MONITOR_CTL */
	{ 0x000000bc, 0x000000bc },	/* IA32_MISC_PACKAGE_CTLS */
	{ 0x000000e1, 0x000000e1 },	/* IA32_UMWAIT_CONTROL */
	{ 0x000000e7, 0x000000e8 },	/* IA32_MPERF, IA32_APERF */
	{ 0x00000105, 0x00000105 },	/* MSR_ARRAY_BIST (In-Field Scan) */
	{ 0x0000010f, 0x0000010f },	/* MSR_TSX_FORCE_ABORT */
	{ 0x00000122, 0x00000123 },	/* IA32_TSX_CTRL, IA32_MCU_OPT_CTRL */
	{ 0x0000013c, 0x0000013c },	/* MSR_FEATURE_CONFIG (AES-NI lock) */
	{ 0x00000140, 0x00000140 },	/* MSR_MISC_FEATURES_ENABLES */
	{ 0x00000150, 0x00000150 },	/* Intel OC mailbox (core voltage offset) */
	{ 0x0000017a, 0x0000017b },	/* IA32_MCG_STATUS, IA32_MCG_CTL */
	{ 0x0000019b, 0x0000019b },	/* IA32_THERM_INTERRUPT */
	{ 0x000001a0, 0x000001a0 },	/* IA32_MISC_ENABLE */
	{ 0x000001b2, 0x000001b2 },	/* IA32_PACKAGE_THERM_INTERRUPT */
	{ 0x000001c4, 0x000001c5 },	/* IA32_XFD, IA32_XFD_ERR */
	{ 0x000001c8, 0x000001c9 },	/* MSR_LBR_SELECT, MSR_LBR_TOS */
	{ 0x000001d9, 0x000001d9 },	/* IA32_DEBUGCTL */
	{ 0x00000200, 0x0000021f },	/* IA32_MTRR_PHYSBASE0-PHYSMASK15 */
	{ 0x00000250, 0x0000026f },	/* IA32_MTRR_FIX64K/16K/4K */
	{ 0x00000277, 0x00000277 },	/* IA32_PAT */
	{ 0x00000280, 0x0000029f },	/* IA32_MC0-31_CTL2 */
	{ 0x000002b8, 0x000002c9 },	/* SBAF and In-Field Scan hashes, chunks, start */
	{ 0x000002d6, 0x000002d7 },	/* MSR_ARRAY_TRIGGER, MSR_ARRAY_STATUS */
	{ 0x000002ff, 0x000002ff },	/* IA32_MTRR_DEF_TYPE */
	{ 0x000003f1, 0x000003f1 },	/* IA32_PEBS_ENABLE */
	{ 0x00000400, 0x0000047f },	/* IA32_MC0-31_CTL/STATUS/ADDR/MISC */
	{ 0x000004d0, 0x000004d0 },	/* IA32_MCG_EXT_CTL */
	{ 0x00000570, 0x00000571 },	/* IA32_RTIT_CTL, IA32_RTIT_STATUS */
	{ 0x000006e0, 0x000006e0 },	/* IA32_TSC_DEADLINE */
	{ 0x000006e1, 0x000006e1 },	/* IA32_PKRS */
	{ 0x00000770, 0x00000770 },	/* IA32_PM_ENABLE */
	{ 0x00000773, 0x00000773 },	/* IA32_HWP_INTERRUPT */
	{ 0x00000800, 0x000008ff },	/* x2APIC registers (ICR, EOI, TPR, LVT, timer) */
	{ 0x00000982, 0x00000982 },	/* IA32_TME_ACTIVATE */
	{ 0x00000c80, 0x00000c80 },	/* IA32_DEBUG_INTERFACE */
	{ 0x00000c81, 0x00000c82 },	/* IA32_L3_QOS_CFG, IA32_L2_QOS_CFG */
	{ 0x00000c8f, 0x00000c8f },	/* IA32_PQR_ASSOC */
	{ 0x00000c90, 0x00000d8f },	/* RDT L3/L2 CAT masks, MBA throttles */
	{ 0x00000d93, 0x00000d93 },	/* IA32_PASID */
	{ 0x00000da0, 0x00000da0 },	/* IA32_XSS */
	{ 0x000014ce, 0x000014cf },	/* IA32_LBR_CTL, IA32_LBR_DEPTH (arch LBR) */
	{ 0x000017d1, 0x000017d1 },	/* IA32_HW_FEEDBACK_CONFIG */
	{ 0x40000106, 0x40000118 },	/* Hyper-V reenlightenment, TSC emulation, TSC ctl */
	{ 0x40001080, 0x40001081 },	/* Hyper-V nested SCONTROL, SVERSION */
	{ 0x40001084, 0x4000109f },	/* Hyper-V nested EOM, SINT0-15 */
	{ 0x4b564d08, 0x4b564d08 },	/* MSR_KVM_MIGRATION_CONTROL */
	{ 0xc0000080, 0xc0000080 },	/* IA32_EFER */
	{ 0xc0000084, 0xc0000084 },	/* SYSCALL_MASK (FMASK) */
	{ 0xc0000103, 0xc0000103 },	/* IA32_TSC_AUX */
	{ 0xc0000104, 0xc0000104 },	/* AMD TSC_RATIO */
	{ 0xc000010e, 0xc000010f },	/* AMD LBR_SELECT, DBG_EXTN_CFG */
	{ 0xc0000200, 0xc00002ff },	/* AMD RDT MBA and SMBA bandwidth limits */
	{ 0xc00003fd, 0xc00003ff },	/* AMD RDT ABMC config, L3_QOS_EXT_CFG */
	{ 0xc0000400, 0xc0000410 },	/* AMD BMEC cfg; MCA threshold blocks, INTR_CFG */
	{ 0xc0002000, 0xc00023ff },	/* AMD SMCA MCA banks 0-63 */
	{ 0xc0010010, 0xc0010010 },	/* AMD SYSCFG */
	{ 0xc0010015, 0xc0010015 },	/* AMD HWCR */
	{ 0xc0010016, 0xc001001a },	/* AMD IORR_BASE/MASK0-1, TOP_MEM */
	{ 0xc001001d, 0xc001001d },	/* AMD TOP_MEM2 */
	{ 0xc001001f, 0xc001001f },	/* AMD NB_CFG */
	{ 0xc0010020, 0xc0010020 },	/* AMD PATCH_LOADER */
	{ 0xc0010022, 0xc0010022 },	/* AMD MC exception redirection */
	{ 0xc0010044, 0xc001004a },	/* AMD MC0-6_MASK */
	{ 0xc0010054, 0xc0010056 },	/* AMD IO trap ctl, int-pending msg, SMI trigger */
	{ 0xc0010058, 0xc0010058 },	/* AMD MMIO_CONF_BASE (PCI ECAM window) */
	{ 0xc0010064, 0xc001006b },	/* AMD PSTATE_DEF0-7 (FID/DID/VID) */
	{ 0xc0010114, 0xc0010116 },	/* AMD VM_CR, IGNNE, SMM_CTL */
	{ 0xc0010118, 0xc0010118 },	/* AMD SVM lock key */
	{ 0xc001011b, 0xc001011b },	/* AMD AVIC doorbell */
	{ 0xc001011e, 0xc001011e },	/* AMD VM_PAGE_FLUSH */
	{ 0xc001011f, 0xc001011f },	/* AMD VIRT_SPEC_CTRL */
	{ 0xc0010134, 0xc0010138 },	/* AMD SEV guest TSC freq, vTOM, RMP_CFG, SAVIC */
	{ 0xc00102b1, 0xc00102b1 },	/* AMD CPPC_ENABLE */
	{ 0xc00102f0, 0xc00102f0 },	/* AMD PPIN_CTL */
	{ 0xc0011004, 0xc0011005 },	/* AMD CPUID feature overrides (1, 8000_0001) */
	{ 0xc0011019, 0xc001101b },	/* AMD DR1-3 address masks */
	{ 0xc0011020, 0xc001102e },	/* AMD LS/IC/DC/TW/DE/BU/EX/BP_CFG, DR0 mask */
	{ 0xc00110e3, 0xc00110e3 },	/* AMD Zen2 SPECTRAL_CHICKEN */
};

#define MSRDRV_MSR_PKRS		0x000006e1
#define MSRDRV_CR4_PKS		BIT(24)	/* protection keys for supervisor pages */

/* CR4.PKS as the kernel set it at boot (read once, at module load). */
static bool msrdrv_pks;

static bool msrdrv_in_ranges(const struct msrdrv_msr_range *r, size_t n,
			     u32 msr)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (msr < r[i].first)
			return false;
		if (msr <= r[i].last)
			return true;
	}
	return false;
}

/*
 * The machine-check banks' address registers, strided among their bank's
 * other registers: IA32_MCi_ADDR (0x402 + 4i, banks 0-31) and AMD SMCA
 * MCA_ADDR and MCA_DEADDR (0xc0002002 and 0xc0002009 + 0x10i, banks
 * 0-63) hold the physical address of failed memory.
 */
static bool msrdrv_mca_addr(u32 msr)
{
	if (msr >= 0x400 && msr <= 0x47f)
		return (msr & 3) == 2;
	if (msr >= 0xc0002000 && msr <= 0xc00023ff)
		return (msr & 0xf) == 2 || (msr & 0xf) == 9;
	return false;
}

static bool msrdrv_policy_protected(u32 msr)
{
	return msrdrv_in_ranges(msrdrv_protected,
				ARRAY_SIZE(msrdrv_protected), msr) ||
	       msrdrv_mca_addr(msr);
}

static bool msrdrv_policy_kernel_control(u32 msr)
{
	/* Without CR4.PKS, PKRS governs nothing the kernel relies on. */
	if (msr == MSRDRV_MSR_PKRS)
		return msrdrv_pks;
	return msrdrv_in_ranges(msrdrv_kernel_control,
				ARRAY_SIZE(msrdrv_kernel_control), msr);
}

int msrdrv_policy_init(void)
{
	msrdrv_pks = __read_cr4() & MSRDRV_CR4_PKS;
	return init_srcu_struct(&msrdrv_srcu);
}

void msrdrv_policy_exit(void)
{
	kvfree(rcu_dereference_protected(allowlist, true));
	RCU_INIT_POINTER(allowlist, NULL);
	cleanup_srcu_struct(&msrdrv_srcu);
}

/* Why every write of a batch from this file is refused, or 0. */
static int msrdrv_policy_write_gate(const struct file *file)
{
	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	return security_locked_down(LOCKDOWN_MSR);
}

/* Inside the read-side section: allow_writes=N waits for it (above). */
static void msrdrv_policy_writes_now(struct msrdrv_policy *pol)
{
	if (pol->has_writes && !pol->write_err && !READ_ONCE(allow_writes))
		pol->write_err = -EPERM;
}

void msrdrv_policy_gate(struct msrdrv_policy *pol, const struct file *file,
			bool has_writes)
{
	const struct msrdrv_file *mf = file->private_data;

	pol->rawio = mf->rawio;
	pol->has_writes = has_writes;
	/* Lockdown is asked only for a batch that writes: it logs. */
	pol->write_err = has_writes ? msrdrv_policy_write_gate(file) : 0;
	pol->list = NULL;
}

void msrdrv_policy_begin(struct msrdrv_policy *pol)
{
	pol->srcu_idx = srcu_read_lock(&msrdrv_srcu);
	pol->list = srcu_dereference(allowlist, &msrdrv_srcu);
	msrdrv_policy_writes_now(pol);
}

void msrdrv_policy_end(struct msrdrv_policy *pol)
{
	pol->list = NULL;
	srcu_read_unlock(&msrdrv_srcu, pol->srcu_idx);
}

/* The caller keeps preemption off until end_atomic(): an RCU-sched reader. */
void msrdrv_policy_begin_atomic(struct msrdrv_policy *pol)
{
	pol->list = rcu_dereference_sched(allowlist);
	msrdrv_policy_writes_now(pol);
}

void msrdrv_policy_end_atomic(struct msrdrv_policy *pol)
{
	pol->list = NULL;
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
	if (!list)
		return NULL;
	return bsearch(&msr, list->e, list->n, sizeof(list->e[0]),
		       msrdrv_entry_cmp);
}

/* The bits a WRITE op asks to change. */
static u64 msrdrv_op_mask(const struct msrdrv_op *op)
{
	return op->flags & MSRDRV_OPF_MASKED ? op->mask : ~0ULL;
}

/*
 * Decide a READ or WRITE before anything runs (other ops pass): 0 or the
 * op's -errno.  The list cannot change until end().
 */
int msrdrv_policy_check(const struct msrdrv_policy *pol,
			const struct msrdrv_op *op)
{
	const struct msrdrv_allow_entry *e;

	if (op->op == MSRDRV_OP_WRITE && pol->write_err)
		return pol->write_err;
	/* A masked write of no bit would only put back what it read. */
	if (op->op == MSRDRV_OP_WRITE && !msrdrv_op_mask(op))
		return -EACCES;
	if (pol->rawio)
		return 0;
	if (op->op != MSRDRV_OP_READ && op->op != MSRDRV_OP_WRITE)
		return 0;
	e = msrdrv_policy_lookup(pol->list, op->msr);
	if (!e)
		return -EACCES;
	if (op->op == MSRDRV_OP_READ)
		return e->flags & MSRDRV_ALLOW_READ ? 0 : -EACCES;
	/* Defence in depth: SET already refuses a write mask on such an MSR. */
	if (msrdrv_policy_kernel_control(op->msr))
		return -EACCES;
	/* A write that may change no bit writes nothing: say so. */
	return msrdrv_op_mask(op) & e->write_mask ? 0 : -EACCES;
}

/*
 * For a WRITE that passed the check, on the CPU that runs it: the bits it
 * may change, and whether the written value may go back to the caller.
 */
u64 msrdrv_policy_write_mask(const struct msrdrv_policy *pol,
			     const struct msrdrv_op *op, bool *may_read)
{
	const struct msrdrv_allow_entry *e;

	*may_read = pol->rawio;
	if (pol->rawio)
		return msrdrv_op_mask(op);
	e = msrdrv_policy_lookup(pol->list, op->msr);
	if (!e)
		return 0;
	*may_read = e->flags & MSRDRV_ALLOW_READ;
	return msrdrv_op_mask(op) & e->write_mask;
}

/* A privileged batch is about to write: taint and log as the msr driver. */
void msrdrv_policy_rawio_writes(u32 msr, unsigned int cpu, u32 nwrites)
{
	add_taint(TAINT_CPU_OUT_OF_SPEC, LOCKDEP_STILL_OK);
	pr_notice_ratelimited("%s[%d] writes MSR %#x on CPU %u (%u write%s in the batch)\n",
			      current->comm, task_pid_nr(current), msr, cpu,
			      nwrites, nwrites == 1 ? "" : "s");
}

/* The ops of w that list does not let it read: bit i for op i. */
static u64 msrdrv_policy_denied(const struct msrdrv_policy_watch *w,
				const struct msrdrv_allowlist_k *list)
{
	struct msrdrv_policy pol = { .list = list, .rawio = w->rawio };
	u64 denied = 0;
	u32 i;

	for (i = 0; i < w->nops; i++)
		if (msrdrv_policy_check(&pol, &w->ops[i]))
			denied |= BIT_ULL(i);
	return denied;
}

/*
 * Check w's ops against the list in force and, if it allows them all,
 * watch w from now on: 0 or -EACCES.  Under the mutex, so no SET can come
 * between the check and the watch.
 */
int msrdrv_policy_watch_add(struct msrdrv_policy_watch *w)
{
	const struct msrdrv_allowlist_k *list;
	int err = 0;

	mutex_lock(&allowlist_lock);
	list = rcu_dereference_protected(allowlist,
					 lockdep_is_held(&allowlist_lock));
	if (msrdrv_policy_denied(w, list))
		err = -EACCES;
	else
		list_add(&w->node, &msrdrv_watches);
	mutex_unlock(&allowlist_lock);
	return err;
}

void msrdrv_policy_watch_del(struct msrdrv_policy_watch *w)
{
	mutex_lock(&allowlist_lock);
	list_del(&w->node);
	mutex_unlock(&allowlist_lock);
}

u32 msrdrv_policy_access(const struct file *file)
{
	const struct msrdrv_file *mf = file->private_data;
	u32 access = 0;

	if (mf->rawio)
		access |= MSRDRV_ACCESS_RAWIO;
	if (mf->admin)
		access |= MSRDRV_ACCESS_ADMIN;
	if (file->f_mode & FMODE_WRITE)
		access |= MSRDRV_ACCESS_FMODE_WRITE;
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
	int idx;

	idx = srcu_read_lock(&msrdrv_srcu);
	list = srcu_dereference(allowlist, &msrdrv_srcu);
	n = list ? list->n : 0;
	srcu_read_unlock(&msrdrv_srcu, idx);
	return n;
}

/* 0, or why the new list is refused (the old one stays in force). */
static int msrdrv_policy_validate(const struct msrdrv_allowlist_k *list)
{
	const struct msrdrv_allow_entry *e;
	u32 i;

	for (i = 0; i < list->n; i++) {
		e = &list->e[i];
		if ((e->flags & ~MSRDRV_ALLOW_ALL) ||
		    (i && e->msr <= list->e[i - 1].msr))
			return -EINVAL;
	}
	for (i = 0; i < list->n; i++) {
		e = &list->e[i];
		if (msrdrv_policy_protected(e->msr)) {
			pr_info("allowlist refused: MSR %#x holds kernel addresses\n",
				e->msr);
			return -EACCES;
		}
		if (e->write_mask && msrdrv_policy_kernel_control(e->msr)) {
			pr_info("allowlist refused: MSR %#x steers the kernel: never member-writable\n",
				e->msr);
			return -EACCES;
		}
	}
	return 0;
}

static long msrdrv_policy_set(struct file *file,
			      struct msrdrv_allowlist __user *uarg)
{
	const struct msrdrv_file *mf = file->private_data;
	struct msrdrv_allowlist hdr;
	struct msrdrv_allowlist_k *list = NULL, *old;
	struct msrdrv_policy_watch *w;
	int err;

	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (!mf->admin)
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
		err = -EFAULT;
		if (!copy_from_user(list->e, u64_to_user_ptr(hdr.entries),
				    array_size(list->n, sizeof(list->e[0]))))
			err = msrdrv_policy_validate(list);
		if (err) {
			kvfree(list);
			return err;
		}
	}

	mutex_lock(&allowlist_lock);
	old = rcu_replace_pointer(allowlist, list,
				  lockdep_is_held(&allowlist_lock));
	list_for_each_entry(w, &msrdrv_watches, node) {
		u64 denied = msrdrv_policy_denied(w, list);

		if (denied)
			w->revoke(w, denied);
	}
	mutex_unlock(&allowlist_lock);
	/*
	 * Wait out every batch that may still run ops checked against old,
	 * and every sampler tick (hard irq: RCU-sched) that may not have
	 * seen its revocation.
	 */
	synchronize_srcu(&msrdrv_srcu);
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
	int idx;

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
	/* Snapshot inside SRCU; copy to user space after it. */
	idx = srcu_read_lock(&msrdrv_srcu);
	list = srcu_dereference(allowlist, &msrdrv_srcu);
	n = list ? list->n : 0;
	if (copy && list)
		memcpy(copy, list->e, array_size(min(room, n), sizeof(*copy)));
	srcu_read_unlock(&msrdrv_srcu, idx);

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
		return msrdrv_policy_set(file, uarg);
	case MSRDRV_IOC_GET_ALLOWLIST:
		if (!(file->f_mode & FMODE_READ))
			return -EBADF;
		return msrdrv_policy_get(uarg);
	default:
		return -ENOTTY;
	}
}
