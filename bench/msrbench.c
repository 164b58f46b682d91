// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv against the in-tree msr driver (/dev/cpu/N/msr, what msr-tools,
 * likwid and pmu-tools use) in the same guest.  Each pair is measured
 * interleaved, rep by rep, with the order alternating, after an untimed
 * warm-up, so both sides see the same machine state.  One run is one block
 * of bench/run.py; it prints one JSON object.
 *
 * usage: msrbench REPS MAXOPS
 *   read1:   one MSR on CPU 0: a 1-op msrdrv ioctl vs one pread
 *   read32:  32 MSR reads on CPU 0: one msrdrv ioctl vs 32 preads
 *   allcpu:  one MSR on every CPU: one msrdrv ioctl vs one pread per CPU
 *   sweep:   msrdrv batch sizes 1..MAXOPS (powers of two): ns per batch
 *
 * Built as a shared object (-DMSRBENCH_LIB), it gives bench/pybench.py the
 * C side of the Python-vs-C pair: msrbench_submit_ns().
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
/*
 * Untimed warm-up per pair: at least this long, so that TCG's translation
 * cache and its software TLB (resized every 100 ms to the recent working set)
 * settle on this workload instead of reflecting whatever ran before.
 */
#define WARMUP_NS	500000000ULL

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * One BATCH ioctl with a header the caller prepared, timed the way the C
 * loop below times it.  Returns ns, or 0 if the ioctl or an op failed.
 */
unsigned long long msrbench_submit_ns(int fd, void *hdr)
{
	__u64 t0 = now_ns();
	int rc = ioctl(fd, MSRDRV_IOC_BATCH, hdr);
	__u64 t1 = now_ns();

	if (rc || ((struct msrdrv_batch *)hdr)->nerrs)
		return 0;
	return t1 - t0;
}

#ifndef MSRBENCH_LIB

/* harmless registers every x86-64 CPU (and QEMU TCG) implements */
static const __u32 regs[8] = { 0x10, 0x1b, 0x277, 0xc0000080, 0xc0000081,
			       0xc0000082, 0xc0000084, 0xc0000103 };

static int msrfd[MAX_CPUS];
static struct msrdrv_op ops[65536];

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

static __u64 time_batch(int fd, __u32 n)
{
	struct msrdrv_batch hdr = { .abi_version = MSRDRV_ABI_VERSION,
				    .nops = n, .ops = (uintptr_t)ops };

	return msrbench_submit_ns(fd, &hdr);
}

/* the same reads as ops[0..n) through the in-tree driver, one pread each */
static __u64 time_preads(__u32 n)
{
	__u64 val, t0 = now_ns();
	__u32 i;

	for (i = 0; i < n; i++)
		if (pread(msrfd[ops[i].cpu], &val, 8, ops[i].msr) != 8)
			return 0;
	return now_ns() - t0;
}

/* interleaved pair over ops[0..n); prints "name": {...}; 0 on success */
static int pair(const char *name, int fd, __u32 n, int reps, __u64 *t_drv,
		__u64 *t_msr)
{
	__u64 start = now_ns();
	int r;

	while (now_ns() - start < WARMUP_NS)
		if (!time_batch(fd, n) || !time_preads(n))
			return -1;
	for (r = 0; r < reps; r++) {
		if (r & 1) {
			t_msr[r] = time_preads(n);
			t_drv[r] = time_batch(fd, n);
		} else {
			t_drv[r] = time_batch(fd, n);
			t_msr[r] = time_preads(n);
		}
		if (!t_drv[r] || !t_msr[r])
			return -1;
	}
	printf(", \"%s\": {\"ops\": %u, \"msrdrv_ns\": %.0f, \"msr_ns\": %.0f}",
	       name, n, median(t_drv, reps), median(t_msr, reps));
	return 0;
}

static void fill(__u32 n, int all_cpus)
{
	__u32 i;

	for (i = 0; i < n; i++)
		ops[i] = (struct msrdrv_op){ .op = MSRDRV_OP_READ,
					     .cpu = all_cpus ? i : 0,
					     .msr = all_cpus ? 0x1b : regs[i % 8] };
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 2000;
	int maxops = argc > 2 ? atoi(argv[2]) : 4096;
	int ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	__u64 *t_drv = calloc(reps > 20 ? reps : 20, sizeof(__u64));
	__u64 *t_msr = calloc(reps > 20 ? reps : 20, sizeof(__u64));
	cpu_set_t set;
	int fd, r, i, n;
	char path[64];

	if (!t_drv || !t_msr || reps < 1 || ncpu > MAX_CPUS || maxops > 65536)
		return 99;
	fd = open("/dev/msrdrv", O_RDWR);
	for (i = 0; i < ncpu; i++) {
		snprintf(path, sizeof(path), "/dev/cpu/%d/msr", i);
		msrfd[i] = open(path, O_RDONLY);
		if (msrfd[i] < 0) {
			perror(path);
			return 98;
		}
	}
	if (fd < 0) {
		perror("/dev/msrdrv");
		return 98;
	}
	/* pin to CPU 0: both drivers then read locally, no IPI */
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	printf("{\"cpus\": %d, \"reps\": %d, \"warmup_ms\": %llu", ncpu,
	       reps, WARMUP_NS / 1000000);

	fill(1, 0);
	if (pair("read1", fd, 1, reps, t_drv, t_msr))
		return 1;
	fill(NREAD, 0);
	if (pair("read32", fd, NREAD, reps, t_drv, t_msr))
		return 2;
	fill(ncpu, 1);
	if (pair("allcpu", fd, ncpu, reps, t_drv, t_msr))
		return 3;

	printf(", \"sweep\": [");
	for (n = 1; n <= maxops; n *= 2) {
		int sreps = reps * 8 / n > 20 ? reps * 8 / n : 20;

		if (sreps > reps)
			sreps = reps > 20 ? reps : 20;
		fill(n, 0);
		for (__u64 t = now_ns(); now_ns() - t < WARMUP_NS / 5;)
			time_batch(fd, n);
		for (r = 0; r < sreps; r++) {
			t_drv[r] = time_batch(fd, n);
			if (!t_drv[r])
				return 5;
		}
		printf("%s{\"ops\": %d, \"ns\": %.0f}", n > 1 ? ", " : "", n,
		       median(t_drv, sreps));
	}
	printf("]}\n");
	return 0;
}

#endif /* MSRBENCH_LIB */
