// SPDX-License-Identifier: GPL-2.0
/*
 * A task that disabled its TSC (prctl PR_SET_TSC) must not get one through
 * msrdrv either: prints the RDTSC op's and a READ's result, then the seed
 * interface's answer.  No libc call after the prctl may read the TSC.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "msrdrv.h"

static const char *name(int err)
{
	if (err == 0)
		return "OK";
	if (err == -EPERM || err == EPERM)
		return "EPERM";
	return strerror(err < 0 ? -err : err);
}

int main(void)
{
	struct msrdrv_op ops[3];
	struct msrdrv_batch b;
	struct msrdrv_legacy_cmd cmds[2];
	int fd, rc;

	fd = open(MSRDRV_DEVICE, O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)) {
		perror("prctl");
		return 1;
	}
	memset(ops, 0, sizeof(ops));
	memset(&b, 0, sizeof(b));
	ops[0].op = MSRDRV_OP_RDTSC;
	ops[0].cpu = 0;
	ops[1].op = MSRDRV_OP_READ;
	ops[1].cpu = 0;
	ops[1].msr = 0x1b;
	ops[2].op = MSRDRV_OP_READ;	/* IA32_TIME_STAMP_COUNTER: the TSC too */
	ops[2].cpu = 0;
	ops[2].msr = 0x10;
	b.abi_version = MSRDRV_ABI_VERSION;
	b.nops = 3;
	b.ops = (unsigned long)ops;
	rc = ioctl(fd, MSRDRV_IOC_BATCH, &b);
	if (rc) {
		perror("batch");
		return 1;
	}
	printf("batch %s %s %s\n", name(ops[0].err), name(ops[1].err),
	       name(ops[2].err));

	memset(cmds, 0, sizeof(cmds));
	cmds[0].op = MSR_RDTSC;
	cmds[1].op = MSR_STOP;
	rc = ioctl(fd, IOCTL_MSR_CMDS, cmds);
	printf("legacy %s\n", name(rc ? errno : 0));
	return 0;
}
