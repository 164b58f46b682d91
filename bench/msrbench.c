// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv against the in-tree msr driver (/dev/cpu/N/msr, what msr-tools,
 * likwid and pmu-tools use), same guest, repetitions interleaved so both
 * see the same machine state.  Prints one JSON object.
 *
 * usage: msrbench REPS MAXOPS
 *   read32:  32 MSR reads on CPU 0: one msrdrv ioctl vs 32 preads
 *   allcpu:  one MSR on every CPU: one msrdrv ioctl vs one pread per CPU
 *   sweep:   msrdrv batch sizes 1..MAXOPS (powers of two): ns per op
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "msrdrv.h"

#define MAX_CPUS	256
#define NREAD		32

/* harmless registers every x86-64 CPU (and QEMU TCG) implements */
static const __u32 regs[8] = { 0x10, 0x1b, 0x277, 0xc0000080, 0xc0000081,
			       0xc0000082, 0xc0000084, 0xc0000103 };

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	__u64 x = *(const __u64 *)a, y = *(const __u64 *)b;

	return x < y ? -1 : x > y;
}

static double median(__u64 *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static int submit(int fd, struct msrdrv_op *ops, __u32 n)
{
	struct msrdrv_batch hdr = { .abi_version = MSRDRV_ABI_VERSION,
				    .nops = n, .ops = (uintptr_t)ops };

	return ioctl(fd, MSRDRV_IOC_BATCH, &hdr) || hdr.nerrs ? -1 : 0;
}

static int open_msr(int cpu)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/cpu/%d/msr", cpu);
	return open(path, O_RDONLY);
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 2000;
	int maxops = argc > 2 ? atoi(argv[2]) : 4096;
	int ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	static struct msrdrv_op ops[65536];
	static int msrfd[MAX_CPUS];
	__u64 *t_drv = calloc(reps, sizeof(__u64));
	__u64 *t_msr = calloc(reps, sizeof(__u64));
	__u64 val, t0;
	cpu_set_t set;
	int fd, r, i, n;

	if (!t_drv || !t_msr || ncpu > MAX_CPUS || maxops > 65536)
		return 99;
	fd = open("/dev/msrdrv", O_RDWR);
	for (i = 0; i < ncpu; i++)
		msrfd[i] = open_msr(i);
	if (fd < 0 || msrfd[0] < 0) {
		perror("open /dev/msrdrv or /dev/cpu/0/msr");
		return 98;
	}
	/* pin to CPU 0: both drivers then read locally, no IPI */
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	printf("{\"cpus\": %d, \"reps\": %d", ncpu, reps);

	/* 1. 32 reads on one CPU */
	for (i = 0; i < NREAD; i++)
		ops[i] = (struct msrdrv_op){ .op = MSRDRV_OP_READ, .cpu = 0,
					     .msr = regs[i % 8] };
	for (r = 0; r < reps; r++) {
		t0 = now_ns();
		if (submit(fd, ops, NREAD))
			return 1;
		t_drv[r] = now_ns() - t0;
		t0 = now_ns();
		for (i = 0; i < NREAD; i++)
			if (pread(msrfd[0], &val, 8, regs[i % 8]) != 8)
				return 2;
		t_msr[r] = now_ns() - t0;
	}
	printf(", \"read32\": {\"msrdrv_ns\": %.0f, \"msr_ns\": %.0f}",
	       median(t_drv, reps), median(t_msr, reps));

	/* 2. one MSR on every CPU */
	for (i = 0; i < ncpu; i++)
		ops[i] = (struct msrdrv_op){ .op = MSRDRV_OP_READ, .cpu = i,
					     .msr = 0x1b };
	for (r = 0; r < reps; r++) {
		t0 = now_ns();
		if (submit(fd, ops, ncpu))
			return 3;
		t_drv[r] = now_ns() - t0;
		t0 = now_ns();
		for (i = 0; i < ncpu; i++)
			if (pread(msrfd[i], &val, 8, 0x1b) != 8)
				return 4;
		t_msr[r] = now_ns() - t0;
	}
	printf(", \"allcpu\": {\"msrdrv_ns\": %.0f, \"msr_ns\": %.0f}",
	       median(t_drv, reps), median(t_msr, reps));

	/* 3. batch size sweep on CPU 0 */
	printf(", \"sweep\": [");
	for (n = 1; n <= maxops; n *= 2) {
		int sreps = reps * 8 / n > 20 ? reps * 8 / n : 20;

		if (sreps > reps)
			sreps = reps;
		for (i = 0; i < n; i++)
			ops[i] = (struct msrdrv_op){ .op = MSRDRV_OP_READ,
						     .cpu = 0, .msr = regs[i % 8] };
		for (r = 0; r < sreps; r++) {
			t0 = now_ns();
			if (submit(fd, ops, n))
				return 5;
			t_drv[r] = now_ns() - t0;
		}
		printf("%s{\"ops\": %d, \"ns\": %.0f}", n > 1 ? ", " : "", n,
		       median(t_drv, sreps));
	}
	printf("]}\n");
	return 0;
}
