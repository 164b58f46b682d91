/* SPDX-License-Identifier: GPL-2.0 */
/* msrdrv kernel-timed sampler: op sets run by per-CPU hrtimers into rings. */
#ifndef _MSRDRV_SAMPLER_H
#define _MSRDRV_SAMPLER_H

#include <linux/errno.h>
#include <linux/fs.h>

#include "msrdrv.h"

#ifdef CONFIG_64BIT
int msrdrv_sampler_init(void);
void msrdrv_sampler_exit(void);
long msrdrv_sampler_start(struct file *file,
			  struct msrdrv_sampler_start __user *uarg);
void msrdrv_sampler_info(const struct file *file, struct msrdrv_info *info);
#else
/* 32-bit kernels: no sampler (its rings share 64-bit counters lock-free). */
static inline int msrdrv_sampler_init(void)
{
	return 0;
}

static inline void msrdrv_sampler_exit(void)
{
}

static inline long msrdrv_sampler_start(struct file *file,
					struct msrdrv_sampler_start __user *uarg)
{
	return -EOPNOTSUPP;
}

static inline void msrdrv_sampler_info(const struct file *file,
				       struct msrdrv_info *info)
{
}
#endif

#endif /* _MSRDRV_SAMPLER_H */
