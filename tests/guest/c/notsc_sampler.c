// SPDX-License-Identifier: GPL-2.0
/*
 * PR_SET_TSC against the kernel sampler: every record carries the TSC, so
 * a task that disabled it may not start, map or consume one.  Starts a
 * sampler of CPU 0, maps it and consumes (all allowed), then a forked child
 * disables its TSC and tries again with the fd and mapping it inherited,
 * and then the parent does.  Prints one "what result" pair per step.  No
 * libc call after a prctl may read the TSC: the Python runtime does (a
 * newer kernel's vDSO), so this is C.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "msrdrv.h"

static const char *name(int rc)
{
	if (rc >= 0)
		return "OK";
	return errno == EPERM ? "EPERM" : strerror(errno);
}

static int start(int fd, struct msrdrv_sampler_start *req)
{
	static struct msrdrv_op op;
	static __u8 cpus = 1;

	memset(&op, 0, sizeof(op));
	op.op = MSRDRV_OP_READ;
	op.cpu = MSRDRV_CPU_SELF;
	op.msr = 0x1b;
	memset(req, 0, sizeof(*req));
	req->abi_version = MSRDRV_ABI_VERSION;
	req->nops = 1;
	req->nrecords = 64;
	req->watermark = 1;
	req->period_ns = 10000000;
	req->ops = (uintptr_t)&op;
	req->cpus = (uintptr_t)&cpus;
	req->cpus_size = 1;
	return ioctl(fd, MSRDRV_IOC_SAMPLER_START, req);
}

/* Hand back nothing new (tail stays): valid whenever consuming is. */
static int consume(int sfd, const struct msrdrv_ring_header *ring)
{
	struct msrdrv_sampler_consume c;
	__u64 tail = ring->tail;

	memset(&c, 0, sizeof(c));
	c.abi_version = MSRDRV_ABI_VERSION;
	c.nrings = 1;
	c.tails = (uintptr_t)&tail;
	return ioctl(sfd, MSRDRV_IOC_SAMPLER_CONSUME, &c);
}

static int map(int sfd, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, sfd, 0);

	if (p == MAP_FAILED)
		return -1;
	munmap(p, size);
	return 0;
}

static void notsc(void)
{
	if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)) {
		perror("prctl");
		_exit(1);
	}
}

int main(void)
{
	struct msrdrv_sampler_start req;
	const struct msrdrv_ring_header *ring;
	const struct msrdrv_sampler_header *hdr;
	int fd, sfd, status;
	void *p;
	pid_t pid;

	fd = open(MSRDRV_DEVICE, O_RDONLY);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	sfd = start(fd, &req);
	printf("start %s\n", name(sfd));
	if (sfd < 0)
		return 1;
	p = mmap(NULL, req.mmap_size, PROT_READ, MAP_SHARED, sfd, 0);
	printf("map %s\n", name(p == MAP_FAILED ? -1 : 0));
	if (p == MAP_FAILED)
		return 1;
	hdr = p;
	ring = (const void *)((const char *)p + sysconf(_SC_PAGESIZE));
	printf("consume %s\n", name(consume(sfd, ring)));
	fflush(stdout);

	pid = fork();
	if (pid == 0) {
		notsc();
		printf("child-consume %s\n", name(consume(sfd, ring)));
		printf("child-map %s\n", name(map(sfd, req.mmap_size)));
		/* Not enforceable: the inherited mapping is still readable. */
		printf("child-read %s\n", hdr->nrings == 1 ? "OK" : "?");
		fflush(stdout);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || status) {
		perror("child");
		return 1;
	}
	notsc();
	printf("consume %s\n", name(consume(sfd, ring)));
	printf("start %s\n", name(start(fd, &req)));
	return 0;
}
