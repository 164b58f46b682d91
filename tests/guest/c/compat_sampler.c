// SPDX-License-Identifier: GPL-2.0
/*
 * Built with -m32: a 32-bit task reaches msrdrv through compat_ioctl.  Its
 * batches work (the ABI has no pointer-sized fields), but it cannot read a
 * ring's 64-bit head and tail untorn, so SAMPLER_START refuses it.  Prints
 * "batch <result>" and "start <result>" (OK or the errno's name).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "msrdrv.h"

static const char *name(int rc, int err)
{
	if (rc >= 0)
		return err ? strerror(-err) : "OK";
	return errno == ENOEXEC ? "ENOEXEC" : strerror(errno);
}

int main(void)
{
	struct msrdrv_sampler_start req;
	struct msrdrv_batch b;
	struct msrdrv_op op;
	__u8 cpus = 1;
	int fd, rc;

	if (sizeof(void *) != 4) {
		fprintf(stderr, "not a 32-bit build\n");
		return 1;
	}
	fd = open(MSRDRV_DEVICE, O_RDONLY);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	memset(&op, 0, sizeof(op));
	op.op = MSRDRV_OP_READ;
	op.msr = 0x1b;
	memset(&b, 0, sizeof(b));
	b.abi_version = MSRDRV_ABI_VERSION;
	b.nops = 1;
	b.ops = (uintptr_t)&op;
	rc = ioctl(fd, MSRDRV_IOC_BATCH, &b);
	printf("batch %s\n", name(rc, op.err));

	op.cpu = MSRDRV_CPU_SELF;
	memset(&req, 0, sizeof(req));
	req.abi_version = MSRDRV_ABI_VERSION;
	req.nops = 1;
	req.nrecords = 64;
	req.watermark = 1;
	req.period_ns = 10000000;
	req.ops = (uintptr_t)&op;
	req.cpus = (uintptr_t)&cpus;
	req.cpus_size = 1;
	rc = ioctl(fd, MSRDRV_IOC_SAMPLER_START, &req);
	printf("start %s\n", name(rc, 0));
	return 0;
}
