// SPDX-License-Identifier: GPL-2.0
/*
 * A task that disabled its TSC (prctl PR_SET_TSC) must not get one through
 * msrdrv either, nor a counter that ticks at its rate.  Runs one batch
 * before the prctl and the same batch after it, printing each op's result
 * (OK, EPERM or the errno's name), then the seed interface's answer.  No
 * libc call after the prctl may read the TSC.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "msrdrv.h"

#define NOPS 6

/* RDTSC, then reads: APIC_BASE (no clock), TSC, MPERF, AMD's MPERF, FIXED_CTR2 */
static const unsigned int msrs[NOPS] = { 0, 0x1b, 0x10, 0xe7, 0xc00000e7, 0x30b };

static const char *name(int err)
{
	if (err == 0)
		return "OK";
	if (err == -EPERM || err == EPERM)
		return "EPERM";
	if (err == -EIO)
		return "EIO";
	return strerror(err < 0 ? -err : err);
}

static int batch(int fd, const char *label)
{
	struct msrdrv_op ops[NOPS];
	struct msrdrv_batch b;
	unsigned int i;

	memset(ops, 0, sizeof(ops));
	memset(&b, 0, sizeof(b));
	for (i = 0; i < NOPS; i++) {
		ops[i].op = i ? MSRDRV_OP_READ : MSRDRV_OP_RDTSC;
		ops[i].msr = msrs[i];
	}
	b.abi_version = MSRDRV_ABI_VERSION;
	b.nops = NOPS;
	b.ops = (unsigned long)ops;
	if (ioctl(fd, MSRDRV_IOC_BATCH, &b)) {
		perror("batch");
		return 1;
	}
	printf("%s", label);
	for (i = 0; i < NOPS; i++)
		printf(" %s", name(ops[i].err));
	printf("\n");
	return 0;
}

int main(void)
{
	struct msrdrv_legacy_cmd cmds[2];
	int fd, rc;

	fd = open(MSRDRV_DEVICE, O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	if (batch(fd, "before"))
		return 1;
	if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)) {
		perror("prctl");
		return 1;
	}
	if (batch(fd, "after"))
		return 1;

	memset(cmds, 0, sizeof(cmds));
	cmds[0].op = MSR_RDTSC;
	cmds[1].op = MSR_STOP;
	rc = ioctl(fd, IOCTL_MSR_CMDS, cmds);
	printf("legacy %s\n", name(rc ? errno : 0));
	return 0;
}
