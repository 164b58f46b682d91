/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences msrdrv builds across (5.10 to the newest Debian
 * ships).  Kbuild greps the headers we build against and defines the
 * MSRDRV_HAVE_* macros: distribution kernels backport, so version numbers
 * would mislead.
 */
#ifndef _MSRDRV_COMPAT_H
#define _MSRDRV_COMPAT_H

#include <linux/hrtimer.h>
#include <linux/mm.h>
#include <asm/msr.h>

/* 6.16 renamed the 64-bit MSR accessors. */
#ifdef MSRDRV_HAVE_RDMSRQ
#define msrdrv_rdmsr_safe(msr, p)	rdmsrq_safe(msr, p)
#define msrdrv_wrmsr_safe(msr, v)	wrmsrq_safe(msr, v)
#else
#define msrdrv_rdmsr_safe(msr, p)	rdmsrl_safe(msr, p)
#define msrdrv_wrmsr_safe(msr, v)	wrmsrl_safe(msr, v)
#endif

/* hrtimer_setup() arrived in 6.13; hrtimer_init() went away after it. */
static inline void
msrdrv_hrtimer_setup(struct hrtimer *timer,
		     enum hrtimer_restart (*fn)(struct hrtimer *),
		     clockid_t clock, enum hrtimer_mode mode)
{
#ifdef MSRDRV_HAVE_HRTIMER_SETUP
	hrtimer_setup(timer, fn, clock, mode);
#else
	hrtimer_init(timer, clock, mode);
	timer->function = fn;
#endif
}

/* 6.3 made vm_flags read-only outside these helpers. */
static inline void msrdrv_vm_flags_mod(struct vm_area_struct *vma,
				       unsigned long set, unsigned long clear)
{
#ifdef MSRDRV_HAVE_VM_FLAGS_SET
	vm_flags_set(vma, set);
	vm_flags_clear(vma, clear);
#else
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
#endif
}

#endif /* _MSRDRV_COMPAT_H */
