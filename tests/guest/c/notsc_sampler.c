// SPDX-License-Identifier: GPL-2.0
/*
 * A task that disabled its TSC (prctl PR_SET_TSC) must not start a kernel
 * sampler: every record carries the TSC.  Prints the start's result (OK or
 * the errno's name).  No libc call after the prctl may read the TSC: the
 * Python runtime does (a newer kernel's vDSO), so this is C.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "msrdrv.h"

int main(void)
{
	struct msrdrv_sampler_start req;
	struct msrdrv_op op;
	__u8 cpus = 1;
	int fd, rc;

	fd = open(MSRDRV_DEVICE, O_RDONLY);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	memset(&op, 0, sizeof(op));
	op.op = MSRDRV_OP_READ;
	op.cpu = MSRDRV_CPU_SELF;
	op.msr = 0x1b;
	memset(&req, 0, sizeof(req));
	req.abi_version = MSRDRV_ABI_VERSION;
	req.nops = 1;
	req.nrecords = 64;
	req.watermark = 1;
	req.period_ns = 10000000;
	req.ops = (uintptr_t)&op;
	req.cpus = (uintptr_t)&cpus;
	req.cpus_size = 1;
	if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)) {
		perror("prctl");
		return 1;
	}
	rc = ioctl(fd, MSRDRV_IOC_SAMPLER_START, &req);
	if (rc >= 0)
		printf("OK\n");
	else
		printf("%s\n", errno == EPERM ? "EPERM" : strerror(errno));
	return 0;
}
